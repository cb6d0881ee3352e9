/**
 * Room: bridge/storage. Drains the spool into InfluxDB, oldest first, one request at a time (order is kept).
 *
 * HTTP: the `@influxdata/influxdb-client` Transport (`InfluxDB.transport.request`) for both APIs —
 * v2 `POST /api/v2/write?org&bucket&precision=ms` (Authorization: Token) and v1
 * `POST /write?db&rp&precision=ms` (HTTP Basic when a username is set). The client's WriteApi is not
 * used: it targets only /api/v2/write and keeps its own in-memory retry buffer, while the durable
 * buffer here is the spool. The Transport gives us timeouts, async gzip above the threshold,
 * `HttpError` with status, body and headers, and the library's list of retriable network errors.
 *
 * Failure classes (as Telegraf):
 * - 429, 5xx, 401/403/404 (the operator must fix them; dropping would lose data), timeouts and
 *   network errors → back off (exponential with full jitter, or `Retry-After` when the server sent
 *   one), retry the same batch; the spool keeps growing meanwhile, bounded by its byte limit.
 * - 413 → split the batch in halves; a single line still too large is dead-lettered.
 * - 400/422 and other 4xx (bad lines, partial writes) → bisect down to the lines the database
 *   refuses; those go to `<dataDir>/dead-letter.ndjson` with the database's reason, and are counted.
 *   Good lines of a partial write may be written twice: points are idempotent (contract §4).
 * A batch is confirmed in the spool only after all its lines are written or dead-lettered.
 * Logging: one line per failure burst (BurstLogger), one when writes succeed again.
 */
import { appendFile, rename, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { HttpError, InfluxDB } from '@influxdata/influxdb-client';
import type { InfluxConfig } from '../../config.js';
import { BurstLogger, type Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Spool, SpoolBatch } from './spool.js';

export interface InfluxWriterOptions {
  readonly config: InfluxConfig;
  readonly spool: Spool;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** `<dataDir>/dead-letter.ndjson`. */
  readonly deadLetterPath: string;
  /** First retry delay, ms (doubles per failure, full jitter). Default 250. */
  readonly minRetryMs?: number;
  /** Longest backoff without Retry-After, ms. Default 30 000. */
  readonly maxRetryMs?: number;
  /** Longest wait a Retry-After may impose, ms. Default 300 000. */
  readonly maxRetryAfterMs?: number;
  /** Dead-letter file size at which it is rotated to `.1` (one old file kept), bytes. Default 64 MiB. */
  readonly deadLetterMaxBytes?: number;
  /** Called after every confirmed batch (metrics refresh). */
  readonly onProgress?: () => void;
}

type Failure =
  | { kind: 'retry'; reason: string; retryAfterMs?: number }
  | { kind: 'split'; reason: string }
  | { kind: 'reject'; reason: string };

class Stopped extends Error {}

/** Parses a Retry-After header: delta-seconds or an HTTP date; ms, or undefined. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Sorts an error of the Transport into a failure class. */
export function classify(err: unknown): Failure {
  if (err instanceof HttpError) {
    const reason = `HTTP ${err.statusCode}: ${(
      err.json?.error ??
      err.json?.message ??
      err.body ??
      err.message
    )
      .toString()
      .slice(0, 500)}`;
    const s = err.statusCode;
    if (s === 413) return { kind: 'split', reason };
    if (s === 429 || s >= 500 || s === 401 || s === 403 || s === 404 || s === 408) {
      const retryAfterMs = parseRetryAfter(err.headers?.['retry-after']);
      return retryAfterMs === undefined ? { kind: 'retry', reason } : { kind: 'retry', reason, retryAfterMs };
    }
    return { kind: 'reject', reason };
  }
  const e = err as { code?: string; message?: string; name?: string };
  const reason = `${e.code ?? e.name ?? 'Error'}: ${e.message ?? String(err)}`;
  // Timeouts, refused/reset connections and anything unknown: retry, never drop.
  return { kind: 'retry', reason };
}

export class InfluxWriter {
  private readonly transport;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private readonly burst: BurstLogger;
  private readonly deadBurst: BurstLogger;
  private readonly stopSignal = new AbortController();
  private running: Promise<void> | undefined;
  private draining = false;
  private failing = false;
  private failuresInRow = 0;
  private lastError: string | undefined;
  /**
   * Points of the batch in hand that InfluxDB took / that went to the dead-letter file. Counted in the
   * metrics only when the batch is confirmed, in the same synchronous step that takes it off the
   * backlog, so the loss ledger adds up at every scrape (and a batch cut off at shutdown, which stays
   * in the spool, is not counted as written).
   */
  private batchWritten = 0;
  private batchDead = 0;

  constructor(private readonly options: InfluxWriterOptions) {
    const c = options.config;
    const client = new InfluxDB({
      url: c.url,
      timeout: c.timeoutMs,
      ...(c.api === 'v2' && c.token ? { token: c.token } : {}),
    });
    this.transport = client.transport;
    this.headers = { 'content-type': 'text/plain; charset=utf-8' };
    if (c.api === 'v2') {
      const q = new URLSearchParams({ bucket: c.bucket, precision: 'ms' });
      if (c.org) q.set('org', c.org);
      this.path = `/api/v2/write?${q}`;
    } else {
      const q = new URLSearchParams({ db: c.database, precision: 'ms' });
      if (c.retentionPolicy) q.set('rp', c.retentionPolicy);
      this.path = `/write?${q}`;
      if (c.username !== undefined) {
        this.headers['authorization'] =
          `Basic ${Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64')}`;
      }
    }
    this.burst = new BurstLogger(options.log);
    this.stopSignal.signal.addEventListener('abort', () => this.wake?.(), { once: true });
    this.deadBurst = new BurstLogger(options.log);
  }

  /** True unless the last write attempts failed for a reason worth retrying (DB down, 5xx, 429). */
  get healthy(): boolean {
    return !this.failing;
  }

  /** The last failure's reason, for /readyz. */
  get lastFailure(): string | undefined {
    return this.failing ? this.lastError : undefined;
  }

  start(): void {
    this.running ??= this.loop().catch((err: unknown) => {
      if (!(err instanceof Stopped)) this.options.log.error({ err }, 'influx writer stopped by an error');
    });
  }

  /**
   * Drains what is in the spool (no more waiting for full batches), for at most `graceMs`; then aborts
   * the request or backoff in flight. Unconfirmed lines stay in the spool for the next start.
   */
  async stop(graceMs: number): Promise<void> {
    this.draining = true;
    const timer = setTimeout(() => this.stopSignal.abort(), graceMs);
    // Wake a loop that waits for data or for the flush interval.
    this.wake?.();
    try {
      await this.running;
    } finally {
      clearTimeout(timer);
      this.stopSignal.abort();
    }
  }

  private wake: (() => void) | undefined;

  private async loop(): Promise<void> {
    const { spool, config } = this.options;
    for (;;) {
      if (this.draining && spool.backlogPoints === 0) return;
      if (this.stopSignal.signal.aborted) return;
      if (!this.draining) {
        // One controller per wait, aborted after it: no listener or spool waiter outlives the wait.
        const wakeUp = new AbortController();
        this.wake = () => wakeUp.abort();
        try {
          await spool.waitForData(wakeUp.signal);
          if (spool.backlogPoints > 0 && spool.backlogPoints < config.batchSize && !this.draining) {
            // Batch by size or interval, whichever comes first.
            await Promise.race([
              spool.waitForData(wakeUp.signal, config.batchSize),
              sleep(config.flushIntervalMs, undefined, { signal: wakeUp.signal }).catch(() => {}),
            ]);
          }
        } finally {
          this.wake = undefined;
          wakeUp.abort();
        }
      }
      const batch = await spool.read(config.batchSize);
      if (!batch) {
        if (this.draining) return;
        continue;
      }
      this.batchWritten = 0;
      this.batchDead = 0;
      // The spool's body as is (no per-line work); lines are split only if the batch must be bisected.
      await this.deliver(batch.body, batch.count, () => batch.lines); // throws Stopped at the hard deadline
      await this.confirm(batch);
    }
  }

  private async confirm(batch: SpoolBatch): Promise<void> {
    const { spool, metrics, onProgress } = this.options;
    // spool.confirm takes the lines off the backlog synchronously; count them and refresh the backlog
    // gauge in the same step, before its first await (ledger: written + dead + backlog never overlap).
    const confirmed = spool.confirm(batch);
    if (this.batchWritten > 0) metrics.pointsWritten.inc(this.batchWritten);
    if (this.batchDead > 0) metrics.deadLettered.inc(this.batchDead);
    this.batchWritten = 0;
    this.batchDead = 0;
    onProgress?.();
    await confirmed;
    onProgress?.();
  }

  /**
   * Writes `count` lines (`body`: them joined by "\n"), splitting or bisecting as the failures demand;
   * returns when all are handled. `lines()` gives them one by one, needed only to split.
   */
  private async deliver(body: string, count: number, lines: () => readonly string[]): Promise<void> {
    for (;;) {
      const failure = await this.post(body, count);
      if (!failure) return;
      const { metrics } = this.options;
      if (failure.kind === 'retry') {
        metrics.writeFailures.inc({ class: 'retry' });
        this.failing = true;
        this.lastError = failure.reason;
        this.failuresInRow++;
        const delay = this.retryDelay(failure.retryAfterMs);
        this.burst.error(
          { reason: failure.reason, retryInMs: delay, backlog: this.options.spool.backlogPoints },
          'InfluxDB write failed; retrying (the spool keeps the data)',
        );
        try {
          await sleep(delay, undefined, { signal: this.stopSignal.signal });
        } catch {
          throw new Stopped();
        }
        continue;
      }
      metrics.writeFailures.inc({ class: failure.kind === 'split' ? 'too_large' : 'rejected' });
      if (count === 1) {
        await this.deadLetter(body, failure.reason);
        return;
      }
      const all = lines();
      const mid = Math.ceil(all.length / 2);
      for (const half of [all.slice(0, mid), all.slice(mid)]) {
        await this.deliver(half.join('\n'), half.length, () => half);
      }
      return;
    }
  }

  /** One request of `count` lines. Undefined on success. */
  private async post(body: string, count: number): Promise<Failure | undefined> {
    if (this.stopSignal.signal.aborted) throw new Stopped();
    const end = this.options.metrics.writeSeconds.startTimer();
    // A signal per request: the Transport leaves its abort listener on the signal it is given.
    const request = new AbortController();
    const abort = () => request.abort();
    this.stopSignal.signal.addEventListener('abort', abort, { once: true });
    try {
      await this.transport.request(this.path, body, {
        method: 'POST',
        headers: this.headers,
        gzipThreshold: this.options.config.gzipThreshold,
        signal: request.signal,
      });
    } catch (err) {
      end();
      if (this.stopSignal.signal.aborted) throw new Stopped();
      return classify(err);
    } finally {
      this.stopSignal.signal.removeEventListener('abort', abort);
    }
    end();
    this.batchWritten += count;
    if (this.failing) {
      this.options.log.info({ backlog: this.options.spool.backlogPoints }, 'InfluxDB writes succeed again');
      this.burst.reset();
    }
    this.failing = false;
    this.failuresInRow = 0;
    return undefined;
  }

  private retryDelay(retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, this.options.maxRetryAfterMs ?? 300_000);
    const min = this.options.minRetryMs ?? this.options.config.retryMinMs;
    const max = this.options.maxRetryMs ?? this.options.config.retryMaxMs;
    const cap = Math.min(max, min * 2 ** Math.min(this.failuresInRow - 1, 20));
    // Full jitter between cap/2 and cap: several bridges do not retry in lockstep.
    return Math.round(cap / 2 + Math.random() * (cap / 2));
  }

  private async deadLetter(line: string, reason: string): Promise<void> {
    const path = this.options.deadLetterPath;
    const max = this.options.deadLetterMaxBytes ?? 64 << 20;
    const size = await stat(path).then(
      (s) => s.size,
      () => 0,
    );
    if (size > max) await rename(path, `${path}.1`).catch(() => {});
    await appendFile(path, `${JSON.stringify({ time: new Date().toISOString(), reason, line })}\n`);
    this.batchDead++;
    this.deadBurst.error({ reason, path }, 'InfluxDB refused a line; kept in the dead-letter file');
  }
}
