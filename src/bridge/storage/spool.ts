/**
 * Room: bridge/storage. The durable spool: an on-disk FIFO of line-protocol lines between acceptance and InfluxDB, in
 * `<dataDir>/spool/`. Engine: an append-only segment log written with fs.promises + fdatasync (the
 * choice and its measurements are in docs/decisions.md and bench/spool.ts).
 *
 * Layout:
 * - `<16-digit id>.seg`: segments. Each `append()` becomes one record
 *   `[u32 payload bytes][u32 crc32(payload)][u32 line count][payload = lines joined by "\n"]` (LE).
 *   Appends go to the newest segment; a new one starts past `segmentBytes` and at every open.
 * - `cursor`: where the oldest unconfirmed line is (segment, record offset, lines to skip in it).
 *   Written in place without fsync: a lost update only replays confirmed lines, and points are
 *   idempotent (contract §4), so durability of data never depends on it.
 *
 * Durability: `append()` resolves after its bytes are written and fdatasync'ed (new segments also fsync
 * the directory). GROUP COMMIT: appends that arrive while a write+sync is in flight are written
 * together and share the next sync. All I/O is asynchronous (libuv thread pool): the event loop is
 * never blocked by a sync.
 *
 * Recovery: on open every segment from the cursor on is scanned and checksummed; a torn record at the
 * end (a crash mid-write; it was never acknowledged) ends that segment's readable part. Everything not
 * confirmed is read again, oldest first.
 *
 * Memory tail: the bytes of the newest durable groups (exactly as written to the segment) are also
 * kept in memory, up to `memoryBytes`, so the writer reads what this process just appended without
 * touching the disk. The tail is always the end of the log: when it is full its oldest groups are
 * dropped from memory (never from disk), and `read()` takes records from disk until it reaches the
 * tail (after a restart, or when the backlog outgrew the tail). A group enters the tail only after
 * its write was durable, so the tail never holds anything the disk does not. Records are parsed the
 * same way from either source, and a batch's payloads are joined into the HTTP body without
 * splitting them into lines (lines are split only when the writer must bisect a failed batch).
 *
 * Bounded: at `maxBytes` (bytes of segment files, including confirmed bytes not yet reclaimed — at most
 * one segment) `append()` rejects with E_SPOOL_FULL and stores nothing.
 */
import { constants as fsConstants } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ERROR_CODES, TelebridgeError } from '../../errors.js';
import {
  RECORD_HEADER_BYTES as HEADER_BYTES,
  RecordReader,
  RecordTail,
  scanRecords,
  syncDir,
  writeFully,
  writeTextRecord,
} from '../record-file.js';

export interface SpoolOptions {
  /** Directory of the spool, usually `<dataDir>/spool`; created when missing. */
  readonly dir: string;
  /** Disk the spool may use, bytes (BRIDGE_SPOOL_MAX_BYTES). */
  readonly maxBytes: number;
  /** Segment size at which a new segment starts. Default: maxBytes/16, within [4 KiB, 64 MiB]. */
  readonly segmentBytes?: number;
  /** Largest group written with one sync, bytes; later appends wait for the next sync. Default 8 MiB. */
  readonly maxGroupBytes?: number;
  /**
   * Memory for the unconfirmed tail of the log, bytes of records; reads within it do not touch the
   * disk. 0 = always read from disk.
   * Default DEFAULT_SPOOL_MEMORY_BYTES (32 MiB, BRIDGE_SPOOL_MEMORY_BYTES).
   */
  readonly memoryBytes?: number;
  /**
   * With a line count: called once per group as it becomes durable (`error` undefined) or fails,
   * before the appends' promise settles, and for each append refused at once (full, closed): for
   * counters that would otherwise need a callback per append.
   */
  readonly onOutcome?: (lines: number, error?: Error) => void;
}

/** Default of SpoolOptions.memoryBytes: 32 MiB (a few hundred thousand typical lines). */
export const DEFAULT_SPOOL_MEMORY_BYTES = 32 << 20;

/** Position of the oldest unconfirmed line. */
export interface SpoolCursor {
  readonly seg: number;
  /** Byte offset of a record in the segment. */
  readonly off: number;
  /** Lines of that record already confirmed. */
  readonly skip: number;
}

/** Lines read for the writer; hand it back to `confirm()` once InfluxDB took (or dead-lettered) them. */
export interface SpoolBatch {
  /** Number of lines. */
  readonly count: number;
  /** The lines joined by "\n": the request body as is. */
  readonly body: string;
  /** The lines one by one (split from `body` on first use). */
  readonly lines: readonly string[];
  readonly start: SpoolCursor;
  readonly end: SpoolCursor;
}

class Batch implements SpoolBatch {
  private split: readonly string[] | undefined;
  constructor(
    readonly count: number,
    readonly body: string,
    readonly start: SpoolCursor,
    readonly end: SpoolCursor,
  ) {}
  get lines(): readonly string[] {
    this.split ??= this.body.split('\n');
    return this.split;
  }
}

interface Segment {
  readonly id: number;
  /** Bytes of valid records (the readable end). */
  size: number;
  /** Bytes of the file on disk (≥ size when a torn tail was found), for the disk budget. */
  diskBytes: number;
}

/**
 * Appends waiting for the same write and sync. Their records are encoded into one buffer when the
 * group is written, and they share one promise: a message costs no promise and no buffer of its own
 * (issue 14: per-message promises and small buffers were a large share of the ingest's garbage).
 */
class PendingGroup {
  /** Each append's payload (its lines joined by "\n"), its UTF-8 length and its line count. */
  readonly texts: string[] = [];
  readonly textBytes: number[] = [];
  readonly counts: number[] = [];
  /** Bytes of the group's records, headers included. */
  bytes = 0;
  lines = 0;
  readonly done: Promise<void>;
  resolve!: () => void;
  reject!: (err: Error) => void;
  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** The group's records, one per append, in append order. */
  encode(): Buffer {
    const data = Buffer.allocUnsafe(this.bytes);
    let at = 0;
    for (let i = 0; i < this.texts.length; i++) {
      at = writeTextRecord(data, at, this.texts[i]!, this.textBytes[i]!, this.counts[i]!);
    }
    return data;
  }
}

const NEWLINE = 0x0a;
const SEGMENT_SUFFIX = '.seg';
const CURSOR_FILE = 'cursor';

const segName = (id: number) => `${String(id).padStart(16, '0')}${SEGMENT_SUFFIX}`;

export class Spool {
  private readonly segments: Segment[] = [];
  private cursor: SpoolCursor;
  private active: { seg: Segment; fh: FileHandle } | undefined;
  /** Groups waiting to be written, oldest first; appends join the last one. */
  private pending: PendingGroup[] = [];
  private pendingBytes = 0;
  private committing: Promise<void> | undefined;
  private closed = false;
  private backlog = 0;
  private dataWaiters: { min: number; wake(): void }[] = [];
  private readonly segmentBytes: number;
  private readonly maxGroupBytes: number;
  /** The memory tail: the newest durable groups. */
  private readonly tail: RecordTail;
  /** Number of fdatasync calls so far (for benchmarks and tests of group commit). */
  syncs = 0;
  /** Lines `read()` took from the memory tail / from segment files so far (benchmarks and tests). */
  linesFromMemory = 0;
  linesFromDisk = 0;

  private constructor(
    private readonly options: SpoolOptions,
    private readonly cursorFh: FileHandle,
    cursor: SpoolCursor,
  ) {
    this.cursor = cursor;
    this.segmentBytes =
      options.segmentBytes ?? Math.min(64 << 20, Math.max(4096, Math.floor(options.maxBytes / 16)));
    this.maxGroupBytes = options.maxGroupBytes ?? 8 << 20;
    this.tail = new RecordTail(options.memoryBytes ?? DEFAULT_SPOOL_MEMORY_BYTES);
  }

  /** Opens (or creates) the spool and recovers what was not confirmed. */
  static async open(options: SpoolOptions): Promise<Spool> {
    await mkdir(options.dir, { recursive: true });
    const cursorFh = await open(join(options.dir, CURSOR_FILE), 'a+');
    const buf = Buffer.alloc(24);
    await cursorFh.read(buf, 0, 24, 0);
    let cursor: SpoolCursor = { seg: 0, off: 0, skip: 0 };
    if (buf.readUInt32LE(20) === crc32(buf.subarray(0, 20)) && buf.readUInt32LE(20) !== 0) {
      cursor = { seg: buf.readDoubleLE(0), off: buf.readUInt32LE(8), skip: buf.readUInt32LE(12) };
    }
    // 'a+' appends on write; reopen for positional in-place writes.
    await cursorFh.close();
    const spool = new Spool(options, await open(join(options.dir, CURSOR_FILE), 'r+'), cursor);
    await spool.recover();
    return spool;
  }

  /** Lines accepted and not yet confirmed. */
  get backlogPoints(): number {
    return this.backlog;
  }

  /** Bytes of segment files on disk (what counts against maxBytes). */
  get bytes(): number {
    let total = 0;
    for (const s of this.segments) total += s.diskBytes;
    return total + this.pendingBytes;
  }

  get maxBytes(): number {
    return this.options.maxBytes;
  }

  /**
   * Appends lines durably. Resolves once they are on disk (fdatasync), together with every other
   * append of the same group. Rejects with E_SPOOL_FULL at the disk limit (nothing is stored) and
   * with E_STORAGE when the spool is closed or the disk fails.
   * Lines must not contain "\n" (line-protocol.ts guarantees it).
   * Appends of the same group get the same promise.
   */
  append(lines: readonly string[]): Promise<void> {
    if (this.closed)
      return this.refuse(lines.length, new TelebridgeError(ERROR_CODES.storage, 'spool is closed'));
    if (lines.length === 0) return Promise.resolve();
    const text = lines.length === 1 ? (lines[0] as string) : lines.join('\n');
    const textBytes = Buffer.byteLength(text, 'utf8');
    const recordBytes = HEADER_BYTES + textBytes;
    if (this.bytes + recordBytes > this.options.maxBytes) {
      return this.refuse(
        lines.length,
        new TelebridgeError(
          ERROR_CODES.spoolFull,
          `spool full: ${this.bytes} of ${this.options.maxBytes} bytes (BRIDGE_SPOOL_MAX_BYTES) in use`,
        ),
      );
    }
    let group = this.pending[this.pending.length - 1];
    if (!group || group.bytes >= this.maxGroupBytes) {
      group = new PendingGroup();
      this.pending.push(group);
    }
    group.texts.push(text);
    group.textBytes.push(textBytes);
    group.counts.push(lines.length);
    group.bytes += recordBytes;
    group.lines += lines.length;
    this.pendingBytes += recordBytes;
    this.kick();
    return group.done;
  }

  private refuse(lines: number, error: Error): Promise<void> {
    this.options.onOutcome?.(lines, error);
    return Promise.reject(error);
  }

  /** Starts the commit loop unless it runs; appends that raced with its end start it again. */
  private kick(): void {
    if (this.committing) return;
    this.committing = this.commitLoop().finally(() => {
      this.committing = undefined;
      if (this.pending.length > 0) this.kick();
    });
  }

  /**
   * Reads up to `maxLines` of the oldest unconfirmed lines, or undefined when there are none.
   * Only one reader: the next `read()` starts again at the confirmed position, so a batch that was
   * not confirmed is read again (the writer's retry). Records in the memory tail come from memory;
   * older ones (recovered at open, or pushed out of the tail by a large backlog) from disk, in order.
   */
  async read(maxLines: number): Promise<SpoolBatch | undefined> {
    const start = this.normalise(this.cursor);
    let { seg, off, skip } = start;
    // The body's pieces as (buffer, from, to) in three arrays: no object per record.
    const bufs: Buffer[] = [];
    const froms: number[] = [];
    const tos: number[] = [];
    let count = 0;
    let bodyBytes = 0;
    let reader: RecordReader | undefined;
    let hint = this.tail.first;
    let segment: Segment | undefined;
    try {
      while (count < maxLines) {
        if (segment?.id !== seg) segment = this.segments.find((s) => s.id === seg);
        if (!segment || off >= segment.size) {
          const next = this.segments.find((s) => s.id > seg);
          if (!next || (segment && segment === this.active?.seg)) break;
          seg = next.id;
          off = 0;
          skip = 0;
          continue;
        }
        // The record at `off`: from a tail chunk when there is one, else from the segment file.
        let buf: Buffer;
        let at: number;
        hint = this.tail.find(seg, off, hint);
        const chunk = hint >= 0 ? this.tail.at(hint) : undefined;
        if (chunk) {
          buf = chunk.data;
          at = off - chunk.off;
        } else {
          hint = this.tail.first;
          if (reader?.seg !== seg) {
            await reader?.close();
            reader = await RecordReader.open(join(this.options.dir, segName(seg)), seg, segment.size);
          }
          buf = await reader.record(off);
          at = 0;
        }
        const len = buf.readUInt32LE(at);
        const lines = buf.readUInt32LE(at + 8);
        const from = at + HEADER_BYTES;
        const take = Math.min(maxLines - count, lines - skip);
        if (skip === 0 && take === lines) {
          // The whole record: its payload is already the lines joined by "\n". The reader reuses its
          // buffer, so a payload from disk is copied.
          if (chunk) {
            bufs.push(buf);
            froms.push(from);
            tos.push(from + len);
          } else {
            bufs.push(Buffer.from(buf.subarray(from, from + len)));
            froms.push(0);
            tos.push(len);
          }
          bodyBytes += len;
        } else {
          const parts = buf.toString('utf8', from, from + len).split('\n');
          const piece = Buffer.from(parts.slice(skip, skip + take).join('\n'), 'utf8');
          bufs.push(piece);
          froms.push(0);
          tos.push(piece.length);
          bodyBytes += piece.length;
        }
        count += take;
        if (chunk) this.linesFromMemory += take;
        else this.linesFromDisk += take;
        if (skip + take >= lines) {
          off += HEADER_BYTES + len;
          skip = 0;
        } else skip += take;
      }
    } finally {
      await reader?.close();
    }
    if (count === 0) return undefined;
    const body = Buffer.allocUnsafe(bodyBytes + bufs.length - 1);
    let pos = 0;
    for (let i = 0; i < bufs.length; i++) {
      if (i > 0) body[pos++] = NEWLINE;
      pos += (bufs[i] as Buffer).copy(body, pos, froms[i], tos[i]);
    }
    return new Batch(count, body.toString('utf8'), start, { seg, off, skip });
  }

  /**
   * Confirms a batch from `read()`: its lines are gone for good, fully read segments are deleted.
   * Batches must be confirmed in the order they were read.
   */
  async confirm(batch: SpoolBatch): Promise<void> {
    this.cursor = this.normalise(batch.end);
    this.backlog = Math.max(0, this.backlog - batch.count);
    // Chunks wholly before the cursor leave the memory tail.
    this.tail.dropBefore(this.cursor.seg, this.cursor.off);
    const buf = Buffer.alloc(24);
    buf.writeDoubleLE(this.cursor.seg, 0);
    buf.writeUInt32LE(this.cursor.off, 8);
    buf.writeUInt32LE(this.cursor.skip, 12);
    buf.writeUInt32LE(0, 16);
    buf.writeUInt32LE(crc32(buf.subarray(0, 20)), 20);
    await this.cursorFh.write(buf, 0, 24, 0);
    while (this.segments.length > 1 && (this.segments[0] as Segment).id < this.cursor.seg) {
      const old = this.segments.shift() as Segment;
      await unlink(join(this.options.dir, segName(old.id))).catch(() => {});
    }
  }

  /**
   * Resolves when at least `minPoints` lines wait (at once if they do), when `signal` aborts, or when
   * the spool closes.
   */
  waitForData(signal?: AbortSignal, minPoints = 1): Promise<void> {
    if (this.backlog >= minPoints || signal?.aborted || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = {
        min: minPoints,
        wake: () => {
          signal?.removeEventListener('abort', waiter.wake);
          this.dataWaiters = this.dataWaiters.filter((w) => w !== waiter);
          resolve();
        },
      };
      this.dataWaiters.push(waiter);
      signal?.addEventListener('abort', waiter.wake, { once: true });
    });
  }

  /** Rejects new appends, finishes the commits in flight, releases the files. Data stays on disk. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.committing) await this.committing;
    await this.active?.fh.close();
    this.active = undefined;
    await this.cursorFh.close();
    for (const w of [...this.dataWaiters]) w.wake();
  }

  /** Past the end of a sealed segment means the start of the next one. */
  private normalise(c: SpoolCursor): SpoolCursor {
    let cur = c;
    for (;;) {
      const i = this.segments.findIndex((s) => s.id >= cur.seg);
      const segment = this.segments[i];
      if (!segment) return cur;
      if (segment.id > cur.seg) return { seg: segment.id, off: 0, skip: 0 };
      const next = this.segments[i + 1];
      if (cur.off < segment.size || !next || segment === this.active?.seg) return cur;
      cur = { seg: next.id, off: 0, skip: 0 };
    }
  }

  private async commitLoop(): Promise<void> {
    let first = true;
    while (this.pending.length > 0) {
      // Let the callers resolved by the previous group (and I/O that is ready) append before the
      // next group is cut: one event-loop turn buys whole groups instead of alternating halves.
      if (!first) await new Promise<void>((r) => setImmediate(r));
      first = false;
      const group = this.pending.shift() as PendingGroup;
      const data = group.encode();
      let active: { seg: Segment; fh: FileHandle } | undefined;
      try {
        active = await this.activeSegment();
        await writeFully(active.fh, data, active.seg.size);
        // O_DSYNC: each write returns once durable — one thread-pool hop per group instead of two.
        this.syncs++;
      } catch (err) {
        this.pendingBytes -= group.bytes;
        // The bytes may be partly on disk: seal this segment so nothing is ever appended after them.
        if (active) {
          active.seg.diskBytes += data.length;
          await active.fh.close().catch(() => {});
          if (this.active === active) this.active = undefined;
        }
        const error = new TelebridgeError(
          ERROR_CODES.storage,
          `spool write failed: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
        this.options.onOutcome?.(group.lines, error);
        group.reject(error);
        continue;
      }
      // Durable now: the group joins the memory tail (the end of the log, in order).
      this.tail.push(active.seg.id, active.seg.size, data);
      active.seg.size += data.length;
      active.seg.diskBytes += data.length;
      this.pendingBytes -= group.bytes;
      this.backlog += group.lines;
      this.options.onOutcome?.(group.lines);
      group.resolve();
      if (this.dataWaiters.length > 0) {
        for (const w of this.dataWaiters.filter((x) => this.backlog >= x.min)) w.wake();
      }
    }
  }

  /** The segment appends go to; starts a new one past segmentBytes (and at the first append). */
  private async activeSegment(): Promise<{ seg: Segment; fh: FileHandle }> {
    if (this.active && this.active.seg.size < this.segmentBytes) return this.active;
    await this.active?.fh.close();
    const last = this.segments[this.segments.length - 1];
    // Past the cursor too: a cursor may name a segment that was already deleted.
    const seg: Segment = { id: Math.max(last?.id ?? 0, this.cursor.seg) + 1, size: 0, diskBytes: 0 };
    const fh = await open(
      join(this.options.dir, segName(seg.id)),
      fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_DSYNC,
    );
    // The new file's directory entry must be durable before anything in it is acknowledged.
    await syncDir(this.options.dir);
    this.segments.push(seg);
    this.active = { seg, fh };
    return this.active;
  }

  private async recover(): Promise<void> {
    const names = (await readdir(this.options.dir)).filter((n) => n.endsWith(SEGMENT_SUFFIX)).sort();
    for (const name of names) {
      const id = Number.parseInt(name, 10);
      if (!Number.isSafeInteger(id)) continue;
      if (id < this.cursor.seg) {
        await unlink(join(this.options.dir, name)).catch(() => {});
        continue;
      }
      // Lines at or after the cursor are unconfirmed.
      const from = id === this.cursor.seg ? this.cursor : undefined;
      let lines = 0;
      const { size, diskBytes } = await scanRecords(join(this.options.dir, name), (_payload, count, off) => {
        if (!from || off > from.off) lines += count;
        else if (off === from.off) lines += Math.max(0, count - from.skip);
      });
      this.segments.push({ id, size, diskBytes });
      this.backlog += lines;
    }
    this.cursor = this.normalise(this.cursor);
  }
}
