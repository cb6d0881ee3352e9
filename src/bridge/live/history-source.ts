/**
 * Room: bridge/live. The history as `/live` sessions, `/live/sse` and `/api/history` read it: the
 * history reader (store, then InfluxDB) behind cursors and feeds. A cursor maps to the store's key
 * (src/bridge/history/key.ts: `<epoch>-<position>` of the memory broker, or a Redis stream ID), and
 * the events read back become messages built exactly as the live broker builds them.
 */
import type { FeedKind, FeedPattern } from '../../feeds.js';
import { feedName } from '../../feeds.js';
import type { StoredEvent } from '../history/engine.js';
import { Gate } from '../history/gate.js';
import { compareKeys, formatCursor, type HistoryKey, parseCursor } from '../history/key.js';
import type { HistoryAnswer, HistoryReader } from '../history/reader.js';
import type { LiveEvent } from './broker.js';
import { eventJson } from './resume-window.js';

/** A page of events read back from the store after a cursor. */
export interface StorePage {
  readonly events: LiveEvent[];
  /** Continue after this cursor: every event up to it was examined. */
  readonly last: string;
  /** The store holds nothing after `last` (the live broker's window takes over from it). */
  readonly end: boolean;
}

/** Feeds one history read may cover (a wildcard over a large fleet must name fewer devices). */
export const MAX_HISTORY_FEEDS = 1000;

/** See LiveHistory.resumeReads. */
const MAX_RESUME_READS = 4;

/** An event read back from the store, as the broker would have streamed it. */
class StoredLiveEvent implements LiveEvent {
  readonly feed: string;
  readonly json: Buffer;
  readonly position = 0;
  private snapshot: Buffer | undefined;
  constructor(
    readonly kind: FeedKind,
    readonly device: string,
    readonly cursor: string,
    readonly key: HistoryKey,
    readonly time: number,
    readonly fields: string,
  ) {
    this.feed = feedName(kind, device);
    this.json = eventJson(kind, this.feed, device, cursor, fields);
  }

  snapshotJson(): Buffer {
    this.snapshot ??= Buffer.concat([
      Buffer.from('{"type":"snapshot"'),
      this.json.subarray(`{"type":"${this.kind}"`.length),
    ]);
    return this.snapshot;
  }
}

export class LiveHistory {
  /** The store's cursor epoch (memory broker), undefined for stream IDs (Redis). */
  private readonly epoch: string | undefined;
  /**
   * Resume pages asked of the store at once, all connections together. The worker reads four at a
   * time anyway; asking for more only queues their answers here, a page each (~40 KB of JSON twice
   * over), when a thousand browsers resume together and the main thread is the busier one.
   */
  private readonly resumeReads = new Gate(MAX_RESUME_READS);

  constructor(
    readonly reader: HistoryReader,
    /** Longest window a `history` subscribe may ask for, ms (BRIDGE_HISTORY_MAX_WINDOW). */
    readonly maxWindowMs: number,
  ) {
    this.epoch = reader.store?.epoch;
  }

  /** Something answers history reads (a store or InfluxDB). */
  get available(): boolean {
    return this.reader.available;
  }

  /** A store holds events by cursor (resumes older than the live broker's window). */
  get resumes(): boolean {
    return this.reader.store !== undefined;
  }

  get maxPoints(): number {
    return this.reader.limits.maxPoints;
  }

  keyOf(cursor: string): HistoryKey | undefined {
    return parseCursor(cursor, this.epoch);
  }

  cursorOf(key: HistoryKey): string {
    return formatCursor(key, this.epoch);
  }

  /** True when `a` orders at or before `b`. */
  static notAfter(a: HistoryKey, b: HistoryKey): boolean {
    return compareKeys(a, b) <= 0;
  }

  /**
   * A page of events after `cursor` matching `feeds`, from the store; 'gap' when the store does not
   * hold every event after it (older than retention, in a hole, or a cursor of another key space).
   */
  async after(cursor: string, limit: number, feeds: readonly FeedPattern[]): Promise<StorePage | 'gap'> {
    const store = this.reader.store;
    const key = this.keyOf(cursor);
    if (!store || !key) return 'gap';
    const page = await this.resumeReads.run(() => store.after({ key, limit, feeds }));
    if (page === 'gap') return 'gap';
    return {
      events: page.events.map((e) => this.event(e)),
      last: page.last ? this.cursorOf(page.last) : cursor,
      end: page.end,
    };
  }

  /** The feeds matching `patterns` with history in [from, to] (the store's). */
  feeds(patterns: readonly FeedPattern[], from: number, to: number): Promise<string[]> {
    return this.reader.feeds({ feeds: patterns, from, to, limit: MAX_HISTORY_FEEDS });
  }

  /** One device's history in [from, to]; `cursor` is the store's newest key it reflects. */
  async range(q: {
    device: string;
    from: number;
    to: number;
    step?: number;
    points?: number;
  }): Promise<HistoryAnswer & { cursor: string | undefined }> {
    const answer = await this.reader.range(q);
    return { ...answer, cursor: answer.asOf ? this.cursorOf(answer.asOf) : undefined };
  }

  private event(e: StoredEvent): LiveEvent {
    return new StoredLiveEvent(e.kind, e.device, this.cursorOf(e.key), e.key, e.time, e.body);
  }
}
