/**
 * Room: bridge/live. What the in-memory and the Redis live brokers share: the resume history (a ring bounded by count
 * and by JSON bytes), the latest event per feed for snapshots, and the one-time JSON of an event.
 */

/** A ring of events, oldest first, bounded by `capacity` events and `maxBytes` of their JSON. */
export class HistoryRing<E extends { readonly json: Buffer }> {
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
    this.totalBytes += event.json.length;
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
    this.totalBytes -= event.json.length;
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
