/**
 * Keeps one subscriber that stops reading from holding up everyone else.
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

type Deliver = (packet: unknown, cb: () => void) => void;
interface DeliveryInternals {
  deliver0: Deliver;
  deliverQoS: Deliver;
  conn: { writableLength?: number; destroy(err?: Error): void };
}

/** Bytes queued for the client and not yet taken by the kernel (the guard counts its sink's). */
export function queuedBytes(client: Client): number {
  const conn = (client as unknown as DeliveryInternals).conn;
  return conn.writableLength ?? 0;
}

/**
 * Wraps the client's delivery functions (install in `preConnect`, after any other wrapper).
 * @param maxBufferedBytes queued bytes past which the subscriber is disconnected.
 * @param onDrop called once when the client is dropped for it.
 */
export function releaseDeliveries(
  client: Client,
  maxBufferedBytes: number,
  onDrop: (queued: number) => void,
): void {
  const c = client as unknown as DeliveryInternals;
  let dropped = false;
  const wrap =
    (deliver: Deliver): Deliver =>
    (packet, cb) => {
      const queued = queuedBytes(client);
      if (queued > maxBufferedBytes) {
        if (!dropped) {
          dropped = true;
          onDrop(queued);
          c.conn.destroy(new Error(`subscriber too slow: ${queued} bytes queued`));
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
  c.deliver0 = wrap(c.deliver0);
  c.deliverQoS = wrap(c.deliverQoS);
}
