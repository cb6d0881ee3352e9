/**
 * Test support for the live channel: the channel mounted alone on a plain HTTP server on a free
 * loopback port (no MQTT broker needed; tests feed it with publishTelemetry/publishStatus), and a
 * `ws` client that queues every JSON object it receives.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import WebSocket, { type ClientOptions } from 'ws';
import { type CreateTokenOptions, openTokenService, type TokenService } from '../../src/auth/tokens.js';
import { createLiveChannel, LiveHub } from '../../src/bridge/live/index.js';
import type { DeviceCommand, LiveChannel } from '../../src/bridge/live/types.js';
import type { Reading } from '../../src/bridge/reading.js';
import { type Config, loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { tempDir } from './services.js';
import { waitEvent, waitFor } from './wait.js';

export interface LiveServer {
  readonly config: Config;
  readonly live: LiveChannel;
  /** Where tests publish readings and status changes, as the pipeline does. */
  readonly hub: LiveHub;
  readonly tokens: TokenService;
  readonly metrics: Metrics;
  readonly port: number;
  /** `ws://127.0.0.1:<port>/live` */
  readonly wsUrl: string;
  /** `http://127.0.0.1:<port>` */
  readonly httpUrl: string;
  /** Commands handed to sendCommand, in order. */
  readonly commands: { deviceId: string; cmd: DeviceCommand }[];
  token(options?: CreateTokenOptions): Promise<string>;
  /** A correctly signed token that expired a minute ago. */
  expiredToken(): Promise<string>;
  close(): Promise<void>;
}

/** Starts the channel on `http.createServer`; `env` overrides config variables (e.g. BRIDGE_LIVE_PING_MS). */
export async function startLiveServer(env: Record<string, string> = {}): Promise<LiveServer> {
  const dataDir = tempDir('live');
  const config = loadConfig({ BRIDGE_DATA_DIR: dataDir, BRIDGE_HTTP_PORT: '0', LOG_LEVEL: 'silent', ...env });
  const tokens = await openTokenService(dataDir);
  const metrics = createMetrics({ defaultMetrics: false });
  const commands: { deviceId: string; cmd: DeviceCommand }[] = [];
  const log = createLogger(process.env['TEST_LOG_LEVEL'] ?? 'silent');
  const hub = new LiveHub({ config, log, metrics });
  const live = createLiveChannel({
    config,
    log,
    tokens,
    hub,
    async sendCommand(deviceId, cmd) {
      commands.push({ deviceId, cmd });
    },
  });
  const server: Server = createServer((req, res) => {
    if (!live.handleRequest(req, res)) {
      res.writeHead(404);
      res.end();
    }
  });
  server.on('upgrade', (req, socket, head) => live.handleUpgrade(req, socket, head));
  server.listen(0, '127.0.0.1');
  await waitEvent(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    config,
    live,
    hub,
    tokens,
    metrics,
    port,
    wsUrl: `ws://127.0.0.1:${port}/live`,
    httpUrl: `http://127.0.0.1:${port}`,
    commands,
    async token(options) {
      return (await tokens.create(options)).token;
    },
    async expiredToken() {
      const key = Buffer.from(readFileSync(join(dataDir, 'token-key'), 'utf8').trim(), 'base64url');
      return new SignJWT({ feeds: ['#'], commands: true })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('telebridge')
        .setAudience('telebridge-live')
        .setJti('expired-one')
        .setIssuedAt(Math.floor(Date.now() / 1000) - 120)
        .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
        .sign(new Uint8Array(key));
    },
    async close() {
      await live.close();
      await hub.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export type LiveMessage = Record<string, unknown> & { type: string };

/** A `ws` client that queues every object received; `next()` takes them in order. */
export class LiveTestClient {
  readonly received: LiveMessage[] = [];
  private index = 0;
  /** Resolves with the close code and reason once the connection closed. */
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (!isBinary) this.received.push(JSON.parse(String(data)) as LiveMessage);
    });
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })),
    );
    ws.on('error', () => {});
  }

  /** Opens a connection; `token` goes in the query string (undefined: no token). */
  static async connect(url: string, token?: string, options: ClientOptions & { protocols?: string[] } = {}) {
    const target = token === undefined ? url : `${url}?token=${encodeURIComponent(token)}`;
    const { protocols, ...rest } = options;
    const ws = new WebSocket(target, protocols ?? [], rest);
    const client = new LiveTestClient(ws);
    await waitEvent(ws, 'open');
    return client;
  }

  /** The HTTP status of a refused handshake (the test fails if the upgrade succeeds). */
  static async refusedStatus(url: string, options: ClientOptions = {}): Promise<number> {
    const ws = new WebSocket(url, options);
    ws.on('error', () => {});
    const [, res] = (await Promise.race([
      waitEvent(ws, 'unexpected-response'),
      waitEvent(ws, 'open').then(() => {
        ws.terminate();
        throw new Error('the upgrade was accepted');
      }),
    ])) as [unknown, { statusCode: number; resume(): void }];
    res.resume();
    ws.terminate();
    return res.statusCode;
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** The next message not yet taken, waiting up to `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<LiveMessage> {
    const deadline = Date.now() + timeoutMs;
    while (this.index >= this.received.length) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no message within ${timeoutMs} ms (got ${JSON.stringify(this.received.slice(-3))})`);
      await Promise.race([waitEvent(this.ws, 'message', left), this.closed.then(() => undefined)]).catch(
        () => {},
      );
      if (this.ws.readyState === WebSocket.CLOSED && this.index >= this.received.length) {
        throw new Error('connection closed while waiting for a message');
      }
    }
    return this.received[this.index++]!;
  }

  /** Takes messages until one satisfies `match` (skipping the others). */
  async nextMatching(match: (m: LiveMessage) => boolean, timeoutMs = 5000): Promise<LiveMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (match(m)) return m;
    }
  }

  /** Messages received and not yet taken (does not wait). */
  drain(): LiveMessage[] {
    const out = this.received.slice(this.index);
    this.index = this.received.length;
    return out;
  }

  close(): void {
    this.ws.close();
  }
}

/** A one-sample reading. */
export function reading(
  deviceId: string,
  seq: number,
  values: Record<string, number>,
  time = Date.now(),
): Reading {
  return { deviceId, seq, samples: [{ time, values, labels: {} }], receivedAt: Date.now() };
}

export interface SseEvent {
  readonly id: string | undefined;
  readonly data: Record<string, unknown>;
}

/**
 * Reads SSE events from a GET, parsed into { id, data }, until `until` data events arrived (or
 * `until(events)` is true); then closes the stream. A refused request gives its status and no events.
 */
export async function readSse(
  url: string,
  headers: Record<string, string>,
  until: number | ((events: readonly SseEvent[]) => boolean),
  timeoutMs = 10_000,
): Promise<{ status: number; events: SseEvent[] }> {
  const req = request(url, { headers });
  req.end();
  const [res] = (await waitEvent(req, 'response')) as [IncomingMessage];
  if (res.statusCode !== 200) {
    res.resume();
    return { status: res.statusCode ?? 0, events: [] };
  }
  assert.match(String(res.headers['content-type']), /^text\/event-stream/);
  res.setEncoding('utf8');
  let buffer = '';
  const events: SseEvent[] = [];
  res.on('data', (chunk: string) => {
    buffer += chunk;
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id: string | undefined;
      let data: string | undefined;
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) id = line.slice(4);
        else if (line.startsWith('data: ')) data = line.slice(6);
      }
      if (data !== undefined) events.push({ id, data: JSON.parse(data) });
    }
  });
  const done = typeof until === 'number' ? () => events.length >= until : () => until(events);
  try {
    await waitFor('SSE events', done, { timeoutMs });
  } finally {
    req.destroy();
  }
  return { status: 200, events };
}
