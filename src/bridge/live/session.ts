/**
 * Room: bridge/live. One browser connection's view of the live channel, whatever carries it (WebSocket or SSE):
 * its subscriptions, snapshots, resume from a cursor, and backpressure.
 *
 * Backpressure, per connection, on the transport's buffered bytes (never awaited in the fan-out):
 * - below `softLimitBytes`: every message is written at once;
 * - above it: conflation — only the newest pending message per feed is kept, and flushed in cursor
 *   order when the buffer has drained to half the soft limit;
 * - buffered + conflated bytes above `hardLimitBytes`: the connection is closed with 1013.
 * A replay is paced tighter: a page is read (from the broker's window or the store) only while the
 * buffer is under a quarter of the soft limit, so a resume holds at most that plus one page. What it
 * has not sent is kept anyway (the store, the broker's window); buffering more would not send it
 * faster (the kernel's socket buffer keeps the connection busy), and a thousand browsers resuming
 * at once would each hold the whole soft limit when the store reads faster than they receive.
 *
 * Resume and history (issue 15), one catch-up per connection at a time:
 * ```
 * subscribe {history:"1h"} ─▶ subscribed ─▶ history (one a feed, read one device at a time) ─┐
 * subscribe {since:C}      ─▶ subscribed ────────────────────────────────────────────────────┤
 *                                                                                            ▼
 *   events after the cursor: the live broker's window, else the history store (a page at a time,
 *   async), back to the window when the store has nothing newer ─▶ replayed ─▶ live
 *   (a cursor neither holds: gap, then snapshots)
 * ```
 * The seam after a history window: the catch-up starts at the broker's newest cursor when the
 * subscribe arrived; an event of a feed whose history answer already reflected it (key up to that
 * answer's `asOf`, time in the window) is skipped, so nothing is sent twice and nothing is lost.
 * Every read waits for the send buffer to drain below a quarter of the soft limit, and at most one read
 * (a store page of 256 events, or one device's history) is in flight a connection.
 */

import {
  CLOSE_CODES,
  type ControlMessage,
  type HistoryMessage,
  type ServerErrorCode,
} from '../../../web/client/protocol.js';
import { formatDuration, parseDuration } from '../../duration.js';
import {
  type FeedKind,
  type FeedPattern,
  feedName,
  isFeedPattern,
  parseFeedFilter,
  patternMatches,
  scopeCovers,
} from '../../feeds.js';
import type { HistoryKey } from '../history/key.js';
import type { LiveBroker, LiveEvent } from './broker.js';
import { LiveHistory } from './history-source.js';

/** Feed filters one connection may hold (contract §5). */
export const MAX_FEEDS_PER_CONNECTION = 100;
/** Events read from the history per step of a replay. */
const REPLAY_PAGE = 256;
/** Per-connection cache of feed → matches, cleared when it reaches this size. */
const MATCH_CACHE_MAX = 10_000;
/**
 * Values (readings or buckets × value names) one `history` message may carry: about 1 MB of JSON,
 * well under the send buffer's hard limit. More: the client is told to ask for `points`.
 */
const MAX_HISTORY_CELLS = 100_000;

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

/** A history window being sent (subscribe with `history`). */
interface HistoryWindow {
  /**
   * Every feed the subscribe named, also those already live on the connection (their history is
   * sent too; their live messages keep flowing meanwhile).
   */
  patterns: FeedPattern[];
  readonly from: number;
  readonly to: number;
  readonly points: number | undefined;
  /** Devices to read, with the kinds asked for; undefined until listed. */
  devices: [string, Set<FeedKind>][] | undefined;
  next: number;
}

interface Replay {
  readonly id: string;
  readonly filters: Map<string, FeedPattern>;
  /** The events after this cursor come next. */
  cursor: string;
  count: number;
  /** A read (a store page, one device's history) is in flight: its answer continues the pump. */
  busy: boolean;
  /** The cursor after which the store said it holds nothing: a broker miss there is a real gap. */
  storeEnd: string | undefined;
  /** The history window still to send, before the events after `cursor`. */
  window: HistoryWindow | undefined;
  /**
   * After a history window: per feed, the newest key its history reflected, and the window, so the
   * catch-up skips what the history already held.
   */
  seams: Map<string, HistoryKey> | undefined;
  range: { readonly from: number; readonly to: number } | undefined;
}

/** `subscribe`'s optional history request, as received (validated by the session). */
export interface HistoryRequest {
  readonly history?: unknown;
  readonly points?: unknown;
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
    /** The feeds the token allows. */
    readonly scope: readonly FeedPattern[],
    private readonly limits: SessionLimits,
    /** Called once when the session gives up on the connection (overflow) or is ended. */
    private readonly onEnd: (reason: 'overflow' | 'closed') => void,
    /** The history store and InfluxDB behind resumes and `history` windows; none: the broker alone. */
    private readonly history?: LiveHistory,
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
  subscribe(
    id: string,
    feeds: unknown,
    since: unknown,
    request: HistoryRequest = {},
  ): { code: ErrorCode; message: string } | undefined {
    if (!Array.isArray(feeds) || feeds.length === 0 || feeds.some((f) => typeof f !== 'string')) {
      return { code: 'bad_request', message: 'feeds must be a non-empty array of feed filters' };
    }
    if (since !== undefined && (typeof since !== 'string' || since.length > 100)) {
      return { code: 'bad_request', message: 'since must be a cursor string' };
    }
    const added = new Map<string, FeedPattern>();
    const named: FeedPattern[] = [];
    for (const text of feeds as string[]) {
      const parsed = parseFeedFilter(text);
      if (!isFeedPattern(parsed)) return { code: 'bad_request', message: parsed.error };
      if (!scopeCovers(this.scope, parsed))
        return { code: 'forbidden', message: `'${text}' is outside the token's feeds` };
      named.push(parsed);
      if (!this.filters.has(text) && !this.replay?.filters.has(text)) added.set(text, parsed);
    }
    if (this.feedCount + added.size > MAX_FEEDS_PER_CONNECTION) {
      return {
        code: 'too_many_subscriptions',
        message: `at most ${MAX_FEEDS_PER_CONNECTION} feeds per connection`,
      };
    }
    const window = this.historyWindow(since, request, named);
    if (window && 'code' in window) return window;
    if ((since !== undefined || window) && this.replay) {
      return {
        code: 'bad_request',
        message: 'a replay is in progress; subscribe again after it is replayed',
      };
    }
    this.transport.sendControl({ type: 'subscribed', id, feeds });
    if (since === undefined && !window) {
      this.activate(id, added);
      this.sendSnapshots([...added.values()]);
      return undefined;
    }
    this.replay = {
      id,
      filters: added,
      // After a history window: the events streamed after it was asked for.
      cursor: window ? this.broker.head() : (since as string),
      count: 0,
      busy: false,
      storeEnd: undefined,
      window,
      seams: window ? new Map() : undefined,
      range: window ? { from: window.from, to: window.to } : undefined,
    };
    this.pumpReplay();
    return undefined;
  }

  /** The history window `subscribe` asks for, undefined when none, or the error to answer. */
  private historyWindow(
    since: unknown,
    request: HistoryRequest,
    patterns: FeedPattern[],
  ): HistoryWindow | { code: ErrorCode; message: string } | undefined {
    const { history, points } = request;
    if (history === undefined) {
      return points === undefined ? undefined : { code: 'bad_request', message: 'points needs history' };
    }
    if (!this.history?.available) {
      return {
        code: 'bad_request',
        message: 'history is off on this bridge (BRIDGE_HISTORY_RETENTION=0 and no InfluxDB)',
      };
    }
    if (since !== undefined) return { code: 'bad_request', message: 'give since or history, not both' };
    const ms = typeof history === 'string' ? parseDuration(history) : undefined;
    if (!ms) {
      return {
        code: 'bad_request',
        message: 'history must be a duration: a whole number and s, m, h or d (e.g. "1h")',
      };
    }
    if (ms > this.history.maxWindowMs) {
      return {
        code: 'bad_request',
        message: `history: at most ${formatDuration(this.history.maxWindowMs)} (asked ${history})`,
      };
    }
    const max = this.history.maxPoints;
    if (
      points !== undefined &&
      !(Number.isInteger(points) && (points as number) >= 2 && (points as number) <= max)
    ) {
      return { code: 'bad_request', message: `points must be a whole number from 2 to ${max}` };
    }
    const to = Date.now();
    return { patterns, from: to - ms, to, points: points as number | undefined, devices: undefined, next: 0 };
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
    const buffered = this.transport.bufferedAmount();
    if (buffered > this.limits.softLimitBytes / 2) return;
    if (this.replay && buffered <= this.replayBelow) this.pumpReplay();
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

  /** Buffered bytes under which a replay reads its next page (see the header). */
  private get replayBelow(): number {
    return this.limits.softLimitBytes / 4;
  }

  private pumpReplay(): void {
    while (this.replay && !this.ended) {
      const replay = this.replay;
      if (replay.busy) return; // the read's answer resumes
      if (this.transport.bufferedAmount() > this.replayBelow) return; // onWritten resumes
      if (replay.window) {
        this.readWindow(replay, replay.window);
        continue;
      }
      const page = this.broker.after(replay.cursor, REPLAY_PAGE);
      if (page === 'gap') {
        // Older than the broker's window: the store, unless it just said it has nothing newer.
        if (this.history?.resumes && replay.storeEnd !== replay.cursor) {
          this.readStore(replay);
          continue;
        }
        this.gap(replay);
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
      this.sendReplayed(replay, page);
    }
  }

  /** Sends the events of a page that the replay's feeds want, and moves its cursor past them. */
  private sendReplayed(replay: Replay, page: readonly LiveEvent[]): void {
    for (const event of page) {
      replay.cursor = event.cursor;
      // Events that also match a live filter were delivered live already: no duplicates.
      if (this.matchesLive(event)) continue;
      // …nor those a history window already held.
      if (replay.seams && this.heldByHistory(replay, event)) continue;
      for (const p of replay.filters.values()) {
        if (patternMatches(p, event.kind, event.device)) {
          this.transport.sendEvent(event, false);
          replay.count++;
          break;
        }
      }
    }
  }

  private heldByHistory(replay: Replay, event: LiveEvent): boolean {
    const seam = replay.seams!.get(event.feed);
    const range = replay.range!;
    return (
      seam !== undefined &&
      LiveHistory.notAfter(event.key, seam) &&
      event.time >= range.from &&
      event.time <= range.to
    );
  }

  /** A page from the history store (a cursor older than the broker's window). */
  private readStore(replay: Replay): void {
    const history = this.history!;
    replay.busy = true;
    history.after(replay.cursor, REPLAY_PAGE, [...replay.filters.values()]).then(
      (page) => {
        if (this.replay !== replay || this.ended) return;
        replay.busy = false;
        if (page === 'gap') {
          this.gap(replay);
          return;
        }
        this.sendReplayed(replay, page.events);
        replay.cursor = page.last;
        if (page.end) replay.storeEnd = page.last;
        this.pumpReplay();
      },
      () => {
        // The store failed (it logs why): what it held cannot be told, so gap and snapshots.
        if (this.replay !== replay || this.ended) return;
        replay.busy = false;
        this.gap(replay);
      },
    );
  }

  /** The next step of a history window: list its devices, or send one device's history. */
  private readWindow(replay: Replay, window: HistoryWindow): void {
    const history = this.history!;
    const settle = (then: () => void) => () => {
      if (this.replay !== replay || this.ended) return;
      replay.busy = false;
      then();
      this.pumpReplay();
    };
    const fail = (err: Error) =>
      settle(() => {
        // The window stops here (nothing else is affected): the catch-up and live follow.
        replay.window = undefined;
        this.transport.sendControl({
          type: 'error',
          id: replay.id,
          code: 'bad_request',
          message: `history: ${err.message}`,
        });
      })();
    if (window.devices === undefined) {
      replay.busy = true;
      this.listDevices(window).then((devices) => settle(() => (window.devices = devices))(), fail);
      return;
    }
    const next = window.devices[window.next++];
    if (!next) {
      replay.window = undefined;
      return;
    }
    const [device, kinds] = next;
    replay.busy = true;
    const q = { device, from: window.from, to: window.to };
    history
      .range(window.points === undefined ? q : { ...q, points: window.points })
      .then((answer) =>
        settle(() => {
          const cells = answer.t.length * Math.max(1, Object.keys(answer.series).length);
          if (kinds.has('telemetry') && cells > MAX_HISTORY_CELLS) {
            throw new Error(
              `${answer.t.length} readings of ${device} in ${formatDuration(window.to - window.from)}: more than one message takes; ask for points`,
            );
          }
          const base = {
            type: 'history' as const,
            id: replay.id,
            device,
            from: answer.from,
            to: answer.to,
            step: answer.step,
            ...(answer.cursor !== undefined ? { cursor: answer.cursor } : {}),
            ...(answer.completeFrom !== undefined ? { completeFrom: answer.completeFrom } : {}),
          };
          for (const kind of kinds) {
            const feed = feedName(kind, device);
            const message: HistoryMessage =
              kind === 'telemetry'
                ? { ...base, feed, t: answer.t, series: answer.series, status: [] }
                : {
                    ...base,
                    feed,
                    t: [],
                    series: {},
                    status: answer.status as HistoryMessage['status'],
                  };
            this.transport.sendControl(message);
            if (answer.asOf) replay.seams!.set(feed, answer.asOf);
          }
        })(),
      )
      .catch(fail);
  }

  /** The devices a window covers: those named, and those with history that a wildcard matches. */
  private async listDevices(window: HistoryWindow): Promise<[string, Set<FeedKind>][]> {
    const devices = new Map<string, Set<FeedKind>>();
    const add = (device: string, kind: FeedKind) => {
      let kinds = devices.get(device);
      if (!kinds) {
        kinds = new Set();
        devices.set(device, kinds);
      }
      kinds.add(kind);
    };
    const wildcards: FeedPattern[] = [];
    for (const p of window.patterns) {
      if (p.device === undefined) wildcards.push(p);
      else for (const kind of p.kind ? [p.kind] : (['telemetry', 'status'] as const)) add(p.device, kind);
    }
    if (wildcards.length > 0) {
      for (const feed of await this.history!.feeds(wildcards, window.from, window.to)) {
        const slash = feed.indexOf('/');
        add(feed.slice(slash + 1), feed.slice(0, slash) as FeedKind);
      }
    }
    return [...devices].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** The cursor is held nowhere: gap, then the feeds' snapshots. */
  private gap(replay: Replay): void {
    this.replay = undefined;
    this.transport.sendControl({ type: 'gap', id: replay.id });
    this.activate(replay.id, replay.filters);
    this.sendSnapshots([...replay.filters.values()]);
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
