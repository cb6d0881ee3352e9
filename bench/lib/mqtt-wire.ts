/**
 * MQTT 3.1.1 on the wire for the load generator, without the `mqtt` client (which saturates a core
 * at ~25k msg/s over WebSocket, architecture.md): CONNECT/SUBSCRIBE come from `mqtt-packet` once per
 * connection; a telemetry PUBLISH is a template whose only per-message work is writing three varints
 * (packet id, seq, sample time) into a fresh buffer. Incoming bytes are split into packets by their
 * fixed header only; the one payload field a subscriber needs (`seq`, which carries the send time in
 * µs) is read straight from the bytes.
 */
import mqttPacket from 'mqtt-packet';
import { BUILTIN_SCHEMAS } from '../../src/config.js';
import { loadSchemas } from '../../src/schemas/registry.js';

export const PACKET = { CONNACK: 2, PUBLISH: 3, PUBACK: 4, SUBACK: 9, PINGRESP: 13 } as const;
export const DISCONNECT = Buffer.from([0xe0, 0x00]);

export function connectPacket(
  clientId: string,
  options: { username?: string; password?: string; keepalive?: number } = {},
): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId,
    keepalive: options.keepalive ?? 60,
    ...(options.username !== undefined ? { username: options.username } : {}),
    ...(options.password !== undefined ? { password: Buffer.from(options.password) } : {}),
  });
}

export function subscribePacket(topic: string, messageId: number, qos: 0 | 1 = 0): Buffer {
  return mqttPacket.generate({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] });
}

/** Bytes a varint of `n` takes (n ≥ 0, up to 2^53). */
function varintLength(n: number): number {
  let len = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, offset: number, n: number): number {
  while (n >= 128) {
    buf[offset++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[offset++] = n;
  return offset;
}

/** MQTT remaining-length encoding is the same base-128 varint (at most 4 bytes). */
const writeRemainingLength = writeVarint;

let sampleValues: Buffer | undefined;
/** The constant part of every sample: `values` (3 fields), encoded once with the bridge's schemas. */
function valuesBytes(): Buffer {
  if (sampleValues) return sampleValues;
  const Sample = loadSchemas(BUILTIN_SCHEMAS).type('telemetry.v1.Sample');
  sampleValues = Buffer.from(
    Sample.encode({ values: { temperature_c: 21.5, humidity: 40.25, pressure_hpa: 1013.2 } }).finish(),
  );
  return sampleValues;
}

/**
 * PUBLISH packets of `telemetry.v1.Telemetry` for one device on `devices/<id>/telemetry`, one
 * sample each. The payload is valid for the bridge's validation (contract §3).
 */
export class TelemetryTemplate {
  private readonly topic: Buffer;
  private readonly id: Buffer;
  private readonly values: Buffer;

  constructor(readonly deviceId: string) {
    this.topic = Buffer.from(`devices/${deviceId}/telemetry`);
    this.id = Buffer.from(deviceId);
    this.values = valuesBytes();
  }

  /** The protobuf payload alone. */
  payload(seq: number, timeMs: number): Buffer {
    const buf = Buffer.allocUnsafe(this.payloadLength(seq, timeMs));
    this.writePayload(buf, 0, seq, timeMs);
    return buf;
  }

  /** A PUBLISH; `packetId` is used (and must be 1..65535) when qos is 1. */
  publish(qos: 0 | 1, packetId: number, seq: number, timeMs: number): Buffer {
    const payloadLen = this.payloadLength(seq, timeMs);
    const remaining = 2 + this.topic.length + (qos ? 2 : 0) + payloadLen;
    const buf = Buffer.allocUnsafe(1 + varintLength(remaining) + remaining);
    buf[0] = 0x30 | (qos << 1);
    let o = writeRemainingLength(buf, 1, remaining);
    buf.writeUInt16BE(this.topic.length, o);
    o += 2;
    o += this.topic.copy(buf, o);
    if (qos) {
      buf.writeUInt16BE(packetId, o);
      o += 2;
    }
    this.writePayload(buf, o, seq, timeMs);
    return buf;
  }

  private sampleLength(timeMs: number): number {
    return 1 + varintLength(timeMs) + this.values.length;
  }

  private payloadLength(seq: number, timeMs: number): number {
    const sample = this.sampleLength(timeMs);
    return 2 + this.id.length + 1 + varintLength(seq) + 1 + varintLength(sample) + sample;
  }

  private writePayload(buf: Buffer, o: number, seq: number, timeMs: number): number {
    buf[o++] = 0x0a; // field 1 (device_id), length-delimited
    buf[o++] = this.id.length;
    o += this.id.copy(buf, o);
    buf[o++] = 0x10; // field 2 (seq), varint
    o = writeVarint(buf, o, seq);
    buf[o++] = 0x1a; // field 3 (samples), length-delimited
    o = writeVarint(buf, o, this.sampleLength(timeMs));
    buf[o++] = 0x08; // Sample field 1 (time_unix_ms), varint
    o = writeVarint(buf, o, timeMs);
    o += this.values.copy(buf, o);
    return o;
  }
}

/**
 * Splits a byte stream (TCP chunks or WebSocket frames, which may hold several packets or part of
 * one) into MQTT packets by their fixed header. `onPacket` gets the buffer and the packet's bounds
 * (fixed header included); the buffer is only valid during the call.
 */
export class PacketSplitter {
  private pending: Buffer | undefined;

  constructor(private readonly onPacket: (type: number, buf: Buffer, start: number, end: number) => void) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let o = 0;
    while (o < buf.length) {
      let remaining = 0;
      let mul = 1;
      let i = o + 1;
      let complete = false;
      for (; i < buf.length && i < o + 5; i++) {
        const b = buf[i]!;
        remaining += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete || i + remaining > buf.length) break;
      this.onPacket(buf[o]! >> 4, buf, o, i + remaining);
      o = i + remaining;
    }
    if (o < buf.length) this.pending = Buffer.from(buf.subarray(o));
  }
}

/** Offset of the payload of a PUBLISH packet in `buf[start, end)`. */
export function publishPayloadOffset(buf: Buffer, start: number): number {
  let i = start + 1;
  while ((buf[i]! & 0x80) !== 0) i++;
  i++;
  const topicLen = buf.readUInt16BE(i);
  const qos = (buf[start]! >> 1) & 3;
  return i + 2 + topicLen + (qos ? 2 : 0);
}

/** The `seq` of a Telemetry payload written by TelemetryTemplate (field order as written there). */
export function telemetrySeq(buf: Buffer, payloadOffset: number): number {
  let o = payloadOffset;
  if (buf[o] !== 0x0a) return -1;
  o += 2 + buf[o + 1]!;
  if (buf[o] !== 0x10) return -1;
  o++;
  let n = 0;
  let mul = 1;
  for (let k = 0; k < 9; k++) {
    const b = buf[o++]!;
    n += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return n;
    mul *= 128;
  }
  return -1;
}

/** The packet id of a PUBACK in `buf` at `start`. */
export function pubackId(buf: Buffer, start: number): number {
  return buf.readUInt16BE(start + 2);
}

/** Wall clock in µs with sub-ms resolution, comparable across processes of this machine. */
export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
