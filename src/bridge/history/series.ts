/**
 * Room: bridge/history. The per-device side of a history partition: what range queries read.
 *
 * While a partition is open its rows live in memory, one `DeviceColumns` per device (a time column
 * and one column per value name, NaN where a row lacks that value). When it is sealed they are
 * written once to `<id>.series`, device by device, each device's rows sorted by time:
 * ```
 * [device chunk]… [index JSON] [u32 index bytes] [u32 crc32(index)] [u32 magic "TBS1"]
 * device chunk: f64 times[n], then per value name f64 values[n]   (host byte order, little-endian
 *               on every platform Node supports in practice; the index records it and a mismatch
 *               rebuilds the file from the journal)
 * ```
 * The index (JSON) names each device's chunk (offset, rows, time range, value names, crc32) and its
 * status changes, and also carries the partition's journal summary so that opening the store does
 * not rescan sealed journals. A series file is derived data: when it is missing or fails its checks,
 * it is rebuilt from the partition's journal.
 */
import { endianness } from 'node:os';
import { crc32 } from 'node:zlib';
import type { SeriesColumns } from './downsample.js';
import type { HistoryKey } from './key.js';

export interface StatusPoint {
  readonly time: number;
  readonly state: string;
  readonly firmware: string;
}

/** Bytes a column slot takes. */
const SLOT = 8;
const INITIAL_ROWS = 16;
const MAGIC = 0x31534254; // "TBS1" little-endian
const TRAILER_BYTES = 12;

/** Memory of a partition's columns, bytes (capacity), kept up to date by its DeviceColumns. */
export interface ColumnsMemory {
  bytes: number;
}

/** One device's rows in the open partition. */
export class DeviceColumns implements SeriesColumns {
  count = 0;
  times = new Float64Array(INITIAL_ROWS);
  readonly names: string[] = [];
  columns: Float64Array[] = [];
  readonly status: StatusPoint[] = [];
  minTime = Number.POSITIVE_INFINITY;
  maxTime = Number.NEGATIVE_INFINITY;
  /** Rows arrived in time order (usual); else sealing sorts them. */
  sorted = true;
  private readonly index = new Map<string, number>();

  constructor(private readonly memory: ColumnsMemory) {
    memory.bytes += INITIAL_ROWS * SLOT;
  }

  /**
   * Starts a row; returns its index. Every value of it is NaN until `set`: columns are NaN past
   * `count` from their allocation on, and a row is written once.
   */
  addRow(time: number): number {
    if (this.count === this.times.length) this.grow();
    const row = this.count++;
    this.times[row] = time;
    if (time < this.maxTime) this.sorted = false;
    if (time < this.minTime) this.minTime = time;
    if (time > this.maxTime) this.maxTime = time;
    return row;
  }

  /**
   * Sets value `name` of `row`. `nth` is the value's position in its sample: samples of a device
   * usually name their values in the same order, so the column is found without a map lookup.
   */
  set(row: number, name: string, value: number, nth = -1): void {
    let j = nth >= 0 && this.names[nth] === name ? nth : this.index.get(name);
    if (j === undefined) {
      j = this.columns.length;
      this.index.set(name, j);
      this.names.push(name);
      this.columns.push(new Float64Array(this.times.length).fill(Number.NaN));
      this.memory.bytes += this.times.length * SLOT;
    }
    this.columns[j]![row] = value;
  }

  addStatus(point: StatusPoint): void {
    this.status.push(point);
    this.see(point.time);
  }

  private see(time: number): void {
    if (time < this.minTime) this.minTime = time;
    if (time > this.maxTime) this.maxTime = time;
  }

  private grow(): void {
    const size = this.times.length * 2;
    this.memory.bytes += (size - this.times.length) * SLOT * (1 + this.columns.length);
    const times = new Float64Array(size);
    times.set(this.times);
    this.times = times;
    this.columns = this.columns.map((c) => {
      const next = new Float64Array(size).fill(Number.NaN);
      next.set(c);
      return next;
    });
  }
}

/** A device's entry in a sealed partition's index. */
export interface SealedDevice {
  /** Byte offset of its chunk in the file. */
  readonly off: number;
  /** Rows. */
  readonly n: number;
  readonly minTime: number;
  readonly maxTime: number;
  readonly names: readonly string[];
  readonly crc: number;
  readonly status: readonly StatusPoint[];
}

/** What the journal of a sealed partition looked like (so opening the store need not rescan it). */
export interface JournalSummary {
  readonly prevKey: HistoryKey | undefined;
  readonly firstKey: HistoryKey | undefined;
  readonly lastKey: HistoryKey | undefined;
  readonly createdAt: number;
  readonly lastArrival: number;
  readonly size: number;
  readonly count: number;
  /** Sparse index: `[major, minor, offset, arrival]` of some records' first events. */
  readonly sparse: readonly (readonly [number, number, number, number])[];
}

export interface SeriesIndex {
  readonly version: 1;
  readonly endianness: 'LE' | 'BE';
  readonly journal: JournalSummary;
  readonly devices: Readonly<Record<string, SealedDevice>>;
}

/**
 * The sealed form of a partition's columns: file bytes to write (chunks, index, trailer) and the
 * index. Rows of each device are sorted by time.
 */
export function encodeSeries(
  devices: ReadonlyMap<string, DeviceColumns>,
  journal: JournalSummary,
): { bytes: Buffer; index: SeriesIndex } {
  let total = 0;
  for (const d of devices.values()) total += d.count * SLOT * (1 + d.names.length);
  const body = Buffer.allocUnsafeSlow(total);
  const entries: Record<string, SealedDevice> = Object.create(null);
  let off = 0;
  for (const [device, d] of devices) {
    const n = d.count;
    const order = d.sorted ? undefined : sortedOrder(d.times, n);
    const start = off;
    const put = (column: Float64Array) => {
      const view = new Float64Array(body.buffer, body.byteOffset + off, n);
      if (order) for (let i = 0; i < n; i++) view[i] = column[order[i]!]!;
      else view.set(column.subarray(0, n));
      off += n * SLOT;
    };
    put(d.times);
    for (const c of d.columns) put(c);
    entries[device] = {
      off: start,
      n,
      minTime: d.minTime,
      maxTime: d.maxTime,
      names: d.names,
      crc: crc32(body.subarray(start, off)),
      status: [...d.status].sort((a, b) => a.time - b.time),
    };
  }
  const index: SeriesIndex = { version: 1, endianness: endianness(), journal, devices: entries };
  const json = Buffer.from(JSON.stringify(index), 'utf8');
  const trailer = Buffer.alloc(TRAILER_BYTES);
  trailer.writeUInt32LE(json.length, 0);
  trailer.writeUInt32LE(crc32(json), 4);
  trailer.writeUInt32LE(MAGIC, 8);
  return { bytes: Buffer.concat([body, json, trailer]), index };
}

function sortedOrder(times: Float64Array, n: number): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  // Stable: equal times keep their arrival order.
  return order.sort((a, b) => times[a]! - times[b]! || a - b);
}

/**
 * Reads a series file's index from its trailer, or undefined when the file is not a valid series
 * file of this platform (then it is rebuilt from the journal).
 * @param read reads `length` bytes at `position` of the file
 */
export async function readSeriesIndex(
  fileBytes: number,
  read: (position: number, length: number) => Promise<Buffer>,
): Promise<SeriesIndex | undefined> {
  if (fileBytes < TRAILER_BYTES) return undefined;
  const trailer = await read(fileBytes - TRAILER_BYTES, TRAILER_BYTES);
  if (trailer.readUInt32LE(8) !== MAGIC) return undefined;
  const len = trailer.readUInt32LE(0);
  if (len > fileBytes - TRAILER_BYTES) return undefined;
  const json = await read(fileBytes - TRAILER_BYTES - len, len);
  if (crc32(json) !== trailer.readUInt32LE(4)) return undefined;
  try {
    const index = JSON.parse(json.toString('utf8')) as SeriesIndex;
    return index.version === 1 && index.endianness === endianness() ? index : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A sealed device chunk as columns.
 * @param bytes the chunk, read into memory that starts 8-byte aligned
 * @returns undefined when its checksum does not match
 */
export function decodeChunk(entry: SealedDevice, bytes: Buffer): SeriesColumns | undefined {
  if (crc32(bytes) !== entry.crc) return undefined;
  const column = (j: number) =>
    new Float64Array(bytes.buffer, bytes.byteOffset + j * entry.n * SLOT, entry.n);
  return {
    count: entry.n,
    times: column(0),
    names: entry.names,
    columns: entry.names.map((_, j) => column(j + 1)),
  };
}

/** Bytes of a device chunk. */
export function chunkBytes(entry: SealedDevice): number {
  return entry.n * SLOT * (1 + entry.names.length);
}
