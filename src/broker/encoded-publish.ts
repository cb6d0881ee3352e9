/**
 * Room: broker. A QoS 0 PUBLISH encoded once per message, as Mosquitto does it: the same bytes are
 * queued to every subscriber, and over WebSocket the same frame (a server's frames are unmasked, and
 * MQTT over WebSocket lets a frame carry any part of the byte stream).
 */
import mqttPacket from 'mqtt-packet';
import { WS_BINARY, wsFrame } from '../ws-frame.js';
import type { DeliveredPacket } from './aedes-internals.js';

/** One packet's bytes, for every connection it goes to. */
export class EncodedPacket {
  private framed: Buffer | undefined;

  constructor(readonly bytes: Buffer) {}

  /** The bytes as one binary WebSocket frame, made for the first WebSocket connection that needs it. */
  get frame(): Buffer {
    this.framed ??= wsFrame(this.bytes, WS_BINARY);
    return this.framed;
  }
}

/**
 * Encodes QoS 0 deliveries with a one-message cache: Aedes's router hands a message to every matching
 * subscription in one synchronous pass (mqemitter, and mqemitter-redis for relayed messages, which
 * keep the origin's brokerId and brokerCounter), so one slot serves all its subscribers, and a
 * message routed in between (a `$SYS` notice) only costs a re-encoding.
 */
export class Qos0Encoder {
  // The cached message's identity and the fields its bytes are made of (copied: packets are Aedes's).
  private brokerId: string | null | undefined;
  private brokerCounter: number | undefined;
  private topic = '';
  private payload: unknown;
  private retain = false;
  private encoded: EncodedPacket | undefined;

  /** The bytes Aedes would write for `packet` delivered at QoS 0 (mqtt-packet's own encoding). */
  encode(packet: DeliveredPacket): EncodedPacket {
    // Aedes makes a new packet object per subscription; these fields are the same in all of them.
    if (
      this.encoded !== undefined &&
      packet.brokerCounter &&
      packet.brokerCounter === this.brokerCounter &&
      packet.brokerId === this.brokerId &&
      packet.payload === this.payload &&
      packet.topic === this.topic &&
      packet.retain === this.retain
    ) {
      return this.encoded;
    }
    const encoded = new EncodedPacket(
      mqttPacket.generate({
        cmd: 'publish',
        topic: packet.topic,
        payload: packet.payload,
        qos: 0,
        retain: packet.retain,
        // [MQTT-3.3.1-2] DUP is 0 in every QoS 0 PUBLISH (Aedes would copy a resent QoS 1 message's).
        dup: false,
      }),
    );
    this.brokerId = packet.brokerId;
    this.brokerCounter = packet.brokerCounter;
    this.topic = packet.topic;
    this.payload = packet.payload;
    this.retain = packet.retain;
    this.encoded = encoded;
    return encoded;
  }
}
