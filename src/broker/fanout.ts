/**
 * Room: broker. Delivery of routed messages to subscribers, the way Mosquitto does it.
 *
 * Aedes 1.2 delivers a QoS 0 message to each subscriber with a new packet object, a `setImmediate`,
 * mqtt-packet's encoding in five small writes, and (over WebSocket) a frame built per subscriber; one
 * `writev` per delivery was a third of the bridge's CPU in the fan-out benchmark. Here a QoS 0
 * delivery is:
 *
 *   Aedes's router (a new packet per subscription, `$` filters)
 *     → deliveryQos ([MQTT-3.3.5-1] max QoS, [MQTT-4.7.2-1] retained `$`; no scan for QoS 0)
 *     → as Aedes: no-local (MQTT 5 only), one copy per client (brokerId/brokerCounter), authorizeForward
 *     → the PUBLISH encoded once per message (encoded-publish.ts), framed once for WebSocket
 *     → written to the connection in order with everything Aedes writes to it, the socket corked for
 *       the event-loop turn (turn-cork.ts): one `writev` per socket per turn, not per delivery.
 *
 * QoS 1/2 deliveries stay on Aedes's path (message ids, the in-flight store, persistent sessions);
 * a QoS 0 delivery to a client that has one of those still unwritten follows it through Aedes's path
 * too, so a client gets its messages in the order Aedes would have written them.
 *
 * Slow subscribers. Aedes routes each message with a fixed concurrency (100) and waits for every
 * delivery's callback, which it calls once the socket took the bytes: one socket that does not drain
 * would hold up routing for everyone (measured: ~5 s stalls for a healthy subscriber). So the router
 * gets every callback at the end of the turn, whatever the socket did, and what a subscriber has
 * queued is bounded instead: past `maxBufferedBytes` (BRIDGE_SUBSCRIBER_BUFFER_BYTES) it is
 * disconnected at once, and one whose socket does not drain within `drainTimeoutMs`
 * (BRIDGE_DRAIN_TIMEOUT_MS; Aedes's own `drainTimeout` on its path) is disconnected too. The bytes
 * queued for many subscribers are the same buffers, not copies.
 */
import type { Writable } from 'node:stream';
import type { Client } from 'aedes';
import { corkForTurn } from '../turn-cork.js';
import {
  type Deliver,
  type DeliveredPacket,
  type Deliveries,
  firstDelivery,
  replaceDeliveries,
} from './aedes-internals.js';
import { deliveryQos } from './conformance.js';
import { Qos0Encoder } from './encoded-publish.js';
import { GuardedStream } from './guard.js';

/** Why a subscriber was disconnected: over the byte allowance, or its socket did not drain in time. */
export type DropReason = 'buffer' | 'drain_timeout';

export interface FanoutOptions {
  /** Bytes queued for one subscriber past which it is disconnected (BRIDGE_SUBSCRIBER_BUFFER_BYTES). */
  readonly maxBufferedBytes: number;
  /** A subscriber whose socket does not drain within this many ms is disconnected; 0: never. */
  readonly drainTimeoutMs: number;
  /** The broker's `authorizeForward`: the packet a client may be sent, or null for none. */
  authorizeForward(client: Client, packet: DeliveredPacket): DeliveredPacket | null;
  /** Called once for each subscriber dropped, before its connection is destroyed. */
  onDrop(client: Client, reason: DropReason, queuedBytes: number): void;
}

/** One per broker: the encoding cache and the router's callbacks of the turn. */
export class Fanout {
  readonly encoder = new Qos0Encoder();
  private releases: Array<() => void> = [];

  constructor(readonly options: FanoutOptions) {}

  /**
   * Takes over the client's deliveries. Aedes binds a subscription to the client's delivery function
   * when it is made (restored ones too), so call this before its first subscription takes effect.
   */
  install(client: Client): void {
    const subscriber = new Subscriber(this, client);
    replaceDeliveries(client, (aedes) => subscriber.takeOver(aedes));
  }

  /**
   * Hands the router a delivery's callback at the end of this turn: never later (routing does not
   * wait for a socket), never synchronously (Aedes's router would recurse into the next message).
   */
  release(cb: () => void): void {
    if (this.releases.push(cb) === 1) setImmediate(releaseAll, this);
  }

  /** @internal */
  takeReleases(): Array<() => void> {
    const releases = this.releases;
    this.releases = [];
    return releases;
  }
}

function releaseAll(fanout: Fanout): void {
  for (const cb of fanout.takeReleases()) cb();
}

/** One per client that subscribed. */
class Subscriber {
  /** Aedes's own delivery functions of this client. */
  private aedes!: Deliveries;
  /** Deliveries handed to Aedes's path and not yet written by it. */
  private inflight = 0;
  private dropped = false;
  private drainTimer: NodeJS.Timeout | undefined;
  private watchingDrain = false;

  constructor(
    private readonly fanout: Fanout,
    private readonly client: Client,
  ) {}

  takeOver(aedes: Deliveries): Deliveries {
    this.aedes = aedes;
    const deliver: Deliver = (packet, cb) => this.deliver(packet, cb);
    return { deliver0: deliver, deliverQoS: deliver };
  }

  private deliver(packet: DeliveredPacket, cb: () => void): void {
    const qos = deliveryQos(this.client, packet);
    if (qos === 0) {
      this.deliver0(packet, cb);
      return;
    }
    if (qos < 0) {
      cb();
      return;
    }
    this.viaAedes(this.aedes.deliverQoS, qos === packet.qos ? packet : { ...packet, qos }, cb);
  }

  private deliver0(packet: DeliveredPacket, cb: () => void): void {
    const { client, fanout } = this;
    // Behind a QoS 1/2 delivery Aedes has yet to write (it waits a turn, or for the session store).
    if (this.inflight > 0) {
      this.viaAedes(this.aedes.deliver0, packet, cb);
      return;
    }
    const conn = client.conn as Writable;
    if (
      !conn.writable ||
      !(client.connected || client.connecting) ||
      // As Aedes's deliver0: MQTT 5 no-local, one copy per client, then the broker's forwarding rule.
      (packet.nl === true && packet.clientId === client.id) ||
      !firstDelivery(client, packet)
    ) {
      fanout.release(cb);
      return;
    }
    const forward = fanout.options.authorizeForward(client, packet);
    if (!forward || this.overAllowance()) {
      fanout.release(cb);
      return;
    }
    const encoded = fanout.encoder.encode(forward);
    let writable: boolean;
    if (conn instanceof GuardedStream) writable = conn.writePacket(encoded);
    else {
      // TCP and TLS: the socket itself (Aedes writes to it too, so the order is the socket's).
      corkForTurn(conn);
      writable = conn.write(encoded.bytes);
    }
    if (!writable) this.awaitDrain(conn);
    fanout.release(cb);
  }

  /** Through Aedes's own delivery function; the router gets its callback this turn all the same. */
  private viaAedes(deliver: Deliver, packet: DeliveredPacket, cb: () => void): void {
    if (this.overAllowance()) {
      this.fanout.release(cb);
      return;
    }
    let called = false;
    const once = () => {
      if (called) return;
      called = true;
      cb();
    };
    this.inflight++;
    deliver(packet, () => {
      this.inflight--;
      once();
    });
    this.fanout.release(once);
  }

  /** True, and the subscriber dropped, when more than the allowance is queued for it. */
  private overAllowance(): boolean {
    const conn = this.client.conn as Writable;
    // Judged at the connection's first write of a turn: later ones go to a socket corked for the
    // turn, whose bytes wait for the turn's end, not for the subscriber. What is queued then is
    // what the kernel did not take.
    if (conn.writableCorked > 0) return false;
    const queued = conn.writableLength;
    if (queued <= this.fanout.options.maxBufferedBytes) return false;
    this.drop('buffer', queued);
    return true;
  }

  private awaitDrain(conn: Writable): void {
    const ms = this.fanout.options.drainTimeoutMs;
    if (this.drainTimer !== undefined || ms <= 0) return;
    if (!this.watchingDrain) {
      this.watchingDrain = true;
      conn.on('drain', () => this.drained());
    }
    this.drainTimer = setTimeout(drainTimedOut, ms, this);
    this.drainTimer.unref();
  }

  private drained(): void {
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
  }

  /** @internal */
  drainTimeout(): void {
    this.drainTimer = undefined;
    const conn = this.client.conn as Writable;
    if (!this.client.closed && !conn.destroyed) this.drop('drain_timeout', conn.writableLength);
  }

  private drop(reason: DropReason, queued: number): void {
    if (this.dropped) return;
    this.dropped = true;
    this.drained();
    this.fanout.options.onDrop(this.client, reason, queued);
    this.client.conn.destroy(
      new Error(
        reason === 'buffer'
          ? `subscriber too slow: ${queued} bytes queued`
          : `subscriber too slow: its socket did not drain in ${this.fanout.options.drainTimeoutMs} ms`,
      ),
    );
  }
}

function drainTimedOut(subscriber: Subscriber): void {
  subscriber.drainTimeout();
}
