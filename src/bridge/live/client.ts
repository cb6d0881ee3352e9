/**
 * Room: bridge/live. What the channel keeps of every open browser connection, whatever its
 * transport.
 */
import type { TokenClaims } from '../../auth/tokens.js';
import { isFeedPattern, parseFeedFilter } from '../../feeds.js';
import type { Logger } from '../../log.js';
import type { LiveBroker } from './broker.js';
import type { LiveHistory } from './history-source.js';
import { LiveSession, type LiveTransport, type SessionLimits } from './session.js';

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

/** What every /live endpoint gives a new connection's session. */
export interface SessionDeps {
  readonly broker: LiveBroker;
  readonly registry: ClientRegistry;
  readonly history?: LiveHistory | undefined;
  readonly log: Logger;
}

/**
 * A connection's client and its session, for either transport: scoped to the token's feeds; when
 * the session ends the client leaves the registry, and a reader too slow for the hard limit is
 * logged once. The caller adds it to the registry when the connection is ready.
 */
export function openClient(
  deps: SessionDeps,
  limits: SessionLimits,
  claims: TokenClaims,
  transport: LiveTransport,
  connection: Pick<LiveClient, 'transport' | 'tick' | 'shutdown' | 'kill'>,
): LiveClient {
  const scope = claims.feeds.map(parseFeedFilter).filter(isFeedPattern);
  const client: LiveClient = {
    ...connection,
    claims,
    session: new LiveSession(
      deps.broker,
      transport,
      scope,
      limits,
      (why) => {
        if (why === 'overflow') {
          deps.log.info(
            { jti: claims.jti, transport: connection.transport },
            'live: slow reader closed (1013)',
          );
        }
        deps.registry.remove(client);
      },
      deps.history,
    ),
  };
  return client;
}
