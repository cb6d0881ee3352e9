/**
 * Room: bridge/live. What the channel keeps of every open browser connection, whatever its
 * transport.
 */
import type { TokenClaims } from '../../auth/tokens.js';
import type { LiveSession } from './session.js';

export interface LiveClient {
  readonly transport: 'ws' | 'sse';
  readonly session: LiveSession;
  readonly claims: TokenClaims;
  /** Heartbeat tick (every BRIDGE_LIVE_PING_MS): ping and drop a silent peer, or write a comment. */
  tick(): void;
  /** Closes for shutdown (1001) or for a token that expired or was revoked (1008). */
  shutdown(code: number, reason: string): void;
  /** Drops the connection at once (after the shutdown grace). */
  kill(): void;
}

/** The channel's set of clients; `remove` is idempotent. */
export interface ClientRegistry {
  add(client: LiveClient): void;
  remove(client: LiveClient): void;
}
