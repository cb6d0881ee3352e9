/**
 * Room: bridge/live. The in-memory live broker (one instance). Cursors are `<epoch>-<position>`:
 * the epoch and the first position come from the history store (kept across restarts, so a cursor
 * from before a restart resumes from the store), else the epoch is drawn at start-up and a cursor
 * from a previous run (or another instance) is unknown and yields a gap; the position counts every
 * event. The history is a ring bounded by count and by JSON bytes; because
 * positions are contiguous, finding a cursor in it is arithmetic.
 */
import { randomBytes } from 'node:crypto';
import { type FeedPattern, feedName } from '../../feeds.js';
import { type LiveBroker, type LiveEvent, latestMatching, type PublishInput } from './broker.js';
import { eventJson, HistoryRing, rememberLatest } from './resume-window.js';

export interface MemoryBrokerOptions {
  /** Events kept for resume (BRIDGE_LIVE_HISTORY). */
  readonly historyCount: number;
  /** JSON bytes kept for resume (BRIDGE_LIVE_HISTORY_BYTES). */
  readonly historyBytes: number;
  /** Feeds whose latest state is kept for snapshots; the least recently updated go first. Default 200 000. */
  readonly maxFeeds?: number;
  /**
   * The cursors' epoch and first position, from the history store (its `info`), so cursors continue
   * across restarts and a browser resumes from one issued before. Default: a new epoch, from 1.
   */
  readonly epoch?: string;
  readonly nextPosition?: number;
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
    readonly fields: PublishInput['body'],
  ) {}

  get key(): { major: number; minor: number } {
    return { major: this.position, minor: 0 };
  }

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
  readonly epoch: string;
  private position: number;
  private readonly history: HistoryRing<MemoryEvent>;
  private readonly latestByFeed = new Map<string, MemoryEvent>();
  private readonly listeners = new Set<(event: LiveEvent) => void>();
  private readonly maxFeeds: number;

  constructor(options: MemoryBrokerOptions) {
    this.history = new HistoryRing(options.historyCount, options.historyBytes);
    this.maxFeeds = options.maxFeeds ?? 200_000;
    this.epoch = options.epoch ?? Date.now().toString(36) + randomBytes(3).toString('hex');
    this.position = (options.nextPosition ?? 1) - 1;
  }

  publish(input: PublishInput): void {
    const position = ++this.position;
    const cursor = `${this.epoch}-${position}`;
    const feed = feedName(input.kind, input.device);
    const json = eventJson(input.kind, feed, input.device, cursor, JSON.stringify(input.body));
    const event = new MemoryEvent(
      input.kind,
      input.device,
      feed,
      cursor,
      position,
      input.time,
      json,
      input.body,
    );
    this.history.push(event);
    rememberLatest(this.latestByFeed, feed, event, this.maxFeeds);
    for (const listener of this.listeners) listener(event);
  }

  after(since: string, limit: number): readonly LiveEvent[] | 'gap' {
    const match = CURSOR_RE.exec(since);
    if (!match || match[1] !== this.epoch) return 'gap';
    const from = Number(match[2]);
    const first = this.position - this.history.size + 1; // position of the oldest event kept
    if (from > this.position || from < first - 1) return 'gap';
    const out: LiveEvent[] = [];
    for (let p = from + 1; p <= this.position && out.length < limit; p++)
      out.push(this.history.at(p - first));
    return out;
  }

  head(): string {
    return `${this.epoch}-${this.position}`;
  }

  latest(patterns: readonly FeedPattern[]): LiveEvent[] {
    return latestMatching(this.latestByFeed, patterns).sort((a, b) => a.position - b.position);
  }

  onMessage(listener: (event: LiveEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onGap(): () => void {
    return () => {}; // one process, nothing in between: nothing is ever lost
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  /** Events and bytes held in the history (for tests and metrics). */
  historyStats(): { count: number; bytes: number } {
    return { count: this.history.size, bytes: this.history.bytes };
  }
}
