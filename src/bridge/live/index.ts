/**
 * Room: bridge/live. The live channel's endpoints for browsers (contract §5): `/live` (JSON over
 * WebSocket), `/live/sse` and `/api/history` (same tokens), on top of the hub (hub.ts), which streams
 * accepted messages to every connection, and the history (history-source.ts) behind resumes. A heartbeat every BRIDGE_LIVE_PING_MS pings WebSocket peers, keeps SSE streams alive,
 * and closes connections whose token expired or was revoked.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { CLOSE_CODES } from '../../../web/client/protocol.js';
import type { TokenService } from '../../auth/tokens.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import { handleHistoryApi } from './history-api.js';
import type { LiveHistory } from './history-source.js';
import type { LiveHub } from './hub.js';
import { requestUrl } from './request-auth.js';
import { handleSse } from './sse.js';
import type { DeviceCommand, LiveChannel } from './types.js';
import { createWsEndpoint } from './websocket.js';

export { LiveHub } from './hub.js';
export type { DeviceCommand, LiveChannel } from './types.js';

export interface LiveChannelDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly tokens: TokenService;
  readonly hub: LiveHub;
  /** The history store and InfluxDB read back (resumes, `history`, /api/history); none: history off. */
  readonly history?: LiveHistory | undefined;
  /** Publishes a `Command` to `devices/<deviceId>/commands`; resolves once the broker took it. */
  sendCommand(deviceId: string, cmd: DeviceCommand): Promise<void>;
}

/** Longest `close()` waits for clients to finish their close handshake before terminating them, ms. */
const CLOSE_GRACE_MS = 2000;

/**
 * @example
 * const hub = new LiveHub({ config, log, metrics });
 * const live = createLiveChannel({ config, log, tokens, hub, sendCommand: (id, cmd) => publish(id, cmd) });
 * server.on('upgrade', (req, socket, head) => live.handleUpgrade(req, socket, head));
 * server.on('request', (req, res) => { if (!live.handleRequest(req, res)) notFound(res); });
 */
export function createLiveChannel(deps: LiveChannelDeps): LiveChannel {
  const { config, hub, tokens } = deps;
  const { log } = deps; // the caller names the module (app.ts: log.child({ module: 'live' }))
  let closing = false;

  const common = {
    config,
    log,
    tokens,
    broker: hub.broker,
    registry: hub,
    history: deps.history,
    isClosing: () => closing,
  };
  const ws = createWsEndpoint({ ...common, sendCommand: deps.sendCommand });

  const heartbeat = setInterval(() => {
    const now = Date.now() / 1000;
    const clients = hub.openClients();
    const jtis = new Set<string>();
    for (const client of clients) {
      if (client.claims.exp <= now) client.shutdown(CLOSE_CODES.policy, 'token expired');
      else {
        client.tick();
        jtis.add(client.claims.jti);
      }
    }
    // A revoked token's connections are closed within one ping interval.
    for (const jti of jtis) {
      tokens.isRevoked(jti).then(
        (revoked) => {
          if (!revoked) return;
          for (const client of hub.openClients())
            if (client.claims.jti === jti) client.shutdown(CLOSE_CODES.policy, 'token revoked');
        },
        (err: Error) => log.warn({ err: err.message }, 'live: cannot read the revocation list'),
      );
    }
  }, config.live.pingMs);
  heartbeat.unref();

  return {
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      ws.handleUpgrade(req, socket, head);
    },

    handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
      const url = requestUrl(req);
      if (url?.pathname === '/live/sse') {
        handleSse(common, req, res, url);
        return true;
      }
      if (url?.pathname === '/api/history') {
        handleHistoryApi(common, req, res, url);
        return true;
      }
      if (url?.pathname === '/live') {
        res.writeHead(426, { Upgrade: 'websocket', Connection: 'Upgrade', 'Content-Type': 'text/plain' });
        res.end('WebSocket upgrade required\n');
        return true;
      }
      return false;
    },

    clientCount(): number {
      return hub.clientCount;
    },

    async close(): Promise<void> {
      if (closing) return;
      closing = true;
      clearInterval(heartbeat);
      if (hub.clientCount > 0) {
        for (const client of hub.openClients()) client.shutdown(CLOSE_CODES.goingAway, 'going away');
        await hub.emptied(CLOSE_GRACE_MS);
        for (const client of hub.openClients()) {
          client.kill();
          client.session.end();
        }
      }
      ws.close();
    },
  };
}
