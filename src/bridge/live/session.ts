/**
 * Room: bridge/live. One browser connection's view of the live channel, whatever carries it (WebSocket or SSE):
 * its subscriptions, snapshots, resume from a cursor, and backpressure.
 *
 * Backpressure, per connection, on the transport's buffered bytes (never awaited in the fan-out):
 * - below `softLimitBytes`: every message is written at once;
 * - above it: conflation — only the newest pending message per feed is kept, and flushed in cursor
 *   order when the buffer has drained to half the soft limit;
 * - buffered + conflated bytes above `hardLimitBytes`: the connection is closed with 1013.
 * A replay is paced the same way: pages are read from the broker's history only while the buffer is
 * under the soft limit, so a resume never needs more memory than the soft limit plus one page.
 */

import { CLOSE_CODES, type ControlMessage, type ServerErrorCode } from '../../../web/client/protocol.js';
import {
  type FeedPattern,
  isFeedPattern,
  parseFeedFilter,
  patternMatches,
  scopeCovers,
} from '../../feeds.js';
import type { LiveBroker, LiveEvent } from './broker.js';

/** Feed filters one connection may hold (contract §5). */
export const MAX_FEEDS_PER_CONNECTION = 100;
/** Events read from the history per step of a replay. */
const REPLAY_PAGE = 256;
/** Per-connection cache of feed → matches, cleared when it reaches this size. */
const MATCH_CACHE_MAX = 10_000;

export type ErrorCode = ServerErrorCode;

/** What a session writes to. `onWritten` must be called after each write has left the buffer. */
export interface LiveTransport {
  /** Bytes accepted for this connection and not yet handed to the kernel. */
  bufferedAmount(): number;
  /** Writes one streamed message (`snapshot` true: its snapshot form). */
  sendEvent(event: LiveEvent, snapshot: boolean): void;
  /** Writes a control object (`subscribed`, `replayed`, `gap`, `error`, …). */
  sendControl(message: ControlMessage): void;
  /** Closes the connection for overflow (1013) or shutdown. */
  close(code: number, reason: string): void;
}

export interface SessionLimits {
  readonly softLimitBytes: number;
  readonly hardLimitBytes: number;
}

interface Replay {
  readonly id: string;
  readonly filters: Map<string, FeedPattern>;
  cursor: string;
  count: number;
}

export class LiveSession {
  /** Live filters: text as the client sent it → pattern. */
  private readonly filters = new Map<string, FeedPattern>();
  /** Live filter text → the id of the `subscribe` that asked for it (a `gap` names it). */
  private readonly subscriptionIds = new Map<string, string>();
  private readonly matchCache = new Map<string, boolean>();
  /** Conflated messages, newest per feed, in cursor order (delete before set keeps it). */
  private readonly pending = new Map<string, LiveEvent>();
  private pendingBytes = 0;
  private replay: Replay | undefined;
  private ended = false;

  constructor(
    private readonly broker: LiveBroker,
    private readonly transport: LiveTransport,
    private readonly scope: readonly FeedPattern[],
    private readonly limits: SessionLimits,
    /** Called once when the session gives up on the connection (overflow) or is ended. */
    private readonly onEnd: (reason: 'overflow' | 'closed') => void,
  ) {}

  get isEnded(): boolean {
    return this.ended;
  }

  /** Feed filters held, live or being replayed. */
  get feedCount(): number {
    return this.filters.size + (this.replay?.filters.size ?? 0);
  }

  /** Fan-out entry point: never blocks, never throws for one slow client. */
  deliver(event: LiveEvent): void {
    if (this.ended || !this.matchesLive(event)) return;
    if (this.pending.size > 0 || this.transport.bufferedAmount() > this.limits.softLimitBytes) {
      this.conflate(event);
      return;
    }
    this.transport.sendEvent(event, false);
  }

  /**
   * Handles `subscribe`. Returns an error to send, or undefined when the session answered itself
   * (`subscribed` then snapshots, or the replay).
   */
  subscribe(id: string, feeds: unknown, since: unknown): { code: ErrorCode; message: string } | undefined {
    if (!Array.isArray(feeds) || feeds.length === 0 || feeds.some((f) => typeof f !== 'string')) {
      return { code: 'bad_request', message: 'feeds must be a non-empty array of feed filters' };
    }
    if (since !== undefined && (typeof since !== 'string' || since.length > 100)) {
      return { code: 'bad_request', message: 'since must be a cursor string' };
    }
    const added = new Map<string, FeedPattern>();
    for (const text of feeds as string[]) {
      const parsed = parseFeedFilter(text);
      if (!isFeedPattern(parsed)) return { code: 'bad_request', message: parsed.error };
      if (!scopeCovers(this.scope, parsed))
        return { code: 'forbidden', message: `'${text}' is outside the token's feeds` };
      if (!this.filters.has(text) && !this.replay?.filters.has(text)) added.set(text, parsed);
    }
    if (this.feedCount + added.size > MAX_FEEDS_PER_CONNECTION) {
      return {
        code: 'too_many_subscriptions',
        message: `at most ${MAX_FEEDS_PER_CONNECTION} feeds per connection`,
      };
    }
    if (since !== undefined && this.replay) {
      return {
        code: 'bad_request',
        message: 'a replay is in progress; subscribe again after it is replayed',
      };
    }
    this.transport.sendControl({ type: 'subscribed', id, feeds });
    if (since === undefined) {
      this.activate(id, added);
      this.sendSnapshots([...added.values()]);
    } else {
      this.replay = { id, filters: added, cursor: since, count: 0 };
      this.pumpReplay();
    }
    return undefined;
  }

  unsubscribe(id: string, feeds: unknown): { code: ErrorCode; message: string } | undefined {
    if (!Array.isArray(feeds) || feeds.some((f) => typeof f !== 'string')) {
      return { code: 'bad_request', message: 'feeds must be an array of feed filters' };
    }
    for (const text of feeds as string[]) {
      this.filters.delete(text);
      this.subscriptionIds.delete(text);
      this.replay?.filters.delete(text);
    }
    this.matchCache.clear();
    this.transport.sendControl({ type: 'unsubscribed', id });
    return undefined;
  }

  /** The transport wrote something: resume a paced replay or flush conflated messages. */
  onWritten(): void {
    // Called after every write: the common case (nothing waiting) must cost no more than this test.
    if (this.ended || (this.replay === undefined && this.pending.size === 0)) return;
    if (this.transport.bufferedAmount() > this.limits.softLimitBytes / 2) return;
    if (this.replay) this.pumpReplay();
    if (this.pending.size > 0) this.flushPending();
  }

  /**
   * The broker lost events (cluster mode: a Redis outage or failover): instead of a silent hole,
   * `gap` for each live subscription, then fresh snapshots, as a resume from too old a cursor gets.
   * Conflated messages still waiting are older than those snapshots: dropped. A replay in progress
   * meets the loss itself (its next page is a `gap`).
   */
  interrupted(): void {
    if (this.ended || this.filters.size === 0) return;
    this.pending.clear();
    this.pendingBytes = 0;
    for (const id of new Set(this.subscriptionIds.values())) this.transport.sendControl({ type: 'gap', id });
    this.sendSnapshots([...this.filters.values()]);
  }

  /** Ends the session without writing (the connection is gone or is being closed by the owner). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.pending.clear();
    this.replay = undefined;
    this.onEnd('closed');
  }

  private matchesLive(event: LiveEvent): boolean {
    let hit = this.matchCache.get(event.feed);
    if (hit === undefined) {
      hit = false;
      for (const p of this.filters.values()) {
        if (patternMatches(p, event.kind, event.device)) {
          hit = true;
          break;
        }
      }
      if (this.matchCache.size >= MATCH_CACHE_MAX) this.matchCache.clear();
      this.matchCache.set(event.feed, hit);
    }
    return hit;
  }

  private activate(id: string, added: Map<string, FeedPattern>): void {
    for (const [text, pattern] of added) {
      this.filters.set(text, pattern);
      this.subscriptionIds.set(text, id);
    }
    this.matchCache.clear();
  }

  private sendSnapshots(patterns: FeedPattern[]): void {
    if (patterns.length === 0) return;
    // In cursor order, so the last cursor a client saw is the newest: resuming from it is exact.
    for (const event of this.broker.latest(patterns)) this.transport.sendEvent(event, true);
  }

  private conflate(event: LiveEvent): void {
    const previous = this.pending.get(event.feed);
    if (previous) {
      this.pending.delete(event.feed);
      this.pendingBytes -= previous.json.length;
    }
    this.pending.set(event.feed, event);
    this.pendingBytes += event.json.length;
    if (this.transport.bufferedAmount() + this.pendingBytes > this.limits.hardLimitBytes) this.overflow();
  }

  private flushPending(): void {
    for (const [feed, event] of this.pending) {
      if (this.transport.bufferedAmount() > this.limits.softLimitBytes) return;
      this.pending.delete(feed);
      this.pendingBytes -= event.json.length;
      if (this.matchesLive(event)) this.transport.sendEvent(event, false);
    }
  }

  private pumpReplay(): void {
    while (this.replay && !this.ended) {
      if (this.transport.bufferedAmount() > this.limits.softLimitBytes) return; // onWritten resumes
      const replay = this.replay;
      const page = this.broker.after(replay.cursor, REPLAY_PAGE);
      if (page === 'gap') {
        this.replay = undefined;
        this.transport.sendControl({ type: 'gap', id: replay.id });
        this.activate(replay.id, replay.filters);
        this.sendSnapshots([...replay.filters.values()]);
        return;
      }
      if (page.length === 0) {
        // Caught up: from here on the fan-out delivers these feeds (the broker is synchronous, so
        // no event can fall between the last page and activation).
        this.replay = undefined;
        this.transport.sendControl({ type: 'replayed', id: replay.id, count: replay.count });
        this.activate(replay.id, replay.filters);
        return;
      }
      for (const event of page) {
        replay.cursor = event.cursor;
        // Events that also match a live filter were delivered live already: no duplicates.
        if (this.matchesLive(event)) continue;
        for (const p of replay.filters.values()) {
          if (patternMatches(p, event.kind, event.device)) {
            this.transport.sendEvent(event, false);
            replay.count++;
            break;
          }
        }
      }
    }
  }

  private overflow(): void {
    if (this.ended) return;
    this.ended = true;
    this.pending.clear();
    this.replay = undefined;
    this.transport.close(CLOSE_CODES.tryAgainLater, 'send buffer full');
    this.onEnd('overflow');
  }
}
