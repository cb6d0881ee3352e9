/**
 * The in-memory live broker (one instance). Cursors are `<epoch>-<position>`: the epoch is drawn at
 * start-up, so a cursor from a previous run (or another instance) is unknown and yields a gap; the
 * position counts every event. The history is a ring bounded by count and by JSON bytes; because
 * positions are contiguous, finding a cursor in it is arithmetic.
 */
import { randomBytes } from 'node:crypto';
import { type LiveBroker, type LiveEvent, latestMatching, type PublishInput } from './broker.js';
import { type FeedPattern, feedName } from './feeds.js';

export interface MemoryBrokerOptions {
  /** Events kept for resume (BRIDGE_LIVE_HISTORY). */
  readonly historyCount: number;
  /** JSON bytes kept for resume (BRIDGE_LIVE_HISTORY_BYTES). */
  readonly historyBytes: number;
  /** Feeds whose latest state is kept for snapshots; the least recently updated go first. Default 200 000. */
  readonly maxFeeds?: number;
}

const CURSOR_RE = /^([0-9a-z]{1,32})-([0-9]{1,15})$/;

class MemoryEvent implements LiveEvent {
  private snapshot: Buffer | undefined;
  constructor(
    readonly kind: LiveEvent['kind'],
    readonly device: string,
    readonly feed: string,
    readonly cursor: string,
    readonly position: number,
    readonly time: number,
    readonly json: Buffer,
  ) {}

  snapshotJson(): Buffer {
    // The JSON starts with {"type":"<kind>", (built so below): swap the type, keep the rest.
    this.snapshot ??= Buffer.concat([
      Buffer.from('{"type":"snapshot"'),
      this.json.subarray(`{"type":"${this.kind}"`.length),
    ]);
    return this.snapshot;
  }
}

export class MemoryLiveBroker implements LiveBroker {
  readonly epoch = Date.now().toString(36) + randomBytes(3).toString('hex');
  private position = 0;
  private readonly ring: (MemoryEvent | undefined)[];
  private head = 0; // index of the oldest event
  private size = 0;
  private bytes = 0;
  private readonly latestByFeed = new Map<string, MemoryEvent>();
  private readonly listeners = new Set<(event: LiveEvent) => void>();
  private readonly maxFeeds: number;

  constructor(private readonly options: MemoryBrokerOptions) {
    this.ring = new Array(options.historyCount);
    this.maxFeeds = options.maxFeeds ?? 200_000;
  }

  publish(input: PublishInput): void {
    const position = ++this.position;
    const cursor = `${this.epoch}-${position}`;
    const feed = feedName(input.kind, input.device);
    const head = JSON.stringify({ type: input.kind, feed, device: input.device, cursor });
    const body = JSON.stringify(input.body);
    const json = Buffer.from(body === '{}' ? head : `${head.slice(0, -1)},${body.slice(1)}`);
    const event = new MemoryEvent(input.kind, input.device, feed, cursor, position, input.time, json);
    this.append(event);
    // Delete then set: Map order stays least-recently-updated first, for eviction.
    this.latestByFeed.delete(feed);
    this.latestByFeed.set(feed, event);
    if (this.latestByFeed.size > this.maxFeeds) {
      const oldest = this.latestByFeed.keys().next().value;
      if (oldest !== undefined) this.latestByFeed.delete(oldest);
    }
    for (const listener of this.listeners) listener(event);
  }

  after(since: string, limit: number): readonly LiveEvent[] | 'gap' {
    const match = CURSOR_RE.exec(since);
    if (!match || match[1] !== this.epoch) return 'gap';
    const from = Number(match[2]);
    const first = this.position - this.size + 1; // position of the oldest event kept
    if (from > this.position || from < first - 1) return 'gap';
    const out: LiveEvent[] = [];
    const capacity = this.ring.length;
    for (let p = from + 1; p <= this.position && out.length < limit; p++) {
      out.push(this.ring[(this.head + (p - first)) % capacity]!);
    }
    return out;
  }

  latest(patterns: readonly FeedPattern[]): LiveEvent[] {
    return latestMatching(this.latestByFeed, patterns).sort((a, b) => a.position - b.position);
  }

  onMessage(listener: (event: LiveEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  /** Events and bytes held in the history (for tests and metrics). */
  historyStats(): { count: number; bytes: number } {
    return { count: this.size, bytes: this.bytes };
  }

  private append(event: MemoryEvent): void {
    const capacity = this.ring.length;
    if (this.size === capacity) this.evictOldest();
    this.ring[(this.head + this.size) % capacity] = event;
    this.size++;
    this.bytes += event.json.length;
    while (this.bytes > this.options.historyBytes && this.size > 1) this.evictOldest();
  }

  private evictOldest(): void {
    const event = this.ring[this.head]!;
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.ring.length;
    this.size--;
    this.bytes -= event.json.length;
  }
}
