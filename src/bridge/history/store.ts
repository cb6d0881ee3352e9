/**
 * Room: bridge/history. The history store as the main thread sees it: `append()` encodes an event into the current batch
 * (codec.ts, well under a microsecond) and returns; batches go to the history worker (worker.ts,
 * engine.ts) every `flushMs` or when full, as transferred buffers. Nothing on the ingest path ever
 * waits for the store, and the main thread does no disk I/O for it.
 *
 * ```
 * live broker ─ append(event) ─▶ BatchEncoder ──(flushMs / batchBytes)──▶ worker: journal + columns
 *                                                     postMessage(transfer)
 * /live, /api/history ─ after() / range() ─ (flush first, so a read sees every append) ─▶ worker
 * ```
 *
 * Memory is bounded: one batch being built (`batchBytes`) plus batches handed to the worker and not
 * yet written (`maxInFlightBytes`). Past that bound (a disk that cannot keep up) events are not
 * stored: they are counted in `dropped`, and the next stored batch starts after a hole, so a cursor
 * in it gets `gap` rather than a silent skip.
 */
import type { EventLoopUtilization } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { ERROR_CODES, TelebridgeError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { BatchEncoder, type HistoryInput } from './codec.js';
import type {
  AfterPage,
  AfterQuery,
  DevicesQuery,
  HistoryEngineOptions,
  HistoryOpenInfo,
  HistoryStats,
  RangeQuery,
  RangeResult,
} from './engine.js';
import { compareKeys, type HistoryKey } from './key.js';
import type { WorkerOptions } from './worker.js';

export interface HistoryStoreOptions extends Omit<HistoryEngineOptions, 'now' | 'log'> {
  /** Longest an event waits in the batch being built, ms. Default 100. */
  readonly flushMs?: number;
  /** Size of a batch, bytes. Default 256 KiB. */
  readonly batchBytes?: number;
  /** Batches handed to the worker and not yet written, bytes; past it events are dropped. Default 8 MiB. */
  readonly maxInFlightBytes?: number;
  readonly log?: Logger;
}

export interface HistoryStoreStats extends HistoryStats {
  /** Events not stored (over the in-flight bound, or the worker failed). */
  readonly dropped: number;
  /** Appends refused because their key did not follow the previous one. */
  readonly refused: number;
  readonly inFlightBytes: number;
}

type Reply =
  | { t: 'ready'; info: HistoryOpenInfo; maintenanceMs: number }
  | { t: 'failed'; error: { code?: string; message: string } }
  | { t: 'buffer'; data: ArrayBuffer }
  | { t: 'ack'; bytes: number }
  | { t: 'res'; id: number; result?: unknown; error?: { code?: string; message: string } }
  | { t: 'log'; level: 'info' | 'warn' | 'error'; message: string; data?: Record<string, unknown> };

/** Batch buffers kept for reuse. */
const MAX_SPARE_BUFFERS = 4;

const here = import.meta.url;
const TS = here.endsWith('.ts');
const WORKER_URL = new URL(TS ? './worker.ts' : './worker.js', here);
/** From sources (tsx): the worker registers tsx's loader itself (loader hooks do not carry over). */
const TSX_BOOT = TS
  ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`
  : undefined;

function asError(e: { code?: string; message: string }): Error {
  const codes = Object.values(ERROR_CODES) as string[];
  return e.code && codes.includes(e.code)
    ? new TelebridgeError(e.code as TelebridgeError['code'], e.message)
    : new TelebridgeError(ERROR_CODES.storage, `history: ${e.message}`);
}

export class HistoryStore {
  private readonly encoder: BatchEncoder;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private failed: Error | undefined;
  private closing: Promise<void> | undefined;
  private readonly exited: Promise<void>;
  private readonly flushMs: number;
  private readonly maxInFlight: number;
  private readonly flushNow = () => this.flush();
  /** Full-size batch buffers back from the worker, reused (no allocation churn at high rates). */
  private readonly spare: ArrayBuffer[] = [];
  private readonly batchBytes: number;
  /** Events not stored (over the in-flight bound, or after the worker failed). */
  dropped = 0;
  /** Appends refused because their key did not follow the previous one. */
  refused = 0;

  private constructor(
    private readonly worker: Worker,
    readonly info: HistoryOpenInfo,
    options: HistoryStoreOptions,
  ) {
    this.flushMs = options.flushMs ?? 100;
    this.maxInFlight = options.maxInFlightBytes ?? 8 << 20;
    this.batchBytes = options.batchBytes ?? 256 << 10;
    this.encoder = new BatchEncoder(this.batchBytes, Date.now, (size) => {
      const spare = size === this.batchBytes ? this.spare.pop() : undefined;
      return spare ? Buffer.from(spare) : Buffer.allocUnsafeSlow(size);
    });
    // Local keys: the first event follows the key the store resumes from (continuity across restarts).
    this.encoder.setPrevious(info.resumeKey);
    const log = options.log;
    worker.on('message', (m: Reply) => {
      if (m.t === 'ack') this.inFlight -= m.bytes;
      else if (m.t === 'buffer') {
        if (m.data.byteLength === this.batchBytes && this.spare.length < MAX_SPARE_BUFFERS)
          this.spare.push(m.data);
      } else if (m.t === 'res') {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) p?.reject(asError(m.error));
        else p?.resolve(m.result);
      } else if (m.t === 'log') log?.[m.level](m.data ?? {}, m.message);
    });
    this.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('error', (err) => {
      log?.error({ err: err.message }, 'history: the worker failed; history is off until restart');
      this.fail(err);
    });
    worker.once('exit', () => this.fail(new Error('the history worker exited')));
  }

  /**
   * Starts the worker, which opens (or creates) the store and recovers what is on disk.
   * @throws TelebridgeError (E_STORAGE) when the store cannot be opened
   */
  static async open(options: HistoryStoreOptions): Promise<HistoryStore> {
    const data: WorkerOptions = {
      dir: options.dir,
      keys: options.keys,
      retentionMs: options.retentionMs,
      maxBytes: options.maxBytes,
      ...(options.partitionMs !== undefined ? { partitionMs: options.partitionMs } : {}),
      ...(options.partitionBytes !== undefined ? { partitionBytes: options.partitionBytes } : {}),
      ...(options.partitionMemoryBytes !== undefined
        ? { partitionMemoryBytes: options.partitionMemoryBytes }
        : {}),
      ...(options.tailBytes !== undefined ? { tailBytes: options.tailBytes } : {}),
      ...(options.limits !== undefined ? { limits: options.limits } : {}),
    };
    const worker = TSX_BOOT
      ? new Worker(TSX_BOOT, { eval: true, workerData: data })
      : new Worker(WORKER_URL, { workerData: data });
    let onMessage: (m: Reply) => void = () => {};
    let onError: (err: Error) => void = () => {};
    let onExit: (code: number) => void = () => {};
    const first = await new Promise<Reply>((resolve, reject) => {
      // What the engine logs while it opens (a rebuilt file, an emptied store) comes first.
      onMessage = (m) => {
        if (m.t === 'log') options.log?.[m.level](m.data ?? {}, m.message);
        else resolve(m);
      };
      onError = reject;
      onExit = (code) => reject(new Error(`the history worker exited (${code}) while opening`));
      worker.on('message', onMessage);
      worker.once('error', onError);
      worker.once('exit', onExit);
    }).catch((err: Error) => ({ t: 'failed' as const, error: { message: err.message } }));
    worker.off('message', onMessage).off('error', onError).off('exit', onExit);
    if (first.t !== 'ready') {
      await worker.terminate();
      const message = first.t === 'failed' ? first.error.message : 'unexpected first message';
      throw new TelebridgeError(ERROR_CODES.storage, `history store ${options.dir}: ${message}`);
    }
    return new HistoryStore(worker, first.info, options);
  }

  /** Local keys: the epoch of cursors. */
  get epoch(): string | undefined {
    return this.info.epoch;
  }

  /**
   * Takes one streamed event; never waits and never throws. Keys must grow from one append to the
   * next (an append that does not is refused and counted).
   */
  append(event: HistoryInput): void {
    const last = this.encoder.last;
    if (last && compareKeys(event.key, last) <= 0) {
      this.refused++;
      return;
    }
    if (this.failed || this.closing || this.inFlight > this.maxInFlight) {
      this.encoder.skip(event.key);
      this.dropped++;
      return;
    }
    if (!this.encoder.add(event)) {
      this.flush();
      this.encoder.add(event);
    }
    this.timer ??= setTimeout(this.flushNow, this.flushMs).unref();
  }

  /** Events may be missing before the next append (e.g. a Redis stream was trimmed while away). */
  breakContinuity(): void {
    this.flush();
    this.encoder.setPrevious(undefined);
  }

  /** The next append directly follows `key` in the stream (e.g. a Redis reader resuming after it). */
  continueAfter(key: HistoryKey): void {
    this.flush();
    this.encoder.setPrevious(key);
  }

  /** Events after a cursor, in key order, a page at a time (see HistoryEngine.after). */
  after(q: AfterQuery): Promise<AfterPage | 'gap'> {
    return this.request('after', q) as Promise<AfterPage | 'gap'>;
  }

  /** One device's readings in a time range, raw or downsampled (see HistoryEngine.range). */
  range(q: RangeQuery): Promise<RangeResult> {
    return this.request('range', q) as Promise<RangeResult>;
  }

  /** The feeds with history in a time range (see HistoryEngine.devices). */
  devices(q: DevicesQuery): Promise<string[]> {
    return this.request('devices', q) as Promise<string[]>;
  }

  async stats(): Promise<HistoryStoreStats> {
    const s = (await this.request('stats', undefined)) as HistoryStats;
    return { ...s, dropped: this.dropped, refused: this.refused, inFlightBytes: this.inFlight };
  }

  /**
   * The worker thread's event-loop utilisation (its busy time), for benchmarks and metrics.
   * @param since an earlier reading: the difference since then
   */
  workerUtilization(since?: EventLoopUtilization): EventLoopUtilization {
    return since
      ? this.worker.performance.eventLoopUtilization(since)
      : this.worker.performance.eventLoopUtilization();
  }

  /** Writes what is queued, seals the open partition, marks a clean stop and ends the worker. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (!this.failed) {
        this.flush();
        await this.request('close', this.encoder.last, true).catch(() => {});
      }
      await this.worker.terminate().catch(() => {});
      await this.exited;
    })();
    return this.closing;
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const record = this.encoder.finish();
    if (!record || this.failed) return;
    // The record starts its own ArrayBuffer: transferred, not copied.
    const data = record.buffer as ArrayBuffer;
    this.inFlight += data.byteLength;
    this.worker.postMessage({ t: 'batch', data, length: record.length }, [data]);
  }

  private request(op: string, args: unknown, whileClosing = false): Promise<unknown> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closing && !whileClosing) {
      return Promise.reject(new TelebridgeError(ERROR_CODES.storage, 'history store is closed'));
    }
    // A read sees every append made before it: the batch being built goes first.
    this.flush();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ t: 'req', id, op, args });
    });
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = new TelebridgeError(ERROR_CODES.storage, `history: ${err.message}`, { cause: err });
    if (this.timer) clearTimeout(this.timer);
    for (const p of this.pending.values()) p.reject(this.failed);
    this.pending.clear();
  }
}
