/**
 * Room: bridge/live. `/live`: JSON over WebSocket (contract §5) on `ws` with `noServer`, so the one HTTP server routes
 * upgrades by path. The token is checked before the upgrade (401 and no upgrade otherwise).
 *
 * Limits: inbound frames ≤ 4 KiB (`ws` closes with 1009 beyond), ≤ 100 feeds, a token bucket on
 * inbound messages (`rate_limited`; a client that keeps going is closed with 1008), ping every
 * `pingMs` and `terminate()` for a peer that did not answer the previous one.
 *
 * Fan-out cost (issue 8): a streamed message is framed once (ws-frame.ts) and that one buffer is
 * written to the socket of every connection that sends it uncompressed. This is safe next to `ws`'s
 * own writes because `ws`'s Sender writes a frame synchronously to the same socket unless it holds a
 * message being compressed (or a Blob, never sent here), which `bufferedAmount` exceeding the
 * socket's own `writableLength` reveals: then the message goes through `ws.send` and keeps its place.
 * We write only while `readyState` is OPEN, i.e. never after a close frame.
 *
 * permessage-deflate is negotiated with server_no_context_takeover: `ws` then honours the threshold,
 * so messages under DEFLATE_THRESHOLD (every ordinary telemetry message) go uncompressed and share the
 * frame, and no connection keeps a deflate window between messages. With context takeover `ws`
 * compresses every message, per connection: 1,000 browsers at 100 messages/s cost ~51 µs a delivery
 * and ~0.5 GiB instead of ~8 µs (bench live-fanout with deflate offered). Every socket written to in
 * one event-loop turn stays corked until the turn's check phase (src/turn-cork.ts), so the messages
 * a busy turn fans out leave as one `writev` per connection instead of one per message.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import { CLOSE_CODES, SUBPROTOCOL } from '../../../web/client/protocol.js';
import type { TokenClaims, TokenService } from '../../auth/tokens.js';
import type { Config } from '../../config.js';
import { type FeedPattern, scopeCovers } from '../../feeds.js';
import type { Logger } from '../../log.js';
import { TokenBucket } from '../../rate-limit.js';
import { DEVICE_ID_RE } from '../../topics.js';
import { corkForTurn } from '../../turn-cork.js';
import { WsHeartbeat } from '../../ws-heartbeat.js';
import type { LiveBroker } from './broker.js';
import { type ClientRegistry, openClient } from './client.js';
import type { LiveHistory } from './history-source.js';
import { originAllowed, requestUrl, tokenOf } from './request-auth.js';
import type { ErrorCode, LiveTransport } from './session.js';
import type { DeviceCommand } from './types.js';
import { FrameCache } from './ws-frame.js';

/** Largest inbound frame, bytes (contract §5). */
export const MAX_INBOUND_BYTES = 4096;
const TEXT = { binary: false } as const;
/** Messages at least this long (bytes of JSON) are compressed on permessage-deflate connections. */
const DEFLATE_THRESHOLD = 1024;
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
const MAX_ID_LENGTH = 128;
const MAX_COMMAND_ARGS = 32;
const MAX_ARG_VALUE_LENGTH = 256;

export interface WsEndpointDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly tokens: TokenService;
  readonly broker: LiveBroker;
  readonly registry: ClientRegistry;
  /** Resumes older than the broker's window and `history` windows; none: the broker alone. */
  readonly history?: LiveHistory | undefined;
  sendCommand(deviceId: string, cmd: DeviceCommand): Promise<void>;
  /** True once the channel is closing: new connections get 503. */
  isClosing(): boolean;
}

export interface WsEndpoint {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
}

export function createWsEndpoint(deps: WsEndpointDeps): WsEndpoint {
  const { config, log } = deps;
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    maxPayload: MAX_INBOUND_BYTES,
    perMessageDeflate: config.live.deflate
      ? { threshold: DEFLATE_THRESHOLD, serverNoContextTakeover: true }
      : false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  const frames = new FrameCache();
  const heartbeat = new WsHeartbeat();

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err) => log.debug({ err }, 'live: socket error before upgrade'));
    if (deps.isClosing()) {
      reject(socket, 503, 'Service Unavailable');
      return;
    }
    const url = requestUrl(req);
    if (url?.pathname !== '/live') {
      reject(socket, 404, 'Not Found');
      return;
    }
    if (!originAllowed(req, config.live.allowedOrigins)) {
      reject(socket, 403, 'Forbidden');
      return;
    }
    const token = tokenOf(req, url);
    if (!token) {
      reject(socket, 401, 'Unauthorized');
      return;
    }
    deps.tokens.verify(token).then(
      (claims) => {
        if (socket.destroyed) return;
        if (deps.isClosing()) {
          reject(socket, 503, 'Service Unavailable');
          return;
        }
        wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, socket, claims));
      },
      (err: Error) => {
        log.debug({ reason: err.message }, 'live: token refused');
        reject(socket, 401, 'Unauthorized');
      },
    );
  }

  /** `socket` is the one `ws` was handed in `handleUpgrade`: the connection's only byte stream. */
  function onConnection(ws: WebSocket, socket: Duplex, claims: TokenClaims): void {
    const bucket = new TokenBucket(config.live.rate, config.live.burst);
    let strikes = 0;
    let closeTimer: NodeJS.Timeout | undefined;
    const onSent = (err?: Error | null) => {
      if (!err) session.onWritten();
    };
    const closeWs = (code: number, reason: string) => {
      ws.close(code, reason);
      // A peer that does not read never sees the close frame: drop it after the drain timeout.
      closeTimer ??= setTimeout(() => ws.terminate(), config.limits.drainTimeoutMs);
      closeTimer.unref();
    };
    const deflate = ws.extensions !== '';
    /** True when `json` would go out as the shared uncompressed frame, right now, in order. */
    const shared = (json: Buffer) =>
      ws.readyState === ws.OPEN &&
      (!deflate || (json.length < DEFLATE_THRESHOLD && ws.bufferedAmount === socket.writableLength));
    const transport: LiveTransport = {
      bufferedAmount: () => ws.bufferedAmount,
      sendEvent: (event, snapshot) => {
        corkForTurn(socket);
        if (!snapshot && shared(event.json)) socket.write(frames.of(event), onSent);
        else ws.send(snapshot ? event.snapshotJson() : event.json, TEXT, onSent);
      },
      sendControl: (message) => ws.send(JSON.stringify(message), onSent),
      close: closeWs,
    };
    const client = openClient(deps, config.live, claims, transport, {
      transport: 'ws',
      tick() {
        if (!heartbeat.beat(ws)) log.debug({ jti: claims.jti }, 'live: no pong, terminated');
      },
      shutdown: closeWs,
      kill: () => ws.terminate(),
    });
    const session = client.session;
    const scope = session.scope;
    deps.registry.add(client);

    const sendError = (id: string | undefined, code: ErrorCode, message: string) =>
      transport.sendControl(
        id === undefined ? { type: 'error', code, message } : { type: 'error', id, code, message },
      );

    heartbeat.watch(ws);
    ws.on('error', (err) => log.debug({ err: err.message, jti: claims.jti }, 'live: connection error'));
    ws.on('close', () => {
      if (closeTimer) clearTimeout(closeTimer);
      session.end();
    });
    ws.on('message', (data, isBinary) => {
      if (session.isEnded) return;
      if (isBinary) {
        sendError(undefined, 'bad_request', 'one JSON object per text frame');
        return;
      }
      let message: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse(String(data));
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
          throw new Error('not an object');
        message = parsed as Record<string, unknown>;
      } catch {
        sendError(undefined, 'bad_request', 'one JSON object per text frame');
        return;
      }
      const id =
        typeof message['id'] === 'string' && message['id'].length > 0 && message['id'].length <= MAX_ID_LENGTH
          ? message['id']
          : undefined;
      if (!bucket.take()) {
        // Keep answering (bounded by the send-buffer limits) but stop a client that never slows down.
        if (++strikes > config.live.burst) {
          closeWs(CLOSE_CODES.policy, 'rate limit exceeded');
          return;
        }
        sendError(id, 'rate_limited', `at most ${config.live.rate} messages a second`);
        return;
      }
      strikes = 0;
      if (id === undefined) {
        sendError(undefined, 'bad_request', `id must be a string of 1 to ${MAX_ID_LENGTH} characters`);
        return;
      }
      let failure: { code: ErrorCode; message: string } | undefined;
      switch (message['type']) {
        case 'subscribe':
          failure = session.subscribe(id, message['feeds'], message['since'], {
            history: message['history'],
            points: message['points'],
          });
          break;
        case 'unsubscribe':
          failure = session.unsubscribe(id, message['feeds']);
          break;
        case 'command':
          failure = command(id, message, claims, scope);
          break;
        default:
          failure = { code: 'bad_request', message: "type must be 'subscribe', 'unsubscribe' or 'command'" };
      }
      if (failure) sendError(id, failure.code, failure.message);
    });

    function command(
      id: string,
      message: Record<string, unknown>,
      claims: TokenClaims,
      scope: readonly FeedPattern[],
    ): { code: ErrorCode; message: string } | undefined {
      if (!claims.commands) return { code: 'forbidden', message: 'this token may not send commands' };
      const { device, name } = message;
      const args = message['args'] ?? {};
      if (typeof device !== 'string' || !DEVICE_ID_RE.test(device))
        return { code: 'bad_request', message: 'bad device id' };
      if (typeof name !== 'string' || !NAME_RE.test(name))
        return { code: 'bad_request', message: 'bad command name' };
      if (args === null || typeof args !== 'object' || Array.isArray(args)) {
        return { code: 'bad_request', message: 'args must be an object of strings' };
      }
      const entries = Object.entries(args);
      if (
        entries.length > MAX_COMMAND_ARGS ||
        !entries.every(
          ([k, v]) => NAME_RE.test(k) && typeof v === 'string' && v.length <= MAX_ARG_VALUE_LENGTH,
        )
      ) {
        return { code: 'bad_request', message: `args: at most ${MAX_COMMAND_ARGS} names with string values` };
      }
      // Commands go only to devices whose feeds the token may see.
      const visible = (['telemetry', 'status'] as const).some((kind) => scopeCovers(scope, { kind, device }));
      if (!visible) return { code: 'forbidden', message: `device '${device}' is outside the token's feeds` };
      const cmd: DeviceCommand = {
        id: randomUUID(),
        name,
        args: Object.fromEntries(entries) as Record<string, string>,
      };
      deps.sendCommand(device, cmd).then(
        () => {
          if (!session.isEnded) transport.sendControl({ type: 'ack', id });
        },
        (err: Error) => {
          log.warn({ err: err.message, device }, 'live: command not delivered');
          if (!session.isEnded) sendError(id, 'bad_request', `command not delivered: ${err.message}`);
        },
      );
      return undefined;
    }
  }

  return {
    handleUpgrade,
    close() {
      wss.close();
    },
  };
}

/** Answers an upgrade request with a plain HTTP status and closes the socket (no upgrade). */
function reject(socket: Duplex, status: number, text: string): void {
  if (socket.destroyed) return;
  const body = `${text}\n`;
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `${status === 401 ? 'WWW-Authenticate: Bearer\r\n' : ''}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
