/**
 * Room: bridge. Framed records in append-only segment files: what the durable spool (`spool.ts`) and the history
 * journal (`history/journal.ts`) both write.
 *
 * A record is `[u32 payload bytes][u32 crc32(payload)][u32 count][payload]` (little-endian); `count`
 * is the number of items in the payload (lines, events) and is never 0, so a zero-filled region is
 * never taken for a record. A crash mid-write leaves a torn record at the end of a file: `scanRecords`
 * stops at the first record whose header, length or checksum does not hold, and everything before it
 * is the file's readable part. Writers never append after a torn tail: they start a new segment.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

/** Bytes of a record's header. */
export const RECORD_HEADER_BYTES = 12;
const DEFAULT_READ_CHUNK_BYTES = 1 << 20;

/**
 * Fills the header of `record`, whose payload starts at RECORD_HEADER_BYTES and runs to its end.
 * @returns the record
 */
export function sealRecord(record: Buffer, count: number): Buffer {
  record.writeUInt32LE(record.length - RECORD_HEADER_BYTES, 0);
  record.writeUInt32LE(crc32(record.subarray(RECORD_HEADER_BYTES)), 4);
  record.writeUInt32LE(count, 8);
  return record;
}

/**
 * Writes a record holding `text` (UTF-8, `textBytes` long) as its payload into `target` at `at`,
 * encoded straight into place: many records share one buffer.
 * @returns the offset just past the record
 */
export function writeTextRecord(
  target: Buffer,
  at: number,
  text: string,
  textBytes: number,
  count: number,
): number {
  const from = at + RECORD_HEADER_BYTES;
  const end = from + textBytes;
  target.write(text, from, textBytes, 'utf8');
  target.writeUInt32LE(textBytes, at);
  target.writeUInt32LE(crc32(target.subarray(from, end)), at + 4);
  target.writeUInt32LE(count, at + 8);
  return end;
}

/** Writes all of `data` at `position` (a write may be short). */
export async function writeFully(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await fh.write(data, written, data.length - written, position + written);
    written += bytesWritten;
  }
}

/** Makes a directory's entries (a new or renamed file) durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Walks a segment's records, checking each checksum, and calls `onRecord` with each valid one (the
 * payload is a view valid during the call only). Stops at the end or at the first torn record.
 * @returns the readable size (bytes of valid records) and the file's size on disk
 */
export async function scanRecords(
  path: string,
  onRecord?: (payload: Buffer, count: number, offset: number) => void,
): Promise<{ size: number; diskBytes: number }> {
  const fh = await open(path, 'r');
  try {
    const diskBytes = (await fh.stat()).size;
    let off = 0;
    let buf = Buffer.alloc(DEFAULT_READ_CHUNK_BYTES);
    let bufStart = 0;
    let bufLen = 0;
    const ensure = async (at: number, n: number): Promise<boolean> => {
      if (at + n > diskBytes) return false;
      if (at >= bufStart && at + n <= bufStart + bufLen) return true;
      if (n > buf.length) buf = Buffer.alloc(n);
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, diskBytes - at), at);
      bufStart = at;
      bufLen = bytesRead;
      return bytesRead >= n;
    };
    while (await ensure(off, RECORD_HEADER_BYTES)) {
      const h = off - bufStart;
      const len = buf.readUInt32LE(h);
      const crc = buf.readUInt32LE(h + 4);
      const count = buf.readUInt32LE(h + 8);
      if (count === 0 || !(await ensure(off, RECORD_HEADER_BYTES + len))) break;
      const p = off - bufStart + RECORD_HEADER_BYTES;
      const payload = buf.subarray(p, p + len);
      if (crc32(payload) !== crc) break;
      onRecord?.(payload, count, off);
      off += RECORD_HEADER_BYTES + len;
    }
    return { size: off, diskBytes };
  } finally {
    await fh.close();
  }
}

/**
 * Sequential reader of one segment's records (below its readable size) through a buffer of
 * `chunkBytes`: one read per chunk instead of two per record.
 */
export class RecordReader {
  private buf = Buffer.allocUnsafe(0);
  private bufStart = 0;
  private bufLen = 0;

  private constructor(
    private readonly fh: FileHandle,
    readonly seg: number,
    private readonly size: number,
    private readonly chunkBytes: number,
  ) {}

  static async open(
    path: string,
    seg: number,
    size: number,
    chunkBytes = DEFAULT_READ_CHUNK_BYTES,
  ): Promise<RecordReader> {
    return new RecordReader(await open(path, 'r'), seg, size, chunkBytes);
  }

  /** The record (header and payload) at `off`: a view into the buffer, valid until the next call. */
  async record(off: number): Promise<Buffer> {
    await this.ensure(off, RECORD_HEADER_BYTES);
    const len = this.buf.readUInt32LE(off - this.bufStart);
    await this.ensure(off, RECORD_HEADER_BYTES + len);
    const p = off - this.bufStart;
    return this.buf.subarray(p, p + RECORD_HEADER_BYTES + len);
  }

  close(): Promise<void> {
    return this.fh.close();
  }

  private async ensure(at: number, n: number): Promise<void> {
    if (at >= this.bufStart && at + n <= this.bufStart + this.bufLen) return;
    if (at + n > this.size) throw new Error(`segment ${this.seg}: record at ${at} passes its end`);
    const want = Math.max(n, Math.min(this.chunkBytes, this.size - at));
    if (this.buf.length < want) this.buf = Buffer.allocUnsafe(Math.max(want, this.chunkBytes));
    let got = 0;
    while (got < want) {
      const { bytesRead } = await this.fh.read(this.buf, got, want - got, at + got);
      if (bytesRead === 0) throw new Error(`segment ${this.seg}: short read at ${at + got}`);
      got += bytesRead;
    }
    this.bufStart = at;
    this.bufLen = got;
  }
}

/** Records kept in memory: bytes as written at `off` of segment `seg` (one or more whole records). */
export interface TailChunk {
  readonly seg: number;
  readonly off: number;
  readonly data: Buffer;
}

/** Memory of one tail entry beyond its bytes (objects, array slot), counted against the bound. */
const CHUNK_OVERHEAD_BYTES = 128;

/** Memory a chunk holds: its whole ArrayBuffer when it is a view into a larger one. */
const held = (data: Buffer) => Math.max(data.length, data.buffer.byteLength) + CHUNK_OVERHEAD_BYTES;

/**
 * The newest records of a segment log kept in memory, oldest first, bounded by bytes: readers take
 * records from here instead of the files. It is always the end of the log: past the bound the oldest
 * chunks are dropped (from memory only).
 */
export class RecordTail {
  /** Chunks, oldest first from `head` (entries before it are dropped; compacted lazily). */
  private chunks: TailChunk[] = [];
  private head = 0;
  private cost = 0;

  constructor(private readonly maxBytes: number) {}

  /** Bytes held, with per-chunk overhead. */
  get bytes(): number {
    return this.cost;
  }

  /** Index of the oldest chunk held (an argument for `find` hints). */
  get first(): number {
    return this.head;
  }

  /** The chunk at an index from `find`. */
  at(index: number): TailChunk | undefined {
    return index >= this.head ? this.chunks[index] : undefined;
  }

  /** Adds written bytes at (seg, off), dropping the oldest chunks past the bound. */
  push(seg: number, off: number, written: Buffer): void {
    if (this.maxBytes <= 0) return;
    // A view into a larger ArrayBuffer (Node's shared 8 KiB pool, a batch buffer with room left)
    // would keep all of it: copied when it is less than half of it.
    let data = written;
    if (written.byteLength * 2 < written.buffer.byteLength) {
      data = Buffer.allocUnsafeSlow(written.length);
      written.copy(data);
    }
    this.chunks.push({ seg, off, data });
    this.cost += held(data);
    while (this.cost > this.maxBytes && this.head < this.chunks.length) this.dropHead();
    this.compact();
  }

  /**
   * Index of the chunk holding the byte at (seg, off), or -1. `hint` (the last chunk found) is tried
   * first and then the one after it: a reader walks the tail in order.
   */
  find(seg: number, off: number, hint = this.head): number {
    const { chunks } = this;
    for (let i = Math.max(hint, this.head); i <= hint + 1 && i < chunks.length; i++) {
      const c = chunks[i] as TailChunk;
      if (c.seg === seg && off >= c.off && off < c.off + c.data.length) return i;
    }
    let lo = this.head;
    let hi = chunks.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = chunks[mid] as TailChunk;
      if (c.seg === seg && off >= c.off && off < c.off + c.data.length) return mid;
      if (c.seg < seg || (c.seg === seg && c.off < off)) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Drops the chunks that end at or before (seg, off). */
  dropBefore(seg: number, off: number): void {
    while (this.head < this.chunks.length) {
      const c = this.chunks[this.head] as TailChunk;
      if (c.seg > seg || (c.seg === seg && c.off + c.data.length > off)) break;
      this.dropHead();
    }
    this.compact();
  }

  /** Drops the chunks of segment `seg` from `off` on (bytes that never reached the disk). */
  dropFrom(seg: number, off: number): void {
    const kept: TailChunk[] = [];
    for (let i = this.head; i < this.chunks.length; i++) {
      const c = this.chunks[i] as TailChunk;
      if (c.seg === seg && c.off >= off) this.cost -= held(c.data);
      else kept.push(c);
    }
    this.chunks = kept;
    this.head = 0;
  }

  private dropHead(): void {
    const c = this.chunks[this.head] as TailChunk;
    this.cost -= held(c.data);
    // Release the bytes now, not at the next compaction.
    this.chunks[this.head] = undefined as unknown as TailChunk;
    this.head++;
  }

  /** Drops the released slots at the front once they are the larger part (amortised O(1)). */
  private compact(): void {
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}
