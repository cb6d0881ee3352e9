/**
 * Room: bridge/live. `GET /api/history?device=D&from=F&to=T[&step=S][&points=N]` (contract §5,
 * issue 15): one device's readings over a window as JSON (`HistoryData` of web/client/protocol.ts,
 * the same object a `/live` `history` message carries). Same token rules as `/live`: `?token=` or
 * `Authorization: Bearer`, limited to the feeds the token allows (telemetry and status of the
 * device each need their feed; neither: 403), the same Origin allow-list.
 *
 * - `from`, `to`: Unix ms or RFC 3339 (`2026-11-26T10:00:00Z`); default: the last hour up to now.
 * - `step`: a duration (`1m`, `10s`): buckets of that width with mean, min, max and count per value;
 *   `points=N` picks the step for at most N buckets; neither: raw readings.
 * - Errors: JSON `{"error": code, "message": …}` with a code of src/errors.ts — 400 E_HISTORY_RANGE
 *   (malformed) or E_HISTORY_LIMIT (over a limit), 401 E_TOKEN, 403 E_FORBIDDEN, 503 E_HISTORY_OFF
 *   or E_STORAGE.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HistoryData } from '../../../web/client/protocol.js';
import type { TokenService } from '../../auth/tokens.js';
import type { Config } from '../../config.js';
import { parseDuration } from '../../duration.js';
import { ERROR_CODES, type ErrorCode, TelebridgeError } from '../../errors.js';
import { isFeedPattern, parseFeedFilter, scopeCovers } from '../../feeds.js';
import type { Logger } from '../../log.js';
import { DEVICE_ID_RE } from '../../topics.js';
import type { LiveHistory } from './history-source.js';
import { originAllowed, tokenOf } from './request-auth.js';

export interface HistoryApiDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly tokens: TokenService;
  readonly history?: LiveHistory | undefined;
  isClosing(): boolean;
}

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  [ERROR_CODES.historyRange]: 400,
  [ERROR_CODES.historyLimit]: 400,
  [ERROR_CODES.token]: 401,
  [ERROR_CODES.forbidden]: 403,
  [ERROR_CODES.historyOff]: 503,
  [ERROR_CODES.storage]: 503,
};

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$/;
const HOUR_MS = 3_600_000;

function rangeError(message: string): TelebridgeError {
  return new TelebridgeError(ERROR_CODES.historyRange, message);
}

/** A time parameter: Unix ms or RFC 3339; `fallback` when absent. */
export function parseTime(name: string, text: string | null, fallback: number): number {
  if (text === null || text === '') return fallback;
  if (/^-?\d{1,15}$/.test(text)) return Number(text);
  const ms = RFC3339_RE.test(text) ? Date.parse(text) : Number.NaN;
  if (!Number.isFinite(ms)) {
    throw rangeError(`${name}=${JSON.stringify(text)}: expected Unix milliseconds or an RFC 3339 time`);
  }
  return ms;
}

/** The query of a request, validated: device, window, step or points. */
function parseQuery(url: URL): { device: string; from: number; to: number; step?: number; points?: number } {
  const p = url.searchParams;
  const device = p.get('device') ?? '';
  if (!DEVICE_ID_RE.test(device)) throw rangeError('device=<device id> is required');
  const to = parseTime('to', p.get('to'), Date.now());
  const from = parseTime('from', p.get('from'), to - HOUR_MS);
  const q: { device: string; from: number; to: number; step?: number; points?: number } = {
    device,
    from,
    to,
  };
  const step = p.get('step');
  if (step !== null) {
    const ms = parseDuration(step);
    if (!ms) throw rangeError(`step=${JSON.stringify(step)}: expected a duration such as 10s, 1m or 1h`);
    q.step = ms;
  }
  const points = p.get('points');
  if (points !== null) {
    if (!/^\d{1,9}$/.test(points))
      throw rangeError(`points=${JSON.stringify(points)}: expected a whole number`);
    q.points = Number(points);
  }
  return q;
}

export function handleHistoryApi(
  deps: HistoryApiDeps,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): void {
  const { config } = deps;
  const origin = req.headers.origin;
  const cors: Record<string, string> =
    origin && config.live.allowedOrigins.includes(origin)
      ? { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' }
      : {};
  if (req.method === 'OPTIONS' && cors['Access-Control-Allow-Origin']) {
    // A browser's preflight for a request with an Authorization header.
    res.writeHead(204, {
      ...cors,
      'Access-Control-Allow-Methods': 'GET',
      'Access-Control-Allow-Headers': 'Authorization',
      'Access-Control-Max-Age': '600',
    });
    res.end();
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, { error: 'E_USAGE', message: 'GET only' }, { Allow: 'GET, HEAD' });
    return;
  }
  if (deps.isClosing()) {
    send(res, 503, { error: ERROR_CODES.storage, message: 'shutting down' });
    return;
  }
  if (!originAllowed(req, config.live.allowedOrigins)) {
    send(res, 403, { error: ERROR_CODES.forbidden, message: 'origin not allowed' });
    return;
  }
  const token = tokenOf(req, url);
  if (!token) {
    send(res, 401, { error: ERROR_CODES.token, message: 'token required' }, { 'WWW-Authenticate': 'Bearer' });
    return;
  }
  deps.tokens
    .verify(token)
    .then(
      async (claims) => {
        const q = parseQuery(url);
        const scope = claims.feeds.map(parseFeedFilter).filter(isFeedPattern);
        const telemetry = scopeCovers(scope, { kind: 'telemetry', device: q.device });
        const status = scopeCovers(scope, { kind: 'status', device: q.device });
        if (!telemetry && !status) {
          throw new TelebridgeError(
            ERROR_CODES.forbidden,
            `device '${q.device}' is outside the token's feeds`,
          );
        }
        const history = deps.history;
        if (!history?.available) {
          throw new TelebridgeError(
            ERROR_CODES.historyOff,
            'history is off on this bridge (BRIDGE_HISTORY_RETENTION=0 and no InfluxDB)',
          );
        }
        const a = await history.range(q);
        const body: HistoryData = {
          device: a.device,
          from: a.from,
          to: a.to,
          step: a.step,
          t: telemetry ? a.t : [],
          series: telemetry ? a.series : {},
          status: status ? (a.status as HistoryData['status']) : [],
          ...(a.cursor !== undefined ? { cursor: a.cursor } : {}),
          ...(a.completeFrom !== undefined ? { completeFrom: a.completeFrom } : {}),
        };
        send(res, 200, body, { ...cors, 'Cache-Control': 'no-store' }, req.method === 'HEAD');
      },
      (err: Error) => {
        deps.log.debug({ reason: err.message }, 'history api: token refused');
        throw new TelebridgeError(ERROR_CODES.token, 'token invalid, expired or revoked');
      },
    )
    .catch((err: unknown) => {
      const code = (err as TelebridgeError).code;
      const status = code === undefined ? undefined : STATUS_OF[code];
      if (status === undefined) {
        deps.log.error({ err }, 'history api: request failed');
        send(res, 500, { error: ERROR_CODES.storage, message: 'internal error' }, cors);
        return;
      }
      send(
        res,
        status,
        { error: code, message: (err as Error).message },
        status === 401 ? { ...cors, 'WWW-Authenticate': 'Bearer' } : cors,
      );
    });
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  extra: Record<string, string> = {},
  headOnly = false,
): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
    ...extra,
  });
  res.end(headOnly ? undefined : text);
}
