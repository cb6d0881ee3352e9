/**
 * Room: shared. WebSocket liveness, shared by `/live` and `/mqtt`: each beat pings a connection, and a connection
 * that has not answered the previous ping by the next beat is terminated. A peer that sends nothing
 * (an MQTT client with keepalive 0, an idle browser tab) behind a dropped NAT mapping or a dead host
 * is otherwise never noticed; the pings also keep proxies' read timeouts from cutting idle links.
 *
 * Per connection this costs one WeakSet entry while a ping is out and one shared `pong` listener
 * (no closure per connection: `this` is the socket).
 */
import type { WebSocket } from 'ws';

export class WsHeartbeat {
  /** Connections pinged whose pong has not come back yet. */
  private readonly awaiting = new WeakSet<WebSocket>();
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
   * One beat for one connection: terminates it when the previous ping went unanswered (and returns
   * false), else pings it.
   */
  beat(ws: WebSocket): boolean {
    if (this.awaiting.has(ws)) {
      ws.terminate();
      return false;
    }
    this.awaiting.add(ws);
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
