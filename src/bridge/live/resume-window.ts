/**
 * Room: bridge/live. What the in-memory and the Redis live brokers share: the resume history (a ring bounded by count
 * and by JSON bytes), the latest event per feed for snapshots, and the one-time JSON of an event.
 */

/**
 * A ring of events, oldest first, bounded by `capacity` events and `maxBytes` of their JSON
 * (`bytes`: the JSON's size, or a bound on it from above when the JSON is not built yet).
 */
export class HistoryRing<E extends { readonly bytes: number }> {
  private readonly ring: (E | undefined)[];
  private head = 0; // index of the oldest event
  private count = 0;
  private totalBytes = 0;

  /** @param onEvict called with each event that leaves the ring (the oldest first). */
  constructor(
    capacity: number,
    private readonly maxBytes: number,
    private readonly onEvict?: (event: E) => void,
  ) {
    this.ring = new Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /** Appends, evicting the oldest past either bound (the newest event is always kept). */
  push(event: E): void {
    const capacity = this.ring.length;
    if (this.count === capacity) this.evictOldest();
    this.ring[(this.head + this.count) % capacity] = event;
    this.count++;
    this.totalBytes += event.bytes;
    while (this.totalBytes > this.maxBytes && this.count > 1) this.evictOldest();
  }

  /** The event at `index`, 0 being the oldest kept. */
  at(index: number): E {
    return this.ring[(this.head + index) % this.ring.length]!;
  }

  clear(): void {
    while (this.count > 0) this.evictOldest();
  }

  private evictOldest(): void {
    const event = this.ring[this.head]!;
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.ring.length;
    this.count--;
    this.totalBytes -= event.bytes;
    this.onEvict?.(event);
  }
}

/**
 * Records `event` as the latest of its feed. Delete then set keeps the map's order
 * least-recently-updated first, so past `maxFeeds` the stalest feed is dropped.
 */
export function rememberLatest<E>(
  latestByFeed: Map<string, E>,
  feed: string,
  event: E,
  maxFeeds: number,
): void {
  latestByFeed.delete(feed);
  latestByFeed.set(feed, event);
  if (latestByFeed.size > maxFeeds) {
    const oldest = latestByFeed.keys().next().value;
    if (oldest !== undefined) latestByFeed.delete(oldest);
  }
}

/**
 * A streamed message's JSON, built once: the envelope (type, feed, device, cursor) followed by the
 * fields of `body` (already JSON), e.g. `{"type":"telemetry","feed":…,"cursor":…,"seq":1,…}`.
 */
export function eventJson(kind: string, feed: string, device: string, cursor: string, body: string): Buffer {
  const head = JSON.stringify({ type: kind, feed, device, cursor });
  return Buffer.from(body === '{}' ? head : `${head.slice(0, -1)},${body.slice(1)}`);
}

/**
 * UTF-8 bytes of `JSON.stringify(body)` for a body whose fields are numbers, strings or flat records
 * of them (TelemetryBody, StatusBody), at most: exact for strings of printable ASCII without `"` or
 * `\`, 17 for a safe integer, 24 for any other number (the longest a double prints), 6 per UTF-16
 * unit for any other string (`\u00XX` escapes; UTF-8 takes at most 3). Lets the history keep its byte
 * bound without building the JSON of events that nobody may ever read.
 */
export function jsonBytesAtMost(body: Readonly<Record<string, unknown>>): number {
  return recordBytesAtMost(body, true);
}

/**
 * The bytes of `eventJson(kind, feed, device, cursor, JSON.stringify(body))`, at most, for a cursor
 * of at most `cursorLength` ASCII characters with nothing to escape (cursors are digits, letters, `-`).
 */
export function eventBytesAtMost(
  kind: string,
  feed: string,
  device: string,
  cursorLength: number,
  body: Readonly<Record<string, unknown>>,
): number {
  // {"type":…,"feed":…,"device":…,"cursor":…, then the body without its "{"
  return (
    ENVELOPE_BYTES +
    stringBytesAtMost(kind) +
    stringBytesAtMost(feed) +
    stringBytesAtMost(device) +
    cursorLength +
    2 +
    jsonBytesAtMost(body)
  );
}

const ENVELOPE_BYTES = '{"type":,"feed":,"device":,"cursor":'.length;

/** `{`, then per field its quoted key, `:`, the value and a `,` (the last one's is the `}`). */
function recordBytesAtMost(record: Readonly<Record<string, unknown>>, nested: boolean): number {
  let n = 1;
  let fields = 0;
  for (const key in record) {
    const value = record[key];
    n += stringBytesAtMost(key) + 2;
    n +=
      nested && typeof value === 'object' && value !== null
        ? recordBytesAtMost(value as Record<string, unknown>, false)
        : valueBytesAtMost(value);
    fields++;
  }
  return fields === 0 ? 2 : n;
}

function stringBytesAtMost(text: string): number {
  // A loop, not a regular expression: this runs for every key and label of every streamed sample.
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return 2 + 6 * text.length;
  }
  return 2 + text.length;
}

function valueBytesAtMost(value: unknown): number {
  if (typeof value === 'string') return stringBytesAtMost(value);
  // A safe integer prints in at most 17 characters (sign and 16 digits).
  if (typeof value === 'number') return Number.isSafeInteger(value) ? 17 : 24;
  return 5; // true, false, null
}
