/**
 * Room: bridge/live. `GET /live/sse?feeds=a,b&token=T`: the live channel's objects as Server-Sent Events (contract §5).
 * Streamed messages carry `id: <cursor>`, so a browser's EventSource resumes by itself with
 * `Last-Event-ID` (or a client passes `?since=`). Control objects (`subscribed`, `replayed`, `gap`) are
 * `data:` lines without an id, which leaves the last id unchanged. Same token, scope, feed limit and
 * backpressure as the WebSocket; a heartbeat comment line every ping interval keeps proxies from
 * timing the stream out.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CLOSE_CODES } from '../../../web/client/protocol.js';
import type { TokenService } from '../../auth/tokens.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { LiveBroker } from './broker.js';
import { type ClientRegistry, openClient } from './client.js';
import type { LiveHistory } from './history-source.js';
import { originAllowed, tokenOf } from './request-auth.js';
import type { ErrorCode, LiveTransport } from './session.js';

export interface SseDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly tokens: TokenService;
  readonly broker: LiveBroker;
  readonly registry: ClientRegistry;
  readonly history?: LiveHistory | undefined;
  isClosing(): boolean;
}

const STATUS_OF: Record<ErrorCode, number> = {
  bad_request: 400,
  forbidden: 403,
  too_many_subscriptions: 400,
  rate_limited: 429,
};

export function handleSse(deps: SseDeps, req: IncomingMessage, res: ServerResponse, url: URL): void {
  const { config, log } = deps;
  if (req.method !== 'GET') {
    answer(res, 405, 'bad_request', 'GET only', { Allow: 'GET' });
    return;
  }
  if (deps.isClosing()) {
    answer(res, 503, 'unavailable', 'shutting down');
    return;
  }
  if (!originAllowed(req, config.live.allowedOrigins)) {
    answer(res, 403, 'forbidden', 'origin not allowed');
    return;
  }
  const token = tokenOf(req, url);
  if (!token) {
    answer(res, 401, 'unauthorized', 'token required', { 'WWW-Authenticate': 'Bearer' });
    return;
  }
  const feeds = url.searchParams
    .getAll('feeds')
    .flatMap((f) => f.split(','))
    .map((f) => f.trim())
    .filter(Boolean);
  const lastEventId = req.headers['last-event-id'];
  const since =
    (typeof lastEventId === 'string' && lastEventId) || url.searchParams.get('since') || undefined;
  // `history` (and `points`) as in `subscribe`; a reconnecting EventSource sends Last-Event-ID,
  // which resumes instead (the history was shown already).
  const history = since === undefined ? (url.searchParams.get('history') ?? undefined) : undefined;
  const pointsText = history === undefined ? null : url.searchParams.get('points');
  const points =
    pointsText === null ? undefined : /^[0-9]{1,9}$/.test(pointsText) ? Number(pointsText) : pointsText;

  deps.tokens.verify(token).then(
    (claims) => {
      if (res.destroyed || res.writableEnded) return;
      let headSent = false;
      const ensureHead = () => {
        if (headSent) return;
        headSent = true;
        const headers: Record<string, string> = {
          'Content-Type': 'text/event-stream; charset=utf-8',
          'Cache-Control': 'no-cache, no-transform',
          Connection: 'keep-alive',
          'X-Accel-Buffering': 'no', // nginx: do not buffer the stream
        };
        const origin = req.headers.origin;
        if (origin && config.live.allowedOrigins.includes(origin))
          headers['Access-Control-Allow-Origin'] = origin;
        res.writeHead(200, headers);
      };
      const onSent = (err?: Error | null) => {
        if (!err) session.onWritten();
      };
      const transport: LiveTransport = {
        bufferedAmount: () => res.writableLength,
        sendEvent(event, snapshot) {
          ensureHead();
          // Corked writes leave as one chunk; the JSON bytes are the shared ones, not a copy.
          res.cork();
          res.write(`id: ${event.cursor}\ndata: `);
          res.write(snapshot ? event.snapshotJson() : event.json);
          res.write('\n\n', onSent);
          res.uncork();
        },
        sendControl(message) {
          ensureHead();
          res.write(`data: ${JSON.stringify(message)}\n\n`, onSent);
        },
        close(code) {
          // 1013 (overflow): the peer does not read, so nothing more can reach it.
          if (code === CLOSE_CODES.tryAgainLater) res.destroy();
          else res.end();
        },
      };
      const client = openClient(deps, config.live, claims, transport, {
        transport: 'sse',
        tick() {
          if (!res.writableEnded) res.write(': ping\n\n');
        },
        shutdown() {
          res.end();
        },
        kill() {
          res.destroy();
        },
      });
      const session = client.session;
      const failure =
        feeds.length === 0
          ? { code: 'bad_request' as const, message: 'feeds=<filter>[,<filter>] is required' }
          : session.subscribe('sse', feeds, since, { history, points });
      if (failure) {
        session.end();
        answer(res, STATUS_OF[failure.code], failure.code, failure.message);
        return;
      }
      ensureHead();
      res.flushHeaders();
      if (!session.isEnded) deps.registry.add(client);
      res.on('close', () => session.end());
      res.on('error', (err) => log.debug({ err: err.message }, 'live: SSE stream error'));
      if (res.destroyed) session.end();
    },
    (err: Error) => {
      log.debug({ reason: err.message }, 'live: SSE token refused');
      answer(res, 401, 'unauthorized', err.message, { 'WWW-Authenticate': 'Bearer' });
    },
  );
}

function answer(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  extra: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const body = JSON.stringify({ error: code, message });
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Cache-Control': 'no-cache',
    ...extra,
  });
  res.end(body);
}
