/**
 * Room: bridge/live. The live channel to browsers (contract §5): `/live` (JSON over WebSocket) and
 * `/live/sse`.
 *
 * ```
 * publishTelemetry/Status ─▶ LiveBroker.publish ─▶ (cursor, JSON built once, history, latest)
 *                                   │ onMessage
 *                                   ▼
 *                        for each client: session.deliver(event)   (sync, never awaits a socket)
 *                             ├─ ws:  ws.send(sameBuffer)          └─ sse: res.write(sameBuffer)
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { CLOSE_CODES } from '../../../web/client/protocol.js';
import type { TokenService } from '../../auth/tokens.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Reading, StatusChange } from '../reading.js';
import type { LiveBroker } from './broker.js';
import { MemoryLiveBroker } from './broker-memory.js';
import type { ClientRegistry, LiveClient } from './client.js';
import { requestUrl } from './request-auth.js';
import { handleSse } from './sse.js';
import type { DeviceCommand, LiveChannel } from './types.js';
import { createWsEndpoint } from './websocket.js';

export type { DeviceCommand, LiveChannel } from './types.js';

export interface LiveChannelDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly tokens: TokenService;
  /** Publishes a `Command` to `devices/<deviceId>/commands`; resolves once the broker took it. */
  sendCommand(deviceId: string, cmd: DeviceCommand): Promise<void>;
  /** Default: the in-memory broker sized by config.live.history*. */
  readonly broker?: LiveBroker;
}

/** Longest `close()` waits for clients to finish their close handshake before terminating them, ms. */
const CLOSE_GRACE_MS = 2000;

/**
 * @example
 * const live = createLiveChannel({ config, log, metrics, tokens: await openTokenService(config.dataDir),
 *   sendCommand: (id, cmd) => broker.publishCommand(id, cmd) });
 * server.on('upgrade', (req, socket, head) => live.handleUpgrade(req, socket, head));
 * server.on('request', (req, res) => { if (!live.handleRequest(req, res)) notFound(res); });
 */
export function createLiveChannel(deps: LiveChannelDeps): LiveChannel {
  const { config, metrics } = deps;
  const { log } = deps; // the caller names the module (app.ts: log.child({ module: 'live' }))
  const broker =
    deps.broker ??
    new MemoryLiveBroker({ historyCount: config.live.historyCount, historyBytes: config.live.historyBytes });
  const clients = new Set<LiveClient>();
  let closing = false;
  let onEmpty: (() => void) | undefined;

  const registry: ClientRegistry = {
    add(client) {
      clients.add(client);
      metrics.liveClients.inc();
    },
    remove(client) {
      if (clients.delete(client)) metrics.liveClients.dec();
      if (clients.size === 0) onEmpty?.();
    },
  };

  const stopFanOut = broker.onMessage((event) => {
    if (event.kind === 'telemetry') {
      const latency = (Date.now() - event.time) / 1000;
      if (latency >= 0) metrics.e2eLatency.observe(latency);
    }
    for (const client of clients) {
      try {
        client.session.deliver(event);
      } catch (err) {
        log.error({ err }, 'live: delivery failed');
      }
    }
  });

  const common = { config, log, tokens: deps.tokens, broker, registry, isClosing: () => closing };
  const ws = createWsEndpoint({ ...common, sendCommand: deps.sendCommand });

  const heartbeat = setInterval(() => {
    const now = Date.now() / 1000;
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
      deps.tokens.isRevoked(jti).then(
        (revoked) => {
          if (!revoked) return;
          for (const client of clients)
            if (client.claims.jti === jti) client.shutdown(CLOSE_CODES.policy, 'token revoked');
        },
        (err: Error) => log.warn({ err: err.message }, 'live: cannot read the revocation list'),
      );
    }
  }, config.live.pingMs);
  heartbeat.unref();

  return {
    publishTelemetry(reading: Reading): void {
      for (const sample of reading.samples) {
        broker.publish({
          kind: 'telemetry',
          device: reading.deviceId,
          time: sample.time,
          body: { seq: reading.seq, time: sample.time, values: sample.values, labels: sample.labels },
        });
      }
    },

    publishStatus(status: StatusChange): void {
      broker.publish({
        kind: 'status',
        device: status.deviceId,
        time: status.time,
        body: { state: status.state, firmware: status.firmware, time: status.time },
      });
    },

    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      ws.handleUpgrade(req, socket, head);
    },

    handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
      const url = requestUrl(req);
      if (url?.pathname === '/live/sse') {
        handleSse(common, req, res, url);
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
      return clients.size;
    },

    async close(): Promise<void> {
      if (closing) return;
      closing = true;
      clearInterval(heartbeat);
      stopFanOut();
      if (clients.size > 0) {
        const empty = new Promise<void>((resolve) => {
          onEmpty = resolve;
        });
        for (const client of clients) client.shutdown(CLOSE_CODES.goingAway, 'going away');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([empty, new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
        clearTimeout(timer);
        for (const client of [...clients]) {
          client.kill();
          client.session.end();
        }
      }
      ws.close();
      await broker.close();
    },
  };
}
