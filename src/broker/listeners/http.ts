/**
 * Room: broker. The one HTTP(S) server of the bridge. Upgrades are routed by path: `/mqtt` (MQTT over WebSocket,
 * subprotocol `mqtt` or `mqttv3.1` required) and `/live` (the browser channel); requests go to the
 * operational endpoints, then the live channel (`/live/sse`, `/`, assets), else 404.
 */
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import websocketStream from 'websocket-stream';
import { type WebSocket, WebSocketServer } from 'ws';
import type { Config } from '../../config.js';
import { WsHeartbeat } from '../../ws-heartbeat.js';
import { compactListeners } from '../aedes-internals.js';
import type { Broker } from '../broker.js';
import { webSocketSink } from '../guard.js';
import type { ConnectionLimiter } from './connection-limiter.js';
import { listen } from './listen.js';

export interface HttpRoutes {
  /** Handles a request it owns and returns true. */
  request: Array<(req: IncomingMessage, res: ServerResponse) => boolean>;
  /** Upgrade handlers by exact path, besides `/mqtt`. */
  upgrade: Map<string, (req: IncomingMessage, socket: Duplex, head: Buffer) => void>;
}

export const MQTT_SUBPROTOCOLS = ['mqtt', 'mqttv3.1'] as const;

/** Writes a bare HTTP response on a socket that was not upgraded, then closes it. */
export function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
  const body = `${reason}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/**
 * Hands an upgraded `/mqtt` WebSocket to the broker. A function of its own so that no closure that
 * lives as long as the connection holds the upgrade request (and its headers) in its scope.
 */
function mqttOverWebSocket(
  broker: Broker,
  heartbeat: WsHeartbeat,
  ws: WebSocket,
  socket: Duplex,
  req: IncomingMessage,
): void {
  heartbeat.watch(ws);
  const stream = websocketStream(ws, { binary: true });
  // websocket-stream closes with a handshake, and ws goes on reading frames until the peer
  // answers it (up to 30 s): a peer the bridge hangs up on (packet guard, Aedes) is not read on.
  stream.on('close', terminateWebSocket);
  // Inbound frames are read through websocket-stream; outbound packets go out through ws directly,
  // one frame per tick. `ws` is paused whenever the broker stops reading (a device over its publish
  // rate): websocket-stream alone would go on buffering every frame.
  broker.handle(stream, webSocketSink(ws, socket), 'ws', req, ws);
  // Its listeners (websocket-stream's, the heartbeat's) as a fast table, not a dictionary.
  compactListeners(ws);
}

/** An upgraded socket's 'error' listener: shared, so no closure keeps this scope (and `req`) alive. */
function destroyOnError(this: Duplex): void {
  this.destroy();
}

/** websocket-stream's 'close' listener, shared by every connection (the stream carries its `socket`). */
function terminateWebSocket(this: { socket: WebSocket }): void {
  this.socket.terminate();
}

export async function startHttpListener(
  config: Config,
  broker: Broker,
  limiter: ConnectionLimiter,
  routes: HttpRoutes,
): Promise<Server> {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxPacketBytes,
    perMessageDeflate: false,
    handleProtocols: (protocols) => MQTT_SUBPROTOCOLS.find((p) => protocols.has(p)) ?? false,
  });
  // A device with MQTT keepalive 0 sends nothing while idle: pings find the ones that are gone.
  // `wss.clients` holds the open `/mqtt` connections.
  const heartbeat = new WsHeartbeat();
  const stopHeartbeat = heartbeat.every(config.limits.mqttWsPingMs, () => wss.clients);

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    for (const handle of routes.request) if (handle(req, res)) return;
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
  };
  // Short deadlines: a client that trickles headers cannot hold a socket. Node checks them every
  // `connectionsCheckingInterval` (default 30 s), so that is kept well under the deadline.
  const { httpHeadersTimeoutMs } = config.limits;
  const deadlines = {
    headersTimeout: httpHeadersTimeoutMs,
    requestTimeout: Math.max(30_000, httpHeadersTimeoutMs),
    connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(httpHeadersTimeoutMs / 4))),
  };
  const server: Server = config.tls
    ? createHttpsServer(
        { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile), ...deadlines },
        onRequest,
      )
    : createHttpServer(deadlines, onRequest);
  server.keepAliveTimeout = 5_000;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', destroyOnError);
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/mqtt') {
      const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
      if (!offered.some((p) => (MQTT_SUBPROTOCOLS as readonly string[]).includes(p))) {
        return refuseUpgrade(socket, 400, 'Bad Request: subprotocol mqtt required');
      }
      if (!limiter.admit(socket, req.socket.remoteAddress))
        return refuseUpgrade(socket, 503, 'Service Unavailable');
      wss.handleUpgrade(req, socket, head, (ws) => mqttOverWebSocket(broker, heartbeat, ws, socket, req));
      return;
    }
    const handler = path ? routes.upgrade.get(path) : undefined;
    if (handler) return handler(req, socket, head);
    refuseUpgrade(socket, 404, 'Not Found');
  });

  server.on('close', stopHeartbeat);
  await listen(server, config.httpPort, config.host);
  return server;
}
