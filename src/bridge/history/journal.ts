/**
 * Room: bridge/history. The history journal: every streamed event in key (cursor) order, for resuming from a cursor.
 * One segment file `<id>.journal` per partition, in the record framing of `record-file.ts` (crc32 per
 * record, torn tail cut on recovery); its first record is the segment header (the key just before
 * its first event, when known), then one record per batch from the main thread (codec.ts).
 *
 * Writes are queued in order on one promise chain (asynchronous fs, never awaited by ingest). The
 * newest records stay in a memory tail (the spool's `RecordTail`), so readers of recent keys — the
 * common resume — never touch the disk, and records whose write is still in flight are readable.
 * No fsync: the journal is not the acknowledged copy of a reading (the spool and InfluxDB are); a
 * process crash keeps what was written, a power loss may cost the last seconds, and both are seen as
 * a hole by the key reservation (engine.ts).
 */
import { constants as fsConstants } from 'node:fs';
import { type FileHandle, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { RECORD_HEADER_BYTES, type RecordTail, sealRecord, syncDir, writeFully } from '../record-file.js';
import { type BatchInfo, type SegmentHeader, segmentHeaderRecord } from './codec.js';
import { compareKeys, type HistoryKey } from './key.js';
import type { JournalSummary } from './series.js';

/** A sparse index entry is kept at least this many bytes after the previous one. */
const SPARSE_BYTES = 64 << 10;
/** Offset of a segment's first batch record (after its header record). */
export const FIRST_RECORD_OFFSET = RECORD_HEADER_BYTES + 32;

export const journalName = (id: number) => `${String(id).padStart(16, '0')}.journal`;

export class JournalSegment {
  firstKey: HistoryKey | undefined;
  lastKey: HistoryKey | undefined;
  lastArrival: number;
  /** Events in it. */
  count = 0;
  /** Bytes assigned to records (written or queued). */
  size = FIRST_RECORD_OFFSET;
  /** Bytes written. */
  durable = 0;
  /** The last key of the written records (what is left after a failed write). */
  durableLastKey: HistoryKey | undefined;
  /** Bytes of the file on disk (≥ durable when a torn tail was found). */
  diskBytes = 0;
  /** Writing failed: nothing more is appended; its readable part ends at `durable`. */
  failed = false;
  /** Sparse index, parallel arrays: first key, record offset, arrival of some records. */
  private readonly sMajor: number[] = [];
  private readonly sMinor: number[] = [];
  private readonly sOff: number[] = [];
  private readonly sArrival: number[] = [];
  fh: FileHandle | undefined;

  constructor(
    readonly id: number,
    readonly path: string,
    readonly prevKey: HistoryKey | undefined,
    readonly createdAt: number,
  ) {
    this.lastArrival = createdAt;
  }

  static fromSummary(id: number, path: string, s: JournalSummary, diskBytes: number): JournalSegment {
    const seg = new JournalSegment(id, path, s.prevKey, s.createdAt);
    seg.firstKey = s.firstKey;
    seg.lastKey = s.lastKey;
    seg.durableLastKey = s.lastKey;
    seg.lastArrival = s.lastArrival;
    seg.count = s.count;
    seg.size = s.size;
    seg.durable = s.size;
    seg.diskBytes = diskBytes;
    for (const [major, minor, off, arrival] of s.sparse) seg.addSparse(major, minor, off, arrival);
    return seg;
  }

  summary(): JournalSummary {
    return {
      prevKey: this.prevKey,
      firstKey: this.firstKey,
      lastKey: this.lastKey,
      createdAt: this.createdAt,
      lastArrival: this.lastArrival,
      size: this.size,
      count: this.count,
      sparse: this.sOff.map((off, i) => [this.sMajor[i]!, this.sMinor[i]!, off, this.sArrival[i]!] as const),
    };
  }

  /** Notes a batch record of `bytes` at `off` (in order). */
  note(off: number, bytes: number, info: BatchInfo): void {
    this.firstKey ??= info.firstKey;
    this.lastKey = info.lastKey;
    this.lastArrival = info.lastArrival;
    this.count += info.count;
    const lastIndexed = this.sOff.at(-1);
    if (lastIndexed === undefined || off - lastIndexed >= SPARSE_BYTES) {
      this.addSparse(info.firstKey.major, info.firstKey.minor, off, info.firstArrival);
    }
    this.size = off + bytes;
  }

  /** Offset of the record to start reading at for events after `key`. */
  startFor(key: HistoryKey): number {
    // The last indexed record whose first key is ≤ key: it or a later record holds the next event.
    let lo = 0;
    let hi = this.sOff.length - 1;
    let found = FIRST_RECORD_OFFSET;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKeys({ major: this.sMajor[mid]!, minor: this.sMinor[mid]! }, key) <= 0) {
        found = this.sOff[mid]!;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** Offset of the first indexed record at or after byte `off` (the segment's end if none). */
  startAt(off: number): number {
    for (const o of this.sOff) if (o >= off) return o;
    return this.size;
  }

  /** Offset of the record to start reading at for events that arrived at or after `arrival`. */
  startForArrival(arrival: number): number {
    let found = FIRST_RECORD_OFFSET;
    for (let i = 0; i < this.sOff.length && this.sArrival[i]! < arrival; i++) found = this.sOff[i]!;
    return found;
  }

  /** After a failed write: the readable part ends at what was written. */
  rollBack(): void {
    this.failed = true;
    this.size = Math.max(this.durable, FIRST_RECORD_OFFSET);
    this.lastKey = this.durableLastKey;
    if (!this.lastKey) this.firstKey = undefined;
    while (this.sOff.length > 0 && this.sOff.at(-1)! >= this.size) {
      this.sOff.pop();
      this.sMajor.pop();
      this.sMinor.pop();
      this.sArrival.pop();
    }
  }

  private addSparse(major: number, minor: number, off: number, arrival: number): void {
    this.sMajor.push(major);
    this.sMinor.push(minor);
    this.sOff.push(off);
    this.sArrival.push(arrival);
  }
}

/** Appends batch records to segments, in order, on one write chain. */
export class JournalWriter {
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly tail: RecordTail,
    /** Called once per failed write (the segment is rolled back and marked failed). */
    private readonly onError: (err: Error, seg: JournalSegment) => void,
  ) {}

  /** A new segment; its file (and header record) is created on the write chain. */
  create(id: number, header: SegmentHeader): JournalSegment {
    const seg = new JournalSegment(id, join(this.dir, journalName(id)), header.prevKey, header.createdAt);
    const record = sealRecord(segmentHeaderRecord(header).subarray(0), 1);
    this.tail.push(id, 0, record);
    this.enqueue(seg, async () => {
      seg.fh = await open(seg.path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
      await syncDir(this.dir);
      await writeFully(seg.fh, record, 0);
      seg.durable = record.length;
      seg.diskBytes = record.length;
    });
    return seg;
  }

  /**
   * Appends a batch record (its frame header not yet sealed) to `seg`.
   * @param onDone called once its write finished or failed (in-flight accounting)
   */
  append(seg: JournalSegment, record: Buffer, info: BatchInfo, onDone: () => void): void {
    sealRecord(record, info.count);
    const off = seg.size;
    seg.note(off, record.length, info);
    this.tail.push(seg.id, off, record);
    this.enqueue(
      seg,
      async () => {
        await writeFully(seg.fh!, record, off);
        seg.durable = off + record.length;
        seg.durableLastKey = info.lastKey;
        seg.diskBytes = seg.durable;
      },
      onDone,
    );
  }

  /** Closes the segment's file once its queued writes are done. */
  finish(seg: JournalSegment): void {
    this.chain = this.chain.then(async () => {
      const fh = seg.fh;
      seg.fh = undefined;
      await fh?.close().catch(() => {});
    });
  }

  /** Resolves when every queued write is done. */
  flush(): Promise<void> {
    return this.chain;
  }

  private enqueue(seg: JournalSegment, write: () => Promise<void>, onDone?: () => void): void {
    this.chain = this.chain.then(async () => {
      try {
        if (!seg.failed) await write();
      } catch (err) {
        if (!seg.failed) {
          seg.rollBack();
          this.tail.dropFrom(seg.id, seg.size);
          this.onError(err as Error, seg);
        }
      } finally {
        onDone?.();
      }
    });
  }
}

export async function deleteSegmentFile(seg: JournalSegment): Promise<void> {
  await seg.fh?.close().catch(() => {});
  seg.fh = undefined;
  await unlink(seg.path).catch(() => {});
}
