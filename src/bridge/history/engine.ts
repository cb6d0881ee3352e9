/**
 * Room: bridge/history. The history store engine: recent events on disk in `<dir>`, for two read paths.
 *
 * ```
 *            batch record (codec.ts)
 * ingest ─────────┬──────────────────────────────▶ journal  <id>.journal   key order, all events
 *                 │                                  └─ read by cursor: after(key) → pages
 *                 └─▶ open partition's columns ── seal ─▶ <id>.series   per device, per value name
 *                     (memory, per device)                 └─ read by device and time: range() →
 *                                                             raw rows or buckets (mean/min/max)
 * ```
 *
 * Partitions: the store is a sequence of partitions, each one journal segment plus the series of
 * the same events. The open partition takes new batches; it is sealed (its columns written to its
 * series file, a new partition started) when it is `partitionMs` old, when its journal passes
 * `partitionBytes`, when its columns pass `partitionMemoryBytes`, or when continuity breaks.
 * Retention drops whole partitions, oldest first: those whose last event arrived more than
 * `retentionMs` ago, and more while journals plus series files pass `maxBytes`. Times are arrival
 * times for retention (a replayed old sample is kept as long as one that arrived with it) and
 * sample times for queries.
 *
 * Continuity: every segment records the key just before its first event (`prevKey`). A cursor K
 * resumes from the first segment whose last key is after K only if K ≥ that segment's prevKey (or
 * its first key); otherwise events between K and the segment may be missing and the answer is
 * `gap`. The producer says what precedes each batch (codec.ts); a batch that does not follow the
 * store's newest key starts a new partition there.
 *
 * Local keys (memory broker): the key space is an epoch kept in `meta`, and positions continue
 * across restarts. Positions are handed out by the broker before the store sees them, so the store
 * keeps a reservation in `meta` (fsync'ed): a position above it is never issued before it is
 * durable. After a clean close the reservation is the newest key; after a crash it may be ahead of
 * what reached the journal, and the next run starts after it, with a hole (gap) between: a cursor
 * that a browser got just before a crash is then never reused for another event.
 */
import { type FileHandle, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ERROR_CODES, TelebridgeError } from '../../errors.js';
import { type FeedPattern, patternMatches } from '../../feeds.js';
import { RECORD_HEADER_BYTES, RecordReader, RecordTail, scanRecords, writeFully } from '../record-file.js';
import {
  type BatchInfo,
  batchInfo,
  EventReader,
  RECORD_EVENTS,
  readSegmentHeader,
  recordType,
} from './codec.js';
import { type BucketSeries, Buckets, RawRows, type RawSeries } from './downsample.js';
import { Gate } from './gate.js';
import {
  deleteSegmentFile,
  FIRST_RECORD_OFFSET,
  JournalSegment,
  JournalWriter,
  journalName,
} from './journal.js';
import { compareKeys, type HistoryKey, type KeySpace } from './key.js';
import { type DirLock, lockDir } from './lock.js';
import { loadMeta, type Meta, saveMeta } from './meta.js';
import {
  type ColumnsMemory,
  chunkBytes,
  DeviceColumns,
  decodeChunk,
  encodeSeries,
  readSeriesIndex,
  type SeriesIndex,
  type StatusPoint,
} from './series.js';

export interface HistoryLimits {
  /** Longest range a query may span, ms. Default 31 days. */
  readonly maxWindowMs: number;
  /** Most buckets (points a series) a downsampled answer may have. Default 10 000. */
  readonly maxPoints: number;
  /** Most readings a raw (not downsampled) answer may have. Default 100 000. */
  readonly maxRawRows: number;
  /** Most values (rows or buckets × value names) one answer may hold. Default 2 000 000. */
  readonly maxCells: number;
  /** Most events one cursor page may have. Default 10 000. */
  readonly maxPageEvents: number;
  /** Journal bytes one cursor page may scan before it returns what it found. Default 8 MiB. */
  readonly maxScanBytes: number;
  /** Most feed filters one cursor read may carry. Default 100. */
  readonly maxFeeds: number;
}

export const DEFAULT_HISTORY_LIMITS: HistoryLimits = {
  maxWindowMs: 31 * 86_400_000,
  maxPoints: 10_000,
  maxRawRows: 100_000,
  maxCells: 2_000_000,
  maxPageEvents: 10_000,
  maxScanBytes: 8 << 20,
  maxFeeds: 100,
};

export interface HistoryEngineOptions {
  /** Directory of the store, e.g. `<dataDir>/history`; created when missing. */
  readonly dir: string;
  readonly keys: KeySpace;
  /** How long events are kept, ms (BRIDGE_HISTORY_RETENTION). */
  readonly retentionMs: number;
  /** Disk the store may use, bytes (journals and series files). */
  readonly maxBytes: number;
  /** Age at which the open partition is sealed, ms. Default retention/24 within [1 min, 1 h]. */
  readonly partitionMs?: number;
  /** Journal bytes at which the open partition is sealed. Default maxBytes/16 within [1 MiB, 256 MiB]. */
  readonly partitionBytes?: number;
  /** Memory of the open partition's columns at which it is sealed, bytes. Default 32 MiB. */
  readonly partitionMemoryBytes?: number;
  /** Newest journal records kept in memory for cursor reads, bytes. Default 16 MiB. */
  readonly tailBytes?: number;
  readonly limits?: Partial<HistoryLimits>;
  /** Wall clock, Unix ms (tests move it). */
  readonly now?: () => number;
  /** Where the engine reports trouble (a failed write, a rebuilt file). */
  readonly log?: (level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>) => void;
}

/** What `open` found, for the producer and the logs. */
export interface HistoryOpenInfo {
  /** Local keys: the epoch of cursors (`<epoch>-<position>`). */
  readonly epoch: string | undefined;
  /** Local keys: the first position the broker may issue. */
  readonly nextPosition: number | undefined;
  /** The key that precedes the next event (local keys), for the producer's first batch. */
  readonly resumeKey: HistoryKey | undefined;
  /** The newest key on disk. */
  readonly newestKey: HistoryKey | undefined;
  /** Why the store was emptied at open (another key space, an unreadable meta file), if it was. */
  readonly reset: string | undefined;
  readonly partitions: number;
  readonly events: number;
}

/** One event read back by cursor. */
export interface StoredEvent {
  readonly kind: 'telemetry' | 'status';
  readonly device: string;
  readonly key: HistoryKey;
  readonly time: number;
  readonly body: string;
}

export interface AfterQuery {
  /** Events after this key… */
  readonly key?: HistoryKey;
  /** …or events that arrived at or after this time (Unix ms), from the oldest kept. */
  readonly arrivedFrom?: number;
  readonly limit: number;
  /** Only events of feeds matching one of these (all when absent). */
  readonly feeds?: readonly FeedPattern[];
  /** Only events whose sample/status time is at least this, Unix ms. */
  readonly minTime?: number;
}

export interface AfterPage {
  readonly events: StoredEvent[];
  /** Continue with `after({ key: last })`: every event up to it was examined. */
  readonly last: HistoryKey | undefined;
  /** True when the store holds nothing after `last` (switch to live). */
  readonly end: boolean;
}

export interface RangeQuery {
  readonly device: string;
  /** Unix ms, inclusive. */
  readonly from: number;
  /** Unix ms, inclusive. */
  readonly to: number;
  /** Bucket width, ms (whole number ≥ 1); absent: raw readings unless `points` is given. */
  readonly step?: number;
  /** At most this many buckets (≥ 2): the step is chosen so. */
  readonly points?: number;
}

export interface RangeResult {
  readonly device: string;
  readonly from: number;
  readonly to: number;
  /** Bucket width, ms; null for raw readings. */
  readonly step: number | null;
  /** The newest key the answer reflects: live events after it complete it without gap or duplicate. */
  readonly asOf: HistoryKey | undefined;
  /** Bucket start times (downsampled) or reading times (raw), ascending. */
  readonly t: number[];
  /** Per value name, aligned with `t`. */
  readonly series: Record<string, BucketSeries | RawSeries>;
  /** Status changes in the range, by time. */
  readonly status: StatusPoint[];
  /**
   * Every event that arrived since this time (Unix ms) is held (retention dropped what came before;
   * a fresh store: when it was opened). A sample older than this by more than a device's clock may
   * run ahead may be missing from the answer (another store, InfluxDB, holds it).
   */
  readonly heldSince: number;
}

export interface DevicesQuery {
  /** Only feeds matching one of these (all when absent). */
  readonly feeds?: readonly FeedPattern[];
  /** Sample or status times, Unix ms, inclusive. */
  readonly from: number;
  readonly to: number;
  /** Most feeds the answer may name; more is E_HISTORY_LIMIT. */
  readonly limit: number;
}

export interface HistoryStats {
  readonly partitions: number;
  readonly events: number;
  readonly journalBytes: number;
  readonly seriesBytes: number;
  readonly bytes: number;
  readonly columnsBytes: number;
  readonly tailBytes: number;
  readonly oldestArrival: number | undefined;
  readonly newestKey: HistoryKey | undefined;
  /** Batches dropped because they did not come after the newest key. */
  readonly outOfOrder: number;
  /** Events lost to failed writes. */
  readonly lostEvents: number;
}

type PartitionState = 'open' | 'sealing' | 'sealed';

interface Partition {
  readonly id: number;
  readonly seg: JournalSegment;
  state: PartitionState;
  /** Columns per device, while open or sealing. */
  columns: Map<string, DeviceColumns> | undefined;
  /** Memory of `columns`. */
  readonly memory: ColumnsMemory;
  index: SeriesIndex | undefined;
  seriesBytes: number;
  /** Readers in flight; a dropped partition's files go when this is 0. */
  readers: number;
  dropped: boolean;
}

const SERIES_SUFFIX = '.series';
/** Positions reserved ahead of the newest one seen (local keys). */
export const RESERVE_SPAN = 1_000_000;
/** After a failed write, batches are dropped for this long before a new segment is tried. */
const WRITE_RETRY_MS = 5000;
/**
 * Queries run at once; the others wait their turn. Each holds at most a read buffer and a page or
 * an answer, so this bounds the worker's query memory however many browsers resume together.
 */
const MAX_CONCURRENT_QUERIES = 4;
const READ_CHUNK_BYTES = 256 << 10;

/** Default of HistoryEngineOptions.tailBytes. */
const DEFAULT_TAIL_BYTES = 16 << 20;

/** A name as it appears in a batch's names table: u16 length, UTF-8. */
function nameBytes(name: string): Buffer {
  const utf8 = Buffer.from(name, 'utf8');
  const out = Buffer.allocUnsafe(2 + utf8.length);
  out.writeUInt16LE(utf8.length, 0);
  utf8.copy(out, 2);
  return out;
}

const seriesName = (id: number) => `${String(id).padStart(16, '0')}${SERIES_SUFFIX}`;

/**
 * Checks a range query against the limits and returns its bucket width (ms; undefined: raw).
 * With `points` the step is ⌈span/(points−1)⌉ ms: epoch-aligned buckets of that width number at
 * most `points`.
 * @throws E_HISTORY_RANGE on a malformed query, E_HISTORY_LIMIT over a limit
 */
export function checkRange(q: RangeQuery, limits: HistoryLimits): number | undefined {
  const { from, to } = q;
  if (typeof q.device !== 'string' || q.device.length === 0) throw rangeError('device is required');
  if (!Number.isFinite(from) || !Number.isFinite(to)) throw rangeError('from and to must be times (Unix ms)');
  if (from > to) throw rangeError(`from (${from}) is after to (${to})`);
  if (to - from > limits.maxWindowMs) {
    throw limitError(`the range spans ${to - from} ms: at most ${limits.maxWindowMs} ms`);
  }
  let step: number | undefined;
  if (q.step !== undefined) {
    if (!Number.isInteger(q.step) || q.step < 1) throw rangeError('step must be a whole number of ms ≥ 1');
    step = q.step;
  }
  if (q.points !== undefined) {
    if (!Number.isInteger(q.points) || q.points < 2) throw rangeError('points must be a whole number ≥ 2');
    if (q.points > limits.maxPoints) throw limitError(`at most ${limits.maxPoints} points a series`);
    step = Math.max(step ?? 1, Math.ceil((to - from) / (q.points - 1)), 1);
  }
  if (step !== undefined) {
    const buckets = Math.floor(to / step) - Math.floor(from / step) + 1;
    if (buckets > limits.maxPoints) {
      throw limitError(`${buckets} points a series at step ${step} ms: at most ${limits.maxPoints}`);
    }
  }
  return step;
}

function rangeError(message: string): TelebridgeError {
  return new TelebridgeError(ERROR_CODES.historyRange, message);
}
function limitError(message: string): TelebridgeError {
  return new TelebridgeError(ERROR_CODES.historyLimit, message);
}

export class HistoryEngine {
  private readonly partitions: Partition[] = [];
  private openPartition: Partition | undefined;
  private nextId = 1;
  private newestKey: HistoryKey | undefined;
  /**
   * The key the next event follows, when known (local keys after open: the reservation). A cursor
   * below it and past the newest key is in a hole: events may have been issued and lost.
   */
  private frontier: HistoryKey | undefined;
  private readonly tail: RecordTail;
  private readonly writer: JournalWriter;
  private readonly limits: HistoryLimits;
  private readonly now: () => number;
  private readonly partitionMs: number;
  private readonly partitionBytes: number;
  private readonly partitionMemoryBytes: number;
  private readonly queries = new Gate(MAX_CONCURRENT_QUERIES);
  private meta: Meta;
  private metaChain: Promise<void> = Promise.resolve();
  private sealing: Promise<void> = Promise.resolve();
  private deletions: Promise<void> = Promise.resolve();
  private writeFailedAt = Number.NEGATIVE_INFINITY;
  private outOfOrder = 0;
  private lostEvents = 0;
  private closed = false;
  /** Every event that arrived since this time is held (see RangeResult.heldSince). */
  private coverageStart: number;
  /** This process's hold on the directory (lock.ts). */
  private lock: DirLock | undefined;

  private constructor(
    private readonly options: HistoryEngineOptions,
    meta: Meta,
  ) {
    this.meta = meta;
    this.now = options.now ?? Date.now;
    this.limits = { ...DEFAULT_HISTORY_LIMITS, ...options.limits };
    this.partitionMs =
      options.partitionMs ?? Math.min(3_600_000, Math.max(60_000, Math.floor(options.retentionMs / 24)));
    this.partitionBytes =
      options.partitionBytes ?? Math.min(256 << 20, Math.max(1 << 20, Math.floor(options.maxBytes / 16)));
    this.partitionMemoryBytes = options.partitionMemoryBytes ?? 32 << 20;
    this.coverageStart = this.now();
    this.tail = new RecordTail(options.tailBytes ?? DEFAULT_TAIL_BYTES);
    this.writer = new JournalWriter(options.dir, this.tail, (err, seg) => {
      this.writeFailedAt = this.now();
      this.log('error', 'history: journal write failed; events since the last good write are lost', {
        err: err.message,
        segment: seg.id,
      });
    });
  }

  /** Opens (or creates) the store in `options.dir` and recovers what is on disk. */
  static async open(
    options: HistoryEngineOptions,
  ): Promise<{ engine: HistoryEngine; info: HistoryOpenInfo }> {
    await mkdir(options.dir, { recursive: true });
    const lock = await lockDir(options.dir, options.now);
    let meta: Meta;
    let reset: string | undefined;
    try {
      ({ meta, reset } = await loadMeta(options.dir, options.keys));
    } catch (err) {
      await lock.release();
      throw err;
    }
    const engine = new HistoryEngine(options, meta);
    engine.lock = lock;
    if (reset !== undefined) {
      await engine.wipe();
      engine.log('warn', `history: store emptied (${reset})`, { dir: options.dir });
    }
    await engine.recover();
    // What arrived before the oldest partition kept is gone; a fresh store holds all since now.
    engine.coverageStart = Math.min(engine.coverageStart, engine.partitions[0]?.seg.createdAt ?? Infinity);
    await engine.maintain();
    await engine.warmTail();
    let resumeKey: HistoryKey | undefined;
    let nextPosition: number | undefined;
    if (meta.keys === 'external') await engine.writeMeta(meta);
    else {
      // After a crash the reservation is ahead of the journal: start after it (positions in between
      // may have been issued; they are a hole, answered with gap).
      const resume = Math.max(engine.newestKey?.major ?? 0, meta.reserved ?? 0);
      resumeKey = { major: resume, minor: 0 };
      nextPosition = resume + 1;
      engine.frontier = resumeKey;
      await engine.writeMeta({ ...meta, reserved: resume + RESERVE_SPAN });
    }
    let events = 0;
    for (const p of engine.partitions) events += p.seg.count;
    return {
      engine,
      info: {
        epoch: meta.epoch,
        nextPosition,
        resumeKey,
        newestKey: engine.newestKey,
        reset,
        partitions: engine.partitions.length,
        events,
      },
    };
  }

  /**
   * Takes one batch record from the producer (codec.ts; its frame header is sealed here).
   * @param onDone called once the batch is written, or dropped (in-flight accounting)
   */
  ingest(record: Buffer, onDone: () => void = () => {}): void {
    const payload = record.subarray(RECORD_HEADER_BYTES);
    if (this.closed || recordType(payload) !== RECORD_EVENTS) {
      onDone();
      return;
    }
    const info = batchInfo(payload);
    if (this.newestKey && compareKeys(info.firstKey, this.newestKey) <= 0) {
      // Keys must grow: a batch that does not is dropped whole (a producer bug, never expected).
      this.outOfOrder++;
      onDone();
      return;
    }
    // Even a batch that is not stored has had its positions issued.
    if (this.meta.keys === 'local') this.reserve(info);
    if (this.now() - this.writeFailedAt < WRITE_RETRY_MS) {
      this.lostEvents += info.count;
      onDone();
      return;
    }
    let p = this.openPartition;
    const continuous =
      info.prevKey !== undefined &&
      this.newestKey !== undefined &&
      compareKeys(info.prevKey, this.newestKey) === 0;
    if (p && (!continuous || p.seg.failed)) {
      this.seal(p);
      p = undefined;
    }
    p ??= this.startPartition(info.prevKey);
    this.writer.append(p.seg, record, info, onDone);
    this.addColumns(p.columns!, p.memory, payload);
    this.newestKey = info.lastKey;
    this.frontier = info.lastKey;
    if (p.seg.size >= this.partitionBytes || p.memory.bytes >= this.partitionMemoryBytes) this.seal(p);
    if (this.bytes() > this.options.maxBytes) this.enforceBytes();
  }

  /**
   * Events in key order after a cursor (or from an arrival time), paged. 'gap' when the store does
   * not hold every event after `key` (older than what is kept, or in a hole).
   * @throws E_HISTORY_RANGE / E_HISTORY_LIMIT on a bad query
   */
  async after(q: AfterQuery): Promise<AfterPage | 'gap'> {
    if ((q.key === undefined) === (q.arrivedFrom === undefined)) {
      throw rangeError('give either a key or an arrival time to read from');
    }
    const k = q.key;
    if (
      k &&
      !(Number.isSafeInteger(k.major) && Number.isSafeInteger(k.minor) && k.major >= 0 && k.minor >= 0)
    ) {
      throw rangeError('a key is two whole numbers ≥ 0');
    }
    if (!Number.isInteger(q.limit) || q.limit < 1) throw rangeError('limit must be a whole number ≥ 1');
    if (q.limit > this.limits.maxPageEvents)
      throw limitError(`at most ${this.limits.maxPageEvents} events a page`);
    if (q.feeds && q.feeds.length > this.limits.maxFeeds)
      throw limitError(`at most ${this.limits.maxFeeds} feeds`);
    if (q.minTime !== undefined && !Number.isFinite(q.minTime)) throw rangeError('minTime must be a number');
    return this.queries.run(() => this.readAfter(q));
  }

  private async readAfter(q: AfterQuery): Promise<AfterPage | 'gap'> {
    // Partitions are walked by id, not from a copy: batches keep arriving (and partitions are
    // sealed, started and dropped) while this read awaits the disk.
    let p: Partition | undefined;
    let start: number;
    if (q.key !== undefined) {
      const key = q.key;
      p = this.partitions.find((x) => x.seg.lastKey !== undefined && compareKeys(x.seg.lastKey, key) > 0);
      if (!p) return this.inHole(key) ? 'gap' : { events: [], last: key, end: true };
      const seg = p.seg;
      const resumable =
        (seg.prevKey !== undefined && compareKeys(key, seg.prevKey) >= 0) ||
        compareKeys(key, seg.firstKey!) >= 0;
      if (!resumable) return 'gap';
      start = seg.startFor(key);
    } else {
      const from = q.arrivedFrom!;
      p = this.partitions.find((x) => x.seg.lastKey !== undefined && x.seg.lastArrival >= from);
      if (!p) return { events: [], last: this.newestKey, end: true };
      start = p.seg.startForArrival(from);
    }
    const events: StoredEvent[] = [];
    let after: HistoryKey | undefined = q.key;
    let scanned = 0;
    const budget = this.limits.maxScanBytes;
    // Feeds naming devices (a dashboard following a few): a batch whose names table has none of
    // them is skipped without decoding its events.
    const needles = q.feeds?.every((f) => f.device !== undefined)
      ? [...new Set(q.feeds.map((f) => f.device!))].map(nameBytes)
      : undefined;
    let skipped = false;
    let lastMajor = 0;
    let lastMinor = 0;
    const visit = (payload: Buffer): 'next' | 'stop' => {
      scanned += payload.length;
      const info = batchInfo(payload);
      if (after && compareKeys(info.lastKey, after) <= 0) return 'next';
      if (q.arrivedFrom !== undefined && info.lastArrival < q.arrivedFrom) return 'next';
      // First a byte search of the names table (cheap, may match inside another name), then the
      // exact indexes of the wanted devices.
      const table = needles ? payload.readUInt32LE(72) : 0;
      let r: EventReader | undefined;
      let wanted: number[] | undefined;
      if (needles?.some((n) => payload.indexOf(n, table) >= 0)) {
        const reader = new EventReader(payload);
        r = reader;
        wanted = needles.map((n) => reader.indexOfName(n)).filter((i) => i >= 0);
      }
      if (needles && !wanted?.length) {
        after = info.lastKey;
        return scanned >= budget ? 'stop' : 'next';
      }
      r ??= new EventReader(payload);
      while (r.next()) {
        if (after && !r.after(after)) continue;
        if (wanted && !wanted.includes(r.deviceIndex)) {
          // Examined, not kept (its key object is made only where a page may stop).
          lastMajor = r.major;
          lastMinor = r.minor;
          skipped = true;
          continue;
        }
        if (events.length >= q.limit) {
          if (skipped) after = { major: lastMajor, minor: lastMinor };
          return 'stop';
        }
        skipped = false;
        // Every event up to `after` has been examined.
        after = { major: r.major, minor: r.minor };
        if (q.minTime !== undefined && r.time < q.minTime) continue;
        if (q.feeds && !q.feeds.some((f) => patternMatches(f, r.kind, r.device))) continue;
        events.push({ kind: r.kind, device: r.device, key: after, time: r.time, body: r.body() });
      }
      if (skipped) after = { major: lastMajor, minor: lastMinor };
      skipped = false;
      return scanned >= budget ? 'stop' : 'next';
    };
    for (;;) {
      const seg = p.seg;
      // Read to the segment's end, again if it grew while the read awaited the disk.
      for (;;) {
        const r = await this.readSegment(p, start, visit);
        if (r.stopped) return { events, last: after, end: false };
        // Dropped by retention mid-read: the rest of it is gone, the next read from here is a gap.
        if (p.dropped) return { events, last: after, end: false };
        if (r.off >= seg.size || r.off === start) break;
        start = r.off;
      }
      const prev: Partition = p;
      p = this.partitions.find((x) => x.id > prev.id && x.seg.lastKey !== undefined);
      // The end, unless a known hole follows (then the next read from `last` is the gap).
      if (!p) return { events, last: after, end: !this.inHole(after) };
      // The next segment must continue this one; if not, the next read from here gets a gap.
      if (!p.seg.prevKey || !seg.lastKey || compareKeys(p.seg.prevKey, seg.lastKey) !== 0) {
        return { events, last: seg.lastKey ?? after, end: false };
      }
      after ??= seg.lastKey;
      start = FIRST_RECORD_OFFSET;
    }
  }

  /** True when events after `key` may have been lost before the next one (see `frontier`). */
  private inHole(key: HistoryKey | undefined): boolean {
    return key !== undefined && this.frontier !== undefined && compareKeys(key, this.frontier) < 0;
  }

  /**
   * One device's readings (and status changes) in [from, to], raw or downsampled.
   * @throws E_HISTORY_RANGE on a malformed range, E_HISTORY_LIMIT over a limit
   */
  async range(q: RangeQuery): Promise<RangeResult> {
    const { from, to } = q;
    const step = checkRange(q, this.limits);
    let sink: Buckets | RawRows;
    if (step !== undefined) sink = new Buckets(from, to, step, this.limits.maxCells);
    else sink = new RawRows(from, to, this.limits.maxRawRows, this.limits.maxCells);
    return this.queries.run(() => this.readRange(q.device, from, to, step, sink));
  }

  private async readRange(
    device: string,
    from: number,
    to: number,
    step: number | undefined,
    sink: Buckets | RawRows,
  ): Promise<RangeResult> {
    const status: StatusPoint[] = [];
    const overlaps = (min: number, max: number) => min <= to && max >= from;
    // Walked by id (partitions come and go while a chunk is read). Sealed partitions need the disk,
    // the open one is read from memory last and without a pause, so every event up to `asOf` (taken
    // after it) is in the answer.
    let lastId = 0;
    for (;;) {
      const p = this.partitions.find((x) => x.id > lastId);
      if (!p) break;
      lastId = p.id;
      const inMemory = p.columns?.get(device);
      if (inMemory) {
        if (!overlaps(inMemory.minTime, inMemory.maxTime)) continue;
        sink.add(inMemory);
        for (const s of inMemory.status) if (s.time >= from && s.time <= to) status.push(s);
        continue;
      }
      const entry = p.index && Object.hasOwn(p.index.devices, device) ? p.index.devices[device] : undefined;
      if (!entry || !overlaps(entry.minTime, entry.maxTime)) continue;
      for (const s of entry.status) if (s.time >= from && s.time <= to) status.push(s);
      if (entry.n === 0) continue;
      const rows = await this.readChunk(p, entry.off, chunkBytes(entry), (bytes) =>
        decodeChunk(entry, bytes),
      );
      if (rows) sink.add(rows);
    }
    const asOf = this.newestKey;
    const { t, series } = sink.result();
    status.sort((a, b) => a.time - b.time);
    return {
      device: device,
      from,
      to,
      step: step ?? null,
      asOf,
      t,
      series,
      status,
      heldSince: this.coverageStart,
    };
  }

  /**
   * The feeds (`telemetry/<device>`, `status/<device>`) with readings or status changes in
   * [from, to], sorted, for a history read of wildcard feeds.
   * @throws E_HISTORY_RANGE on a malformed query, E_HISTORY_LIMIT past `limit` feeds
   */
  async devices(q: DevicesQuery): Promise<string[]> {
    if (!Number.isFinite(q.from) || !Number.isFinite(q.to) || q.from > q.to) {
      throw rangeError('from and to must be times (Unix ms), from not after to');
    }
    if (q.feeds && q.feeds.length > this.limits.maxFeeds)
      throw limitError(`at most ${this.limits.maxFeeds} feeds`);
    const found = new Set<string>();
    const overlaps = (min: number, max: number) => min <= q.to && max >= q.from;
    const note = (kind: 'telemetry' | 'status', device: string) => {
      if (q.feeds && !q.feeds.some((f) => patternMatches(f, kind, device))) return;
      found.add(`${kind}/${device}`);
      if (found.size > q.limit) {
        throw limitError(`more than ${q.limit} feeds have history in the window: name fewer devices`);
      }
    };
    const inRange = (points: readonly StatusPoint[]) =>
      points.some((s) => s.time >= q.from && s.time <= q.to);
    for (const p of this.partitions) {
      if (p.columns) {
        for (const [device, d] of p.columns) {
          if (!overlaps(d.minTime, d.maxTime)) continue;
          if (d.count > 0 && rowsIn(d.times, d.count, q.from, q.to)) note('telemetry', device);
          if (inRange(d.status)) note('status', device);
        }
      } else if (p.index) {
        for (const device of Object.keys(p.index.devices)) {
          const entry = p.index.devices[device]!;
          if (!overlaps(entry.minTime, entry.maxTime)) continue;
          // A sealed chunk's time range includes its status changes: telemetry is counted when it has rows.
          if (entry.n > 0) note('telemetry', device);
          if (inRange(entry.status)) note('status', device);
        }
      }
    }
    return [...found].sort();
  }

  stats(): HistoryStats {
    let events = 0;
    let journalBytes = 0;
    let seriesBytes = 0;
    let columnsBytes = 0;
    for (const p of this.partitions) {
      events += p.seg.count;
      journalBytes += Math.max(p.seg.diskBytes, p.seg.size);
      seriesBytes += p.seriesBytes;
      columnsBytes += p.memory.bytes;
    }
    return {
      partitions: this.partitions.length,
      events,
      journalBytes,
      seriesBytes,
      bytes: journalBytes + seriesBytes,
      columnsBytes,
      tailBytes: this.tail.bytes,
      oldestArrival: this.partitions[0]?.seg.createdAt,
      newestKey: this.newestKey,
      outOfOrder: this.outOfOrder,
      lostEvents: this.lostEvents,
    };
  }

  /**
   * Seals the open partition when it is old enough and drops what retention and the byte bound no
   * longer keep. Call it periodically (the store does, every `maintenanceMs`).
   */
  async maintain(): Promise<void> {
    const now = this.now();
    const p = this.openPartition;
    if (p && now - p.seg.createdAt >= this.partitionMs) this.seal(p);
    const cutoff = now - this.options.retentionMs;
    while (this.partitions.length > 0) {
      const oldest = this.partitions[0]!;
      if (oldest.state !== 'sealed' || oldest.seg.lastArrival >= cutoff) break;
      this.dropOldest(oldest);
    }
    this.enforceBytes();
    await this.sealing;
    await this.deletions;
  }

  /** Resolves when every batch ingested so far is written and every started seal is done. */
  async flushed(): Promise<void> {
    await this.writer.flush();
    await this.sealing;
    await this.deletions;
  }

  /** How often `maintain` should run, ms. */
  get maintenanceMs(): number {
    return Math.max(1000, Math.min(60_000, Math.floor(this.partitionMs / 4)));
  }

  /**
   * Finishes what is queued, seals the open partition and marks a clean stop.
   * @param lastIssued local keys: the newest key the producer issued (≥ what reached the store)
   */
  async close(lastIssued?: HistoryKey): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.openPartition) this.seal(this.openPartition);
    await this.sealing;
    await this.writer.flush();
    if (this.meta.keys === 'local') {
      const newest = Math.max(this.newestKey?.major ?? 0, lastIssued?.major ?? 0);
      await this.writeMeta({ ...this.meta, reserved: newest });
    }
    await this.metaChain;
    await this.lock?.release();
  }

  // ── ingest ──────────────────────────────────────────────────────────────────────────────────

  private startPartition(prevKey: HistoryKey | undefined): Partition {
    const id = this.nextId++;
    const seg = this.writer.create(id, { prevKey, createdAt: this.now() });
    const p: Partition = {
      id,
      seg,
      state: 'open',
      columns: new Map(),
      memory: { bytes: 0 },
      index: undefined,
      seriesBytes: 0,
      readers: 0,
      dropped: false,
    };
    this.partitions.push(p);
    this.openPartition = p;
    return p;
  }

  /** Adds a batch's events to a partition's columns (and their memory to `memory`). */
  private addColumns(columns: Map<string, DeviceColumns>, memory: ColumnsMemory, payload: Buffer): void {
    const r = new EventReader(payload);
    // Devices by their index in this batch's names: one map lookup per device and batch.
    // (Pre-sized: indexes arrive out of order, and a sparse array would fall back to a dictionary.)
    const byIndex: (DeviceColumns | undefined)[] = new Array(r.nameCount).fill(undefined);
    while (r.next()) {
      let d = byIndex[r.deviceIndex];
      if (!d) {
        d = columns.get(r.device);
        if (!d) {
          d = new DeviceColumns(memory);
          columns.set(r.device, d);
        }
        byIndex[r.deviceIndex] = d;
      }
      if (r.kind === 'status') {
        d.addStatus(
          r.isJson ? statusPoint(r.time, r.body()) : { time: r.time, state: r.state, firmware: r.firmware },
        );
        continue;
      }
      const row = d.addRow(r.time);
      if (r.isJson) {
        for (const [name, value] of valuesOf(r.body())) d.set(row, name, value);
      } else {
        for (let i = 0; i < r.valueCount; i++) d.set(row, r.valueName(i), r.value(i), i);
      }
    }
  }

  private reserve(info: BatchInfo): void {
    const seen = Math.max(info.lastKey.major, info.prevKey?.major ?? 0);
    const reserved = this.meta.reserved ?? 0;
    if (seen > reserved - RESERVE_SPAN / 2) {
      if (seen > reserved) {
        this.log('warn', 'history: positions were issued past the reservation', { seen, reserved });
      }
      void this.writeMeta({ ...this.meta, reserved: seen + RESERVE_SPAN });
    }
  }

  /** Starts sealing `p`: new batches go to a new partition; its columns become its series file. */
  private seal(p: Partition): void {
    if (p.state !== 'open') return;
    p.state = 'sealing';
    if (this.openPartition === p) this.openPartition = undefined;
    this.writer.finish(p.seg);
    this.sealing = this.sealing.then(() => this.writeSeries(p));
  }

  private async writeSeries(p: Partition): Promise<void> {
    // The journal summary must describe what is written.
    await this.writer.flush();
    if (p.dropped) return;
    if (p.seg.count === 0) {
      this.drop(p);
      return;
    }
    try {
      const { bytes, index } = encodeSeries(p.columns!, p.seg.summary());
      const path = join(this.options.dir, seriesName(p.id));
      const tmp = `${path}.tmp`;
      const fh = await open(tmp, 'w', 0o600);
      try {
        await writeFully(fh, bytes, 0);
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
      p.index = index;
      p.seriesBytes = bytes.length;
    } catch (err) {
      // The journal still has the events: the next open rebuilds the series file.
      this.log('error', 'history: writing a series file failed; range queries miss that partition', {
        err: (err as Error).message,
        partition: p.id,
      });
    }
    p.state = 'sealed';
    p.columns = undefined;
    p.memory.bytes = 0;
  }

  // ── retention ───────────────────────────────────────────────────────────────────────────────

  private bytes(): number {
    let total = 0;
    for (const p of this.partitions) total += Math.max(p.seg.diskBytes, p.seg.size) + p.seriesBytes;
    return total;
  }

  /** Drops the oldest sealed partitions while the store passes maxBytes. */
  private enforceBytes(): void {
    let total = this.bytes();
    while (total > this.options.maxBytes && this.partitions.length > 0) {
      const oldest = this.partitions[0]!;
      if (oldest.state === 'open') {
        // Only the open partition is left: seal it so the next pass can drop it.
        this.seal(oldest);
        break;
      }
      if (oldest.state !== 'sealed') break;
      total -= Math.max(oldest.seg.diskBytes, oldest.seg.size) + oldest.seriesBytes;
      this.dropOldest(oldest);
    }
  }

  /** Drops the oldest partition (retention, byte bound): what arrived up to its end is no longer held. */
  private dropOldest(p: Partition): void {
    this.coverageStart = Math.max(this.coverageStart, p.seg.lastArrival);
    this.drop(p);
  }

  private drop(p: Partition): void {
    const i = this.partitions.indexOf(p);
    if (i >= 0) this.partitions.splice(i, 1);
    if (this.openPartition === p) this.openPartition = undefined;
    p.dropped = true;
    p.columns = undefined;
    p.memory.bytes = 0;
    if (p.readers === 0) this.deleteFiles(p);
  }

  private deleteFiles(p: Partition): void {
    this.tail.dropBefore(p.id, Number.MAX_SAFE_INTEGER);
    const files = Promise.all([
      deleteSegmentFile(p.seg),
      unlink(join(this.options.dir, seriesName(p.id))).catch(() => {}),
    ]);
    this.deletions = Promise.all([this.deletions, files]).then(() => {});
  }

  // ── reads ───────────────────────────────────────────────────────────────────────────────────

  /**
   * Calls `visit` with each batch payload of `p`'s journal from `start`, from the memory tail or
   * the file, until it returns 'stop' or the segment ends.
   */
  private async readSegment(
    p: Partition,
    start: number,
    visit: (payload: Buffer) => 'next' | 'stop',
  ): Promise<{ stopped: boolean; off: number }> {
    const seg = p.seg;
    p.readers++;
    let reader: RecordReader | undefined;
    let readerSize = 0;
    let off = start;
    try {
      let hint = this.tail.first;
      while (off < seg.size && !p.dropped) {
        hint = this.tail.find(seg.id, off, hint);
        const chunk = hint >= 0 ? this.tail.at(hint) : undefined;
        let record: Buffer;
        if (chunk) {
          const at = off - chunk.off;
          record = chunk.data.subarray(at, at + RECORD_HEADER_BYTES + chunk.data.readUInt32LE(at));
        } else {
          hint = this.tail.first;
          if (off >= seg.durable) {
            // Out of the memory tail before its write finished (a tail smaller than what is in
            // flight): wait for the writes. Still not there: lost to a failed write.
            if (seg.failed) break;
            await this.writer.flush();
            if (off >= seg.durable) break;
            continue;
          }
          if (!reader || off >= readerSize) {
            // (Re)open up to what is written now: the segment may have grown since.
            await reader?.close();
            readerSize = seg.durable;
            reader = await RecordReader.open(seg.path, seg.id, readerSize, READ_CHUNK_BYTES);
          }
          record = await reader.record(off);
        }
        off += record.length;
        const payload = record.subarray(RECORD_HEADER_BYTES);
        if (recordType(payload) !== RECORD_EVENTS) continue;
        if (visit(payload) === 'stop') return { stopped: true, off };
      }
      return { stopped: false, off };
    } finally {
      await reader?.close();
      p.readers--;
      if (p.dropped && p.readers === 0) this.deleteFiles(p);
    }
  }

  private async readChunk<T>(
    p: Partition,
    off: number,
    length: number,
    decode: (bytes: Buffer) => T | undefined,
  ): Promise<T | undefined> {
    p.readers++;
    try {
      // Fresh memory: 8-byte aligned for the Float64Array views.
      let bytes: Buffer | undefined = Buffer.allocUnsafeSlow(length);
      const fh = await open(join(this.options.dir, seriesName(p.id)), 'r');
      try {
        let got = 0;
        while (got < length) {
          const { bytesRead } = await fh.read(bytes, got, length - got, off + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got < length) bytes = undefined;
      } finally {
        await fh.close();
      }
      const decoded = bytes ? decode(bytes) : undefined;
      if (!decoded) {
        this.log('error', 'history: a series chunk failed its check; that partition is skipped', {
          partition: p.id,
        });
      }
      return decoded;
    } finally {
      p.readers--;
      if (p.dropped && p.readers === 0) this.deleteFiles(p);
    }
  }

  // ── open and recovery ──────────────────────────────────────────────────────────────────────

  private async recover(): Promise<void> {
    const { dir } = this.options;
    const names = await readdir(dir);
    const ids = names
      .filter((n) => n.endsWith('.journal'))
      .map((n) => Number.parseInt(n, 10))
      .filter((id) => Number.isSafeInteger(id) && id > 0)
      .sort((a, b) => a - b);
    const kept = new Set<number>();
    for (const id of ids) {
      const p = await this.recoverPartition(id);
      if (p) {
        this.partitions.push(p);
        kept.add(id);
        if (p.seg.lastKey) this.newestKey = p.seg.lastKey;
      }
      this.nextId = Math.max(this.nextId, id + 1);
    }
    // Series files without a journal, and leftovers of an interrupted seal.
    for (const n of names) {
      if (n.endsWith('.tmp') || (n.endsWith(SERIES_SUFFIX) && !kept.has(Number.parseInt(n, 10)))) {
        await unlink(join(dir, n)).catch(() => {});
      }
    }
  }

  private async recoverPartition(id: number): Promise<Partition | undefined> {
    const journalPath = join(this.options.dir, journalName(id));
    const seriesPath = join(this.options.dir, seriesName(id));
    const journalBytes = (await stat(journalPath)).size;
    const index = await readIndexFile(seriesPath);
    if (index && index !== 'invalid' && index.index.journal.size <= journalBytes) {
      const seg = JournalSegment.fromSummary(id, journalPath, index.index.journal, journalBytes);
      return this.sealedPartition(id, seg, index.index, index.bytes);
    }
    // Unsealed (the open partition of the last run) or its series file is unusable: scan the
    // journal, cutting a torn tail, and rebuild the columns.
    let seg: JournalSegment | undefined;
    const columns = new Map<string, DeviceColumns>();
    const memory: ColumnsMemory = { bytes: 0 };
    const { size, diskBytes } = await scanRecords(journalPath, (payload, _count, off) => {
      if (!seg) {
        const header = readSegmentHeader(payload);
        seg = new JournalSegment(id, journalPath, header?.prevKey, header?.createdAt ?? this.now());
        return;
      }
      if (recordType(payload) !== RECORD_EVENTS) return;
      seg.note(off, payload.length + RECORD_HEADER_BYTES, batchInfo(payload));
      this.addColumns(columns, memory, payload);
    });
    const found = seg as JournalSegment | undefined;
    if (!found || found.count === 0) {
      await unlink(journalPath).catch(() => {});
      await unlink(seriesPath).catch(() => {});
      return undefined;
    }
    found.size = size;
    found.durable = size;
    found.durableLastKey = found.lastKey;
    found.diskBytes = diskBytes;
    if (index) this.log('warn', 'history: rebuilding a series file from its journal', { partition: id });
    const p: Partition = {
      id,
      seg: found,
      state: 'sealing',
      columns,
      memory,
      index: undefined,
      seriesBytes: 0,
      readers: 0,
      dropped: false,
    };
    await this.writeSeries(p);
    return p;
  }

  /**
   * Loads the newest journal records (up to the memory tail's size) into the tail, so resuming
   * browsers after a restart read them from memory as they would have before it.
   */
  private async warmTail(): Promise<void> {
    let budget = this.options.tailBytes ?? DEFAULT_TAIL_BYTES;
    let first = this.partitions.length;
    let from = FIRST_RECORD_OFFSET;
    while (first > 0 && budget > 0) {
      const seg = this.partitions[first - 1]!.seg;
      first--;
      if (seg.size <= budget) {
        budget -= seg.size;
        from = 0;
      } else {
        // Part of this one: from the first indexed record that fits.
        from = seg.startAt(seg.size - budget);
        break;
      }
    }
    for (let i = first; i < this.partitions.length; i++) {
      const seg = this.partitions[i]!.seg;
      const start = i === first ? from : 0;
      if (start >= seg.size) continue;
      const data = Buffer.allocUnsafeSlow(seg.size - start);
      const fh = await open(seg.path, 'r');
      try {
        const { bytesRead } = await fh.read(data, 0, data.length, start);
        if (bytesRead === data.length) this.tail.push(seg.id, start, data);
      } finally {
        await fh.close();
      }
    }
  }

  private sealedPartition(id: number, seg: JournalSegment, index: SeriesIndex, bytes: number): Partition {
    return {
      id,
      seg,
      state: 'sealed',
      columns: undefined,
      memory: { bytes: 0 },
      index,
      seriesBytes: bytes,
      readers: 0,
      dropped: false,
    };
  }

  private async wipe(): Promise<void> {
    for (const n of await readdir(this.options.dir)) {
      if (n.endsWith('.journal') || n.endsWith(SERIES_SUFFIX) || n.endsWith('.tmp')) {
        await unlink(join(this.options.dir, n)).catch(() => {});
      }
    }
  }

  /** Writes `meta` (see meta.ts), in order after earlier writes. */
  private writeMeta(meta: Meta): Promise<void> {
    this.meta = meta;
    this.metaChain = this.metaChain.then(() =>
      saveMeta(this.options.dir, meta).catch((err: Error) =>
        this.log('error', 'history: writing the meta file failed', { err: err.message }),
      ),
    );
    return this.metaChain;
  }

  private log(level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>): void {
    this.options.log?.(level, message, data);
  }
}

/** A series file's index, 'invalid' when the file fails its checks, undefined when there is none. */
async function readIndexFile(
  path: string,
): Promise<{ index: SeriesIndex; bytes: number } | 'invalid' | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const bytes = (await fh.stat()).size;
    const index = await readSeriesIndex(bytes, async (position, length) => {
      const buf = Buffer.alloc(length);
      await fh.read(buf, 0, length, position);
      return buf;
    });
    return index ? { index, bytes } : 'invalid';
  } finally {
    await fh.close();
  }
}

const STATES = new Set(['online', 'offline', 'unspecified']);

/** A status event's point, from its body `{"state":…,"firmware":…,"time":…}`. */
function statusPoint(time: number, body: string): StatusPoint {
  try {
    const b = JSON.parse(body) as { state?: unknown; firmware?: unknown };
    return {
      time,
      state: typeof b.state === 'string' && STATES.has(b.state) ? b.state : 'unspecified',
      firmware: typeof b.firmware === 'string' ? b.firmware : '',
    };
  } catch {
    return { time, state: 'unspecified', firmware: '' };
  }
}

/** The numeric values of a telemetry body, when the producer did not pass them as numbers. */
function valuesOf(body: string): [string, number][] {
  try {
    const values = (JSON.parse(body) as { values?: unknown }).values;
    if (typeof values !== 'object' || values === null) return [];
    return Object.entries(values).filter((e): e is [string, number] => typeof e[1] === 'number');
  } catch {
    return [];
  }
}

/** True when one of the first `count` times is in [from, to]. */
function rowsIn(times: Float64Array, count: number, from: number, to: number): boolean {
  for (let i = 0; i < count; i++) if (times[i]! >= from && times[i]! <= to) return true;
  return false;
}
