/**
 * Room: bridge/live. The in-memory live broker (one instance). Cursors are `<epoch>-<position>`:
 * the epoch and the first position come from the history store (kept across restarts, so a cursor
 * from before a restart resumes from the store), else the epoch is drawn at start-up and a cursor
 * from a previous run (or another instance) is unknown and yields a gap; the position counts every
 * event. The history is a ring bounded by count and by JSON bytes; because positions are
 * contiguous, finding a cursor in it is arithmetic. An event's JSON (and its cursor text) is built
 * when first read, not when published.
 */
import { randomBytes } from 'node:crypto';
import { type FeedPattern, feedName } from '../../feeds.js';
import { type LiveBroker, type LiveEvent, latestMatching, type PublishInput } from './broker.js';
import { eventBytesAtMost, eventJson, HistoryRing, rememberLatest } from './resume-window.js';

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

/**
 * An event as the memory broker keeps it: its fields, with the JSON built on first use. With no
 * browser connected nobody reads it, and building it for every sample was 7-10 % of the bridge's
 * ingest CPU (issue 14); a session, a resume or a snapshot builds it once, then it is shared.
 */
class MemoryEvent implements LiveEvent {
  private cursorText: string | undefined;
  private built: Buffer | undefined;
  private snapshot: Buffer | undefined;
  /** The JSON's size, at most (the history's byte bound), known without building it. */
  readonly bytes: number;
  constructor(
    private readonly epoch: string,
    readonly kind: LiveEvent['kind'],
    readonly device: string,
    readonly feed: string,
    readonly position: number,
    readonly time: number,
    /** The fields after the envelope, as published. */
    readonly fields: PublishInput['body'],
  ) {
    // A cursor is the epoch, `-` and at most 16 digits.
    this.bytes = eventBytesAtMost(kind, feed, device, epoch.length + 17, fields);
  }

  get cursor(): string {
    this.cursorText ??= `${this.epoch}-${this.position}`;
    return this.cursorText;
  }

  get json(): Buffer {
    this.built ??= eventJson(this.kind, this.feed, this.device, this.cursor, JSON.stringify(this.fields));
    return this.built;
  }

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
    const feed = feedName(input.kind, input.device);
    const event = new MemoryEvent(
      this.epoch,
      input.kind,
      input.device,
      feed,
      position,
      input.time,
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
