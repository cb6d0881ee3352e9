/**
 * Room: bridge/history. The binary form of history events: a batch of events is one journal record
 * (record-file.ts framing). Batches are built on the main thread (`BatchEncoder`, the only per-event
 * work there) and read in the history worker (`EventReader`).
 *
 * Events are stored as their fields (seq, values, labels; state, firmware), not as JSON: the live
 * broker hands them over structured, so the ingest path never serialises for the store, and the JSON
 * of a `/live` message is rebuilt from the fields only when a resume reads it (`EventReader.body`),
 * byte for byte as the broker streams it. A broker that only has the JSON (Redis: it reads it back
 * from the stream) passes that instead, and the worker parses it.
 *
 * Record payload of a batch (little-endian; offsets from the payload's start):
 * ```
 *  0 u8  type = 1 (events)   1 u8 version = 2   2 u16 flags (1: previous key known)   4 u32 event count
 *  8 f64 arrival of the first event (Unix ms)   16 f64 arrival of the last event
 * 24 f64 first key major   32 f64 first key minor   40 f64 last key major   48 f64 last key minor
 * 56 f64 previous key major   64 f64 previous key minor   (the event just before the first one)
 * 72 u32 offset of the names table   76 u32 number of names
 * 80 events…, then the names table: per name u16 byte length + UTF-8
 * event:  u8 kind (1 telemetry, 2 status), u8 form (0 fields, 1 JSON), u16 value count,
 *         u32 device name index, f64 key major, f64 key minor, f64 time (Unix ms), then
 *   telemetry fields: f64 seq, u16 label count, u16 0, per value (u32 name index, f64 value),
 *                     per label (u32 name index, u32 value index)
 *   status fields:    u8 state (0 unspecified, 1 online, 2 offline), 3 × u8 0, u32 firmware index
 *   JSON:             u32 body bytes, body (UTF-8: the fields after type/feed/device/cursor)
 * ```
 * The previous key carries continuity: when it is not the newest key the store holds, events were
 * lost in between (dropped under overload, a restart, a trimmed stream) and the store starts a new
 * segment there, so a cursor in the hole gets `gap` instead of a silent skip.
 * Names (devices, value and label names, label values, firmware) are interned per batch, so every
 * record decodes on its own: no dictionary outlives a record, and a record can be read from anywhere
 * in a segment.
 *
 * A segment's first record is its header (type 2): `u8 type, u8 version, u16 flags (1: has
 * previous key), u32 0, f64 previous key major, f64 previous key minor, f64 created at (Unix ms)`.
 */

import type { FeedKind } from '../../feeds.js';
import { RECORD_HEADER_BYTES } from '../record-file.js';
import type { HistoryKey } from './key.js';

export const RECORD_EVENTS = 1;
export const RECORD_SEGMENT_HEADER = 2;
const VERSION = 2;
export const BATCH_HEADER_BYTES = 80;
/** kind, form, value count, device, key, time. */
const EVENT_HEADER_BYTES = 32;
const TELEMETRY_FIELDS_BYTES = 12;
const STATUS_FIELDS_BYTES = 8;
const JSON_LENGTH_BYTES = 4;
const VALUE_BYTES = 12;
const LABEL_BYTES = 8;
const KIND_CODE: Record<FeedKind, number> = { telemetry: 1, status: 2 };
const FORM_JSON = 1;
/** Longest name a names table entry holds (u16 length); longer strings make the event JSON. */
const MAX_NAME_BYTES = 0xffff;
const STATE_CODE: Readonly<Record<string, number>> = { unspecified: 0, online: 1, offline: 2 };
const STATES = ['unspecified', 'online', 'offline'] as const;

/**
 * One event as the live broker streams it, handed to the history store: its fields (telemetry:
 * `seq`, `values`, `labels`; status: `state`, `firmware`), or, from a broker that has only the JSON,
 * `json`.
 */
export interface HistoryInput {
  readonly kind: FeedKind;
  readonly device: string;
  /** Its cursor as a key (key.ts); strictly increasing from one append to the next. */
  readonly key: HistoryKey;
  /** Sample or status time, Unix ms. */
  readonly time: number;
  readonly seq?: number;
  readonly values?: Readonly<Record<string, number>>;
  readonly labels?: Readonly<Record<string, string>>;
  readonly state?: string;
  readonly firmware?: string;
  /**
   * Instead of the fields: the kind-specific fields as streamed, JSON (`{"seq":…,"time":…,
   * "values":{…},"labels":{…}}` or `{"state":…,"firmware":…,"time":…}`).
   */
  readonly json?: string;
}

/**
 * The JSON of an event's fields as the live hub streams them (web/client/protocol.ts
 * `TelemetryBody`, `StatusBody`: in that key order), for an input given as fields.
 */
export function fieldsJson(e: HistoryInput): string {
  if (e.json !== undefined) return e.json;
  return e.kind === 'status'
    ? JSON.stringify({ state: e.state ?? 'unspecified', firmware: e.firmware ?? '', time: e.time })
    : JSON.stringify({ seq: e.seq ?? 0, time: e.time, values: e.values ?? {}, labels: e.labels ?? {} });
}

/**
 * `buf.utf8Write(text, offset)`: what `buf.write(text, offset, 'utf8')` calls after normalising its
 * arguments (present in every Node release, not in the typings); half the cost for a short body.
 */
type Utf8Writer = Buffer & { utf8Write?(text: string, offset: number): number };
const utf8Write = (buf: Buffer, text: string, offset: number): number =>
  (buf as Utf8Writer).utf8Write?.(text, offset) ?? buf.write(text, offset, 'utf8');

/** Where the first event of a batch record starts (frame header, batch header). */
const FIRST_EVENT = RECORD_HEADER_BYTES + BATCH_HEADER_BYTES;
/** Smallest buffer a batch starts with. */
const MIN_BATCH_BYTES = 16 << 10;

/**
 * Builds one batch record at a time, in place: events are written straight into the record's
 * buffer, the names table is appended by `finish`. `add` costs one interned-name lookup per name,
 * a UTF-8 write of the body and a few fixed-width numbers.
 */
export class BatchEncoder {
  private buf: Buffer | undefined;
  /**
   * The same memory as `buf`: DataView stores compile to single machine stores, where Buffer's
   * writeDoubleLE copies eight bytes one at a time (half the encoder's time went there).
   */
  private view: DataView | undefined;
  /** Size of the next batch's buffer: twice the last batch, within [16 KiB, capacity]. */
  private nextSize = MIN_BATCH_BYTES;
  private pos = FIRST_EVENT;
  private readonly names = new Map<string, number>();
  private nameList: string[] = [];
  private namesBytes = 0;
  private firstArrival = 0;
  private firstMajor = 0;
  private firstMinor = 0;
  private lastMajor = 0;
  private lastMinor = 0;
  private prev: HistoryKey | undefined;
  /** The key of the last event given to `add` or `skip`: the previous key of the next batch. */
  private lastSeen: HistoryKey | undefined;
  /** Events in the batch being built. */
  count = 0;

  /**
   * @param capacity bytes of a full batch
   * @param now wall clock for arrival times, Unix ms
   */
  constructor(
    private readonly capacity: number,
    private readonly now: () => number = Date.now,
    /** Memory for a batch of `size` bytes (the store recycles full-size buffers). */
    private readonly allocate: (size: number) => Buffer = Buffer.allocUnsafeSlow,
  ) {}

  /** Bytes the batch takes now. */
  get bytes(): number {
    return this.pos + this.namesBytes;
  }

  /** The key of the last event added or skipped. */
  get last(): HistoryKey | undefined {
    return this.lastSeen;
  }

  /**
   * Sets what precedes the next event: the key of the event just before it in the stream, or
   * undefined when unknown (events may be missing before it).
   */
  setPrevious(key: HistoryKey | undefined): void {
    this.lastSeen = key;
  }

  /** Records that the event with `key` was not stored (the next batch then starts after a hole). */
  skip(key: HistoryKey): void {
    this.lastSeen = key;
  }

  /**
   * Adds an event; returns false (adding nothing) when it does not fit: `finish()` the batch first.
   * An event larger than the capacity is added to an empty batch all the same.
   */
  add(e: HistoryInput): boolean {
    if (!this.buf) this.use(this.allocate(this.nextSize));
    const names = this.nameList.length;
    const namesBytes = this.namesBytes;
    let end = this.write(e, this.buf!, this.view!, this.pos);
    while (end < 0) {
      // Undo the names this event interned.
      for (const name of this.nameList.splice(names)) this.names.delete(name);
      this.namesBytes = namesBytes;
      const buf = this.buf!;
      if (this.count > 0 && buf.length >= this.capacity) return false;
      // An empty batch (one event larger than a batch) or a small first buffer: a larger one.
      const larger = Buffer.allocUnsafeSlow(buf.length * 2);
      buf.copy(larger, 0, 0, this.pos);
      this.use(larger);
      end = this.write(e, larger, this.view!, this.pos);
    }
    this.pos = end;
    if (this.count === 0) {
      this.prev = this.lastSeen;
      // Arrival is kept per batch (retention and arrival-time reads need no finer grain).
      this.firstArrival = this.now();
      this.firstMajor = e.key.major;
      this.firstMinor = e.key.minor;
    }
    this.lastMajor = e.key.major;
    this.lastMinor = e.key.minor;
    this.lastSeen = e.key;
    this.count++;
    return true;
  }

  /**
   * The batch as a record (its 12-byte frame header left for the writer to seal), or undefined when
   * empty; starts the next batch. The record is a view at the start of an ArrayBuffer of its own
   * (transferable to a worker; it may be longer than the record).
   */
  finish(): Buffer | undefined {
    const buf = this.buf;
    if (this.count === 0 || !buf) return undefined;
    const h = RECORD_HEADER_BYTES;
    buf[h] = RECORD_EVENTS;
    buf[h + 1] = VERSION;
    buf.writeUInt16LE(this.prev ? 1 : 0, h + 2);
    buf.writeUInt32LE(this.count, h + 4);
    buf.writeDoubleLE(this.firstArrival, h + 8);
    buf.writeDoubleLE(this.now(), h + 16);
    buf.writeDoubleLE(this.firstMajor, h + 24);
    buf.writeDoubleLE(this.firstMinor, h + 32);
    buf.writeDoubleLE(this.lastMajor, h + 40);
    buf.writeDoubleLE(this.lastMinor, h + 48);
    buf.writeDoubleLE(this.prev?.major ?? 0, h + 56);
    buf.writeDoubleLE(this.prev?.minor ?? 0, h + 64);
    buf.writeUInt32LE(this.pos - RECORD_HEADER_BYTES, h + 72);
    buf.writeUInt32LE(this.nameList.length, h + 76);
    let p = this.pos;
    for (const name of this.nameList) {
      const len = buf.write(name, p + 2, 'utf8');
      buf.writeUInt16LE(len, p);
      p += 2 + len;
    }
    this.nextSize = Math.min(this.capacity, Math.max(MIN_BATCH_BYTES, 2 * p));
    this.buf = undefined;
    this.view = undefined;
    this.pos = FIRST_EVENT;
    this.count = 0;
    this.names.clear();
    this.nameList = [];
    this.namesBytes = 0;
    return buf.subarray(0, p);
  }

  private use(buf: Buffer): void {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  }

  /** Writes the event at `p`; returns where it ends, or -1 when it (and the names table) would not fit. */
  private write(e: HistoryInput, buf: Buffer, v: DataView, p: number): number {
    const room = buf.length;
    if (p + EVENT_HEADER_BYTES + TELEMETRY_FIELDS_BYTES > room) return -1;
    const device = this.intern(e.device);
    if (device < 0) return this.writeJson(e, fieldsJson(e), buf, p);
    buf[p] = KIND_CODE[e.kind];
    v.setUint32(p + 4, device, true);
    v.setFloat64(p + 8, e.key.major, true);
    v.setFloat64(p + 16, e.key.minor, true);
    v.setFloat64(p + 24, e.time, true);
    if (e.json !== undefined) return this.writeJson(e, e.json, buf, p);
    let q = p + EVENT_HEADER_BYTES;
    if (e.kind === 'status') {
      const firmware = this.intern(e.firmware ?? '');
      if (firmware < 0) return this.writeJson(e, fieldsJson(e), buf, p);
      buf[p + 1] = 0;
      v.setUint16(p + 2, 0, true);
      v.setUint32(q, STATE_CODE[e.state ?? ''] ?? 0, true); // state in the low byte, then 3 zero bytes
      v.setUint32(q + 4, firmware, true);
      q += STATUS_FIELDS_BYTES;
      return q + this.namesBytes > room ? -1 : q;
    }
    buf[p + 1] = 0;
    v.setFloat64(q, e.seq ?? 0, true);
    q += TELEMETRY_FIELDS_BYTES;
    let n = 0;
    const values = e.values;
    if (values) {
      for (const name in values) {
        if (q + VALUE_BYTES > room) return -1;
        const id = this.intern(name);
        if (id < 0) return this.writeJson(e, fieldsJson(e), buf, p);
        v.setUint32(q, id, true);
        v.setFloat64(q + 4, values[name] as number, true);
        q += VALUE_BYTES;
        n++;
      }
    }
    let m = 0;
    const labels = e.labels;
    if (labels) {
      for (const name in labels) {
        if (q + LABEL_BYTES > room) return -1;
        const id = this.intern(name);
        const value = this.intern(labels[name] as string);
        if (id < 0 || value < 0) return this.writeJson(e, fieldsJson(e), buf, p);
        v.setUint32(q, id, true);
        v.setUint32(q + 4, value, true);
        q += LABEL_BYTES;
        m++;
      }
    }
    v.setUint16(p + 2, n, true);
    v.setUint16(p + EVENT_HEADER_BYTES + 8, m, true);
    v.setUint16(p + EVENT_HEADER_BYTES + 10, 0, true);
    return q + this.namesBytes > room ? -1 : q;
  }

  /** The event with its fields as JSON (a broker that has only the JSON, or a name too long to intern). */
  private writeJson(e: HistoryInput, json: string, buf: Buffer, p: number): number {
    const room = buf.length;
    // UTF-16 → UTF-8 takes at most 3 bytes a code unit.
    if (p + EVENT_HEADER_BYTES + JSON_LENGTH_BYTES + 3 * json.length > room) return -1;
    const device = this.intern(e.device);
    buf[p] = KIND_CODE[e.kind];
    buf[p + 1] = FORM_JSON;
    buf.writeUInt16LE(0, p + 2);
    // A device name always fits (device ids are at most 64 characters); -1 only in a test's misuse.
    buf.writeUInt32LE(Math.max(0, device), p + 4);
    buf.writeDoubleLE(e.key.major, p + 8);
    buf.writeDoubleLE(e.key.minor, p + 16);
    buf.writeDoubleLE(e.time, p + 24);
    const at = p + EVENT_HEADER_BYTES + JSON_LENGTH_BYTES;
    const bytes = utf8Write(buf, json, at);
    buf.writeUInt32LE(bytes, p + EVENT_HEADER_BYTES);
    const q = at + bytes;
    return q + this.namesBytes > room ? -1 : q;
  }

  /** The index of `name` in this batch's names table (added when new); -1 when it is too long. */
  private intern(name: string): number {
    let id = this.names.get(name);
    if (id === undefined) {
      const bytes = Buffer.byteLength(name, 'utf8');
      if (bytes > MAX_NAME_BYTES) return -1;
      id = this.nameList.length;
      this.names.set(name, id);
      this.nameList.push(name);
      this.namesBytes += 2 + bytes;
    }
    return id;
  }
}

/** The summary of a batch record, from its header alone. */
export interface BatchInfo {
  readonly count: number;
  readonly firstArrival: number;
  readonly lastArrival: number;
  readonly firstKey: HistoryKey;
  readonly lastKey: HistoryKey;
  /** The key of the event just before the first one, when the producer knew it. */
  readonly prevKey: HistoryKey | undefined;
}

/** The record type of a payload (RECORD_EVENTS, RECORD_SEGMENT_HEADER, or something unknown). */
export function recordType(payload: Buffer): number {
  const type = payload[0] ?? 0;
  // Events written by another version of the format are not read (meta.ts empties such a store).
  return type === RECORD_EVENTS && payload[1] !== VERSION ? 0 : type;
}

export function batchInfo(payload: Buffer): BatchInfo {
  return {
    count: payload.readUInt32LE(4),
    firstArrival: payload.readDoubleLE(8),
    lastArrival: payload.readDoubleLE(16),
    firstKey: { major: payload.readDoubleLE(24), minor: payload.readDoubleLE(32) },
    lastKey: { major: payload.readDoubleLE(40), minor: payload.readDoubleLE(48) },
    prevKey:
      (payload.readUInt16LE(2) & 1) === 1
        ? { major: payload.readDoubleLE(56), minor: payload.readDoubleLE(64) }
        : undefined,
  };
}

export interface SegmentHeader {
  /** The key of the event just before the segment's first one in the stream, when known. */
  readonly prevKey: HistoryKey | undefined;
  readonly createdAt: number;
}

export const SEGMENT_HEADER_BYTES = 32;

/** A segment header record's payload (frame header space included). */
export function segmentHeaderRecord(header: SegmentHeader): Buffer {
  const record = Buffer.alloc(RECORD_HEADER_BYTES + SEGMENT_HEADER_BYTES);
  const h = RECORD_HEADER_BYTES;
  record[h] = RECORD_SEGMENT_HEADER;
  record[h + 1] = VERSION;
  record.writeUInt16LE(header.prevKey ? 1 : 0, h + 2);
  record.writeDoubleLE(header.prevKey?.major ?? 0, h + 8);
  record.writeDoubleLE(header.prevKey?.minor ?? 0, h + 16);
  record.writeDoubleLE(header.createdAt, h + 24);
  return record;
}

export function readSegmentHeader(payload: Buffer): SegmentHeader | undefined {
  if (payload.length < SEGMENT_HEADER_BYTES || payload[0] !== RECORD_SEGMENT_HEADER) return undefined;
  const hasPrev = (payload.readUInt16LE(2) & 1) === 1;
  return {
    prevKey: hasPrev ? { major: payload.readDoubleLE(8), minor: payload.readDoubleLE(16) } : undefined,
    createdAt: payload.readDoubleLE(24),
  };
}

/**
 * Walks the events of a batch payload in order. After `next()` returns true the fields describe the
 * current event; names (`device`, `valueName()`), `body()` and `value()` are decoded on demand, so
 * a reader looking for a few devices compares indexes and decodes only what it keeps.
 */
export class EventReader {
  /** Offsets of the names table's entries; names decoded on first use. */
  private readonly nameAt: Int32Array;
  private readonly names: (string | undefined)[];
  private readonly end: number;
  private pos = BATCH_HEADER_BYTES;
  private valuesAt = 0;
  private labelsAt = 0;
  private fieldsAt = 0;
  kind: FeedKind = 'telemetry';
  /** The event carries its fields as JSON (`body()`), not as numbers and names. */
  isJson = false;
  /** Values of a telemetry event given as fields (0 for JSON events: see `body()`). */
  valueCount = 0;
  labelCount = 0;
  /** The device's index in this batch's names (stable within the batch). */
  deviceIndex = 0;
  major = 0;
  minor = 0;
  time = 0;

  /** The payload's memory: DataView loads compile to single machine loads (see BatchEncoder.view). */
  private readonly view: DataView;

  constructor(private readonly payload: Buffer) {
    this.view = new DataView(payload.buffer, payload.byteOffset, payload.length);
    this.end = payload.readUInt32LE(72);
    const n = payload.readUInt32LE(76);
    this.nameAt = new Int32Array(n);
    this.names = new Array(n).fill(undefined);
    let p = this.end;
    for (let i = 0; i < n; i++) {
      this.nameAt[i] = p;
      p += 2 + payload.readUInt16LE(p);
    }
  }

  /** Names in this batch's table (device indexes are below it). */
  get nameCount(): number {
    return this.nameAt.length;
  }

  /** The current event's device. */
  get device(): string {
    return this.name(this.deviceIndex);
  }

  /** The index of a name given as `[u16 length][UTF-8]` (see the names table), or -1. */
  indexOfName(entry: Buffer): number {
    const { payload } = this;
    for (let at = payload.indexOf(entry, this.end); at >= 0; at = payload.indexOf(entry, at + 1)) {
      // A match must start at an entry (not inside another name).
      let lo = 0;
      let hi = this.nameAt.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        const o = this.nameAt[mid]!;
        if (o === at) return mid;
        if (o < at) lo = mid + 1;
        else hi = mid - 1;
      }
    }
    return -1;
  }

  next(): boolean {
    const { payload, view } = this;
    if (this.pos >= this.end) return false;
    const p = this.pos;
    this.kind = payload[p] === 2 ? 'status' : 'telemetry';
    this.isJson = payload[p + 1] === FORM_JSON;
    this.deviceIndex = view.getUint32(p + 4, true);
    this.major = view.getFloat64(p + 8, true);
    this.minor = view.getFloat64(p + 16, true);
    this.time = view.getFloat64(p + 24, true);
    const q = p + EVENT_HEADER_BYTES;
    this.fieldsAt = q;
    if (this.isJson) {
      this.valueCount = 0;
      this.labelCount = 0;
      this.pos = q + JSON_LENGTH_BYTES + view.getUint32(q, true);
    } else if (this.kind === 'status') {
      this.valueCount = 0;
      this.labelCount = 0;
      this.pos = q + STATUS_FIELDS_BYTES;
    } else {
      this.valueCount = view.getUint16(p + 2, true);
      this.labelCount = view.getUint16(q + 8, true);
      this.valuesAt = q + TELEMETRY_FIELDS_BYTES;
      this.labelsAt = this.valuesAt + VALUE_BYTES * this.valueCount;
      this.pos = this.labelsAt + LABEL_BYTES * this.labelCount;
    }
    return true;
  }

  /** True when the current event's key is greater than `key`. */
  after(key: HistoryKey): boolean {
    return this.major > key.major || (this.major === key.major && this.minor > key.minor);
  }

  /**
   * The current event's fields as JSON, exactly as the live broker streams them after the
   * envelope: `{"seq":…,"time":…,"values":{…},"labels":{…}}` or `{"state":…,"firmware":…,"time":…}`.
   */
  body(): string {
    const { payload } = this;
    const q = this.fieldsAt;
    if (this.isJson) {
      const start = q + JSON_LENGTH_BYTES;
      return payload.toString('utf8', start, start + payload.readUInt32LE(q));
    }
    if (this.kind === 'status') {
      return `{"state":"${this.state}","firmware":${JSON.stringify(this.firmware)},"time":${this.time}}`;
    }
    // Value and label names match NAME_RE (no character JSON escapes); label values may need it.
    let out = `{"seq":${this.seq},"time":${this.time},"values":{`;
    for (let i = 0; i < this.valueCount; i++) {
      out += `${i ? ',' : ''}"${this.valueName(i)}":${this.value(i)}`;
    }
    out += '},"labels":{';
    for (let i = 0; i < this.labelCount; i++) {
      const at = this.labelsAt + LABEL_BYTES * i;
      out += `${i ? ',' : ''}${JSON.stringify(this.name(payload.readUInt32LE(at)))}:${JSON.stringify(
        this.name(payload.readUInt32LE(at + 4)),
      )}`;
    }
    return `${out}}}`;
  }

  /** The current telemetry event's seq (fields form). */
  get seq(): number {
    return this.payload.readDoubleLE(this.fieldsAt);
  }

  /** The current status event's state (fields form). */
  get state(): (typeof STATES)[number] {
    return STATES[this.payload[this.fieldsAt]!] ?? 'unspecified';
  }

  /** The current status event's firmware (fields form). */
  get firmware(): string {
    return this.name(this.payload.readUInt32LE(this.fieldsAt + 4));
  }

  valueName(i: number): string {
    return this.name(this.view.getUint32(this.valuesAt + VALUE_BYTES * i, true));
  }

  value(i: number): number {
    return this.view.getFloat64(this.valuesAt + VALUE_BYTES * i + 4, true);
  }

  private name(index: number): string {
    let name = this.names[index];
    if (name === undefined) {
      const at = this.nameAt[index];
      if (at === undefined) return '';
      name = this.payload.toString('utf8', at + 2, at + 2 + this.payload.readUInt16LE(at));
      this.names[index] = name;
    }
    return name;
  }
}
