/**
 * Room: shared. WebSocket liveness, shared by `/live` and `/mqtt`: each beat pings a connection, and a connection
 * that has not answered the previous ping by the next beat is terminated. A peer that sends nothing
 * (an MQTT client with keepalive 0, an idle browser tab) behind a dropped NAT mapping or a dead host
 * is otherwise never noticed; the pings also keep proxies' read timeouts from cutting idle links.
 *
 * A peer is not taken for dead while the bridge is not reading it: a `/mqtt` connection held back
 * by the publish rate is paused (guard.ts), and its pong waits in the socket behind the messages
 * sent before it. So a ping unanswered by the next beat terminates the connection only if it is
 * not paused, was not paused when pinged, and has sent nothing meanwhile.
 *
 * Per connection this costs one WeakMap entry while a ping is out and one shared `pong` listener
 * (no closure per connection: `this` is the socket).
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';

/** `awaiting`'s mark for a connection that was paused when pinged. */
const PAUSED = -1;

/** Bytes read from the connection's socket (ws keeps it as `_socket`). */
function bytesRead(ws: WebSocket): number {
  return (ws as unknown as { _socket?: Socket })._socket?.bytesRead ?? 0;
}

export class WsHeartbeat {
  /** Connections pinged whose pong has not come back yet: the bytes read by then, or PAUSED. */
  private readonly awaiting = new WeakMap<WebSocket, number>();
  private readonly onPong: (this: WebSocket) => void;

  constructor() {
    const awaiting = this.awaiting;
    this.onPong = function onPong(this: WebSocket) {
      awaiting.delete(this);
    };
  }

  /** Starts watching a connection's pongs; call once, when it opens. */
  watch(ws: WebSocket): void {
    ws.on('pong', this.onPong);
  }

  /**
   * One beat for one connection: terminates it when the previous ping went unanswered and nothing
   * else came either (and returns false), else pings it.
   */
  beat(ws: WebSocket): boolean {
    const before = this.awaiting.get(ws);
    const read = bytesRead(ws);
    if (before === read && !ws.isPaused) {
      ws.terminate();
      return false;
    }
    this.awaiting.set(ws, ws.isPaused ? PAUSED : read);
    ws.ping();
    return true;
  }

  /**
   * Beats every connection `connections()` yields, every `intervalMs`. The timer does not keep the
   * process alive; the returned function stops it.
   */
  every(intervalMs: number, connections: () => Iterable<WebSocket>): () => void {
    const timer = setInterval(() => {
      for (const ws of connections()) this.beat(ws);
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }
}
