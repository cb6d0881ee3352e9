/**
 * Room: broker. Keeps one subscriber that stops reading from holding up everyone else.
 *
 * Aedes routes each message through its emitter with a fixed concurrency (100), and a delivery's
 * callback fires only once the subscriber's socket has taken the bytes; a socket that does not
 * drain holds its deliveries until `drainTimeout`. After ~100 such messages, delivery to every
 * client waits for that one (measured: ~5 s stalls for a healthy subscriber with the 5 s default).
 *
 * `releaseDeliveries` hands the router its callback as soon as the packet is queued on the
 * client's stream, so routing never waits for one socket. What a client has queued is bounded
 * instead: past `maxBufferedBytes` the connection is destroyed at once; below it, Aedes's
 * `drainTimeout` still drops a socket that does not drain in time.
 */
import type { Client } from 'aedes';
import { type Deliver, replaceDeliveries } from './aedes-internals.js';

/** Bytes queued for the client and not yet taken by the kernel (a guarded stream counts its sink's). */
export function queuedBytes(client: Client): number {
  return client.conn.writableLength;
}

/**
 * Wraps the client's delivery functions (install before its first subscription, after any other
 * wrapper).
 * @param maxBufferedBytes queued bytes past which the subscriber is disconnected.
 * @param onDrop called once when the client is dropped for it.
 */
export function releaseDeliveries(
  client: Client,
  maxBufferedBytes: number,
  onDrop: (queued: number) => void,
): void {
  let dropped = false;
  const wrap =
    (deliver: Deliver): Deliver =>
    (packet, cb) => {
      const queued = queuedBytes(client);
      if (queued > maxBufferedBytes) {
        if (!dropped) {
          dropped = true;
          onDrop(queued);
          client.conn.destroy(new Error(`subscriber too slow: ${queued} bytes queued`));
        }
        setImmediate(cb);
        return;
      }
      let called = false;
      const once = () => {
        if (called) return;
        called = true;
        cb();
      };
      deliver(packet, once);
      // The packet is queued (Aedes writes it on the next turn): release the router now.
      setImmediate(once);
    };
  replaceDeliveries(client, ({ deliver0, deliverQoS }) => ({
    deliver0: wrap(deliver0),
    deliverQoS: wrap(deliverQoS),
  }));
}
