/**
 * Room: bridge/live. The live broker on Redis Streams (cluster mode): one ordering of every streamed message shared by
 * all instances, so a cursor taken on one instance resumes on any other.
 *
 * ```
 * publish ─▶ EVALSHA: XADD <stream> MAXLEN ~ historyCount * e=<entry> p=<publisher>:<n>
 *                     HSET <latest> <feed> "<id> <entry>"      (snapshot state, survives restarts)
 * reader (own connection): XREAD BLOCK ─▶ local window (history) + latest ─▶ onMessage listeners
 * ```
 *
 * Cursors are stream IDs (`<ms>-<seq>`). Every instance, including the publishing one, sees an event
 * only when its reader reads it back, so all instances deliver the same events in the same order,
 * and an event is in `after()`/`latest()` before any listener sees it (the LiveBroker contract).
 *
 * The LiveBroker interface is synchronous: `after()` and `latest()` answer from a local window that
 * mirrors the stream's tail (loaded with XREVRANGE at start-up, then fed by XREAD) — the same size as
 * the stream's MAXLEN, so no XRANGE round trip is needed for a resume. A cursor older than the window
 * yields a gap, as in single-instance mode. A cursor newer than this instance's reader (a browser
 * moved here faster than this instance read the stream — microseconds on one LAN) also yields a gap:
 * the safe answer, followed by snapshots.
 *
 * Redis down: `publish` drops the event (counted in `dropped`; storage is unaffected, the pipeline
 * spooled the reading already) once the publishing connection has noticed the outage (one made in the
 * instant before either fails, counted too, or is re-sent by ioredis once Redis is back); the reader
 * waits and resumes from its last ID when Redis is back; if the stream was trimmed past it meanwhile,
 * the window restarts (older cursors get a gap). `close()` returns during an outage too.
 *
 * Never a silent hole: each instance numbers what it publishes (`p=<publisher>:<n>`, n counting
 * dropped events too), and every reader checks that each publisher's numbers follow on. A jump means
 * events were lost on the way — dropped while Redis was unreachable, lost with a primary that died
 * before replicating them (Sentinel failover), or trimmed before this reader got to them. Then the
 * `onGap` listeners are told (sessions send `gap` and fresh snapshots), and a cursor from before
 * that point resumes with `gap`. An instance that dropped events adds an empty marker entry as soon
 * as Redis is back, so the loss is seen even if it publishes nothing more.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type FeedKind, type FeedPattern, feedName } from '../../feeds.js';
import type { Logger } from '../../log.js';
import type { RedisHealth } from '../../redis.js';
import type { RedisTarget } from '../../redis-target.js';
import { type LiveBroker, type LiveEvent, latestMatching, type PublishInput } from './broker.js';
import { eventJson, HistoryRing, rememberLatest } from './resume-window.js';

export interface RedisBrokerOptions {
  readonly redis: RedisTarget;
  readonly health: RedisHealth;
  readonly log: Logger;
  /** Events kept for resume, in Redis (MAXLEN ~) and in each instance's window (BRIDGE_LIVE_HISTORY). */
  readonly historyCount: number;
  /** JSON bytes kept in each instance's window (BRIDGE_LIVE_HISTORY_BYTES). */
  readonly historyBytes: number;
  /** Feeds whose latest state is kept for snapshots. Default 200 000. */
  readonly maxFeeds?: number;
  /** Key prefix; the stream is `<prefix>:stream`, the latest state `<prefix>:latest`. Default `telebridge:live`. */
  readonly keyPrefix?: string;
  /** Entries read per XREAD. Default 512. */
  readonly readCount?: number;
  /** XREAD BLOCK timeout, ms (how soon close() is noticed without a disconnect). Default 5000. */
  readonly blockMs?: number;
  /** The history store, fed with every event the reader reads (history-feed.ts). */
  readonly history?: StreamHistory;
}

/** The history store as the stream's reader feeds it. */
export interface StreamHistory {
  /**
   * The newest stream ID it holds. When the stream still holds what followed it, the reader starts
   * right after it: the events published while this instance was away are streamed once more (the
   * window and the store get them), so the store has no hole across a restart.
   */
  readonly resumeAfter: string | undefined;
  /** Takes every event the reader reads, before any listener. */
  append(event: LiveEvent): void;
  /** The next event appended directly follows the one with this ID. */
  continueAfter(id: string): void;
  /** Events may be missing before the next one (the stream was trimmed past the reader). */
  breakContinuity(): void;
}

/** What the read loop's awaits yield once close() was called. */
const CLOSED = Symbol('closed');

const ID_RE = /^(\d{1,15})-(\d{1,15})$/;
/** Separates the fields of a stream entry; device ids cannot contain it, JSON escapes it. */
const SEP = '\x1f';

/** An empty entry (`e` = '') is a publisher's marker: it carries only its number. */
const PUBLISH_SCRIPT = `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3], 'p', ARGV[4])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[2], id .. ' ' .. ARGV[3]) end
return id`;
/** Publishers whose numbering a reader follows; the oldest is forgotten past it (one per restart). */
const MAX_PUBLISHERS = 1024;
/** At most one log line about lost events per this many ms (a failover loses a burst at once). */
const GAP_LOG_INTERVAL_MS = 10_000;

interface StreamId {
  readonly ms: number;
  readonly seq: number;
}

function parseId(text: string): StreamId | undefined {
  const m = ID_RE.exec(text);
  return m ? { ms: Number(m[1]), seq: Number(m[2]) } : undefined;
}

function compareIds(a: StreamId, b: StreamId): number {
  return a.ms - b.ms || a.seq - b.seq;
}

class StreamEvent implements LiveEvent {
  private snapshot: Buffer | undefined;
  /** For the window's byte bound. */
  readonly bytes: number;
  constructor(
    readonly kind: FeedKind,
    readonly device: string,
    readonly feed: string,
    readonly cursor: string,
    readonly id: StreamId,
    public position: number,
    readonly time: number,
    readonly json: Buffer,
    /** The fields' JSON as read from the stream. */
    readonly fields: string,
  ) {
    this.bytes = json.length;
  }

  get key(): { major: number; minor: number } {
    return { major: this.id.ms, minor: this.id.seq };
  }

  snapshotJson(): Buffer {
    this.snapshot ??= Buffer.concat([
      Buffer.from('{"type":"snapshot"'),
      this.json.subarray(`{"type":"${this.kind}"`.length),
    ]);
    return this.snapshot;
  }
}

/** `<kind>␟<device>␟<time>␟<body JSON>` */
function encodeEntry(input: PublishInput): string {
  return `${input.kind}${SEP}${input.device}${SEP}${input.time}${SEP}${JSON.stringify(input.body)}`;
}

function decodeEntry(id: string, entry: string): StreamEvent | undefined {
  const parsed = parseId(id);
  const parts = entry.split(SEP);
  if (!parsed || parts.length !== 4) return undefined;
  const [kind, device, time, body] = parts as [string, string, string, string];
  if (kind !== 'telemetry' && kind !== 'status') return undefined;
  const feed = feedName(kind, device);
  const json = eventJson(kind, feed, device, id, body);
  return new StreamEvent(kind, device, feed, id, parsed, 0, Number(time), json, body);
}

type RedisWithScript = Redis & {
  telebridgeLivePublish(
    stream: string,
    latest: string,
    maxlen: number,
    feed: string,
    entry: string,
    publisher: string,
  ): Promise<string>;
};

export class RedisLiveBroker implements LiveBroker {
  /** Events not published because Redis was unreachable. */
  dropped = 0;
  /** Times this reader found events lost on the way (each told to the `onGap` listeners). */
  gaps = 0;
  private readonly streamKey: string;
  private readonly latestKey: string;
  private readonly maxFeeds: number;
  private readonly history: HistoryRing<StreamEvent>;
  /** The newest event evicted from the window: a cursor equal to it still resumes exactly. */
  private floor: StreamId | undefined;
  private lastId = '0-0';
  private position = 0;
  private readonly latestByFeed = new Map<string, StreamEvent>();
  private readonly listeners = new Set<(event: LiveEvent) => void>();
  private readonly gapListeners = new Set<() => void>();
  /** This instance as a publisher: its id (new at every start) and the number of its last event. */
  private readonly publisherId = randomBytes(6).toString('hex');
  private published = 0;
  /** Events were dropped since the last marker: add one when Redis is back. */
  private markerOwed = false;
  /** Reader: publisher id → the number of the last entry read from it. */
  private readonly publishers = new Map<string, number>();
  /** The first entry read after a loss: a cursor before it resumes with a gap. */
  private holeAt: StreamId | undefined;
  private gapLoggedAt = 0;
  private closed = false;
  /** Settles when close() is called; every await of the read loop races it (see `untilClosed`). */
  private readonly closing: Promise<typeof CLOSED>;
  private signalClosing!: () => void;
  private reconnected = false;
  private reading: Promise<void> | undefined;
  private dropLogged = false;

  private constructor(
    private readonly options: RedisBrokerOptions,
    private readonly pub: RedisWithScript,
    private readonly reader: Redis,
  ) {
    const prefix = options.keyPrefix ?? 'telebridge:live';
    this.streamKey = `${prefix}:stream`;
    this.latestKey = `${prefix}:latest`;
    this.maxFeeds = options.maxFeeds ?? 200_000;
    this.closing = new Promise((resolve) => {
      this.signalClosing = () => resolve(CLOSED);
    });
    this.history = new HistoryRing<StreamEvent>(options.historyCount, options.historyBytes, (event) => {
      this.floor = event.id;
    });
  }

  /**
   * Connects (publisher and a dedicated reader), loads the stream's tail and the latest state, and
   * starts reading.
   * @throws when Redis cannot be reached at start-up.
   */
  static async open(options: RedisBrokerOptions): Promise<RedisLiveBroker> {
    const { health, redis } = options;
    // Publishes are fire-and-forget: never queue them while Redis is away (unbounded memory).
    const pub = (await health.connect(redis, 'live-pub', {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
    })) as RedisWithScript;
    pub.defineCommand('telebridgeLivePublish', { numberOfKeys: 2, lua: PUBLISH_SCRIPT });
    // The reader's one blocked XREAD waits through reconnects and is re-sent after them.
    const reader = await health.connect(redis, 'live-reader', { maxRetriesPerRequest: null });
    const broker = new RedisLiveBroker(options, pub, reader);
    reader.on('ready', () => {
      broker.reconnected = true;
    });
    pub.on('ready', () => {
      if (broker.markerOwed) broker.send('', '');
    });
    await broker.load();
    broker.reading = broker.readLoop();
    return broker;
  }

  publish(input: PublishInput): void {
    if (this.closed) return;
    this.send(feedName(input.kind, input.device), encodeEntry(input));
  }

  /** Appends one numbered entry (`entry` '' = a marker); a failure is a drop, and owes a marker. */
  private send(feed: string, entry: string): void {
    const publisher = `${this.publisherId}:${++this.published}`;
    if (this.pub.status !== 'ready') {
      this.drop(undefined);
      return;
    }
    if (entry === '') this.markerOwed = false;
    this.pub
      .telebridgeLivePublish(
        this.streamKey,
        this.latestKey,
        this.options.historyCount,
        feed,
        entry,
        publisher,
      )
      .then(
        () => {
          this.dropLogged = false;
        },
        (err: Error) => this.drop(err),
      );
  }

  after(since: string, limit: number): readonly LiveEvent[] | 'gap' {
    const cursor = parseId(since);
    if (!cursor) return 'gap';
    if (this.holeAt && compareIds(cursor, this.holeAt) < 0) return 'gap'; // events after it were lost
    if (since === this.lastId) return []; // nothing read after it yet
    if (this.history.size === 0) return this.floor && compareIds(cursor, this.floor) === 0 ? [] : 'gap';
    const newest = this.history.at(this.history.size - 1);
    const oldest = this.history.at(0);
    const toNewest = compareIds(cursor, newest.id);
    if (toNewest > 0) return 'gap'; // ahead of this instance's reader: see the header
    if (toNewest === 0) return [];
    let from: number; // index of the first event after the cursor
    if (compareIds(cursor, oldest.id) < 0) {
      if (!this.floor || compareIds(cursor, this.floor) !== 0) return 'gap';
      from = 0;
    } else {
      // First index whose id is greater than the cursor.
      let lo = 0;
      let hi = this.history.size - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (compareIds(this.history.at(mid).id, cursor) > 0) hi = mid;
        else lo = mid + 1;
      }
      from = lo;
    }
    const out: LiveEvent[] = [];
    for (let i = from; i < this.history.size && out.length < limit; i++) out.push(this.history.at(i));
    return out;
  }

  head(): string {
    return this.lastId;
  }

  latest(patterns: readonly FeedPattern[]): LiveEvent[] {
    return latestMatching(this.latestByFeed, patterns).sort((a, b) => compareIds(a.id, b.id));
  }

  onMessage(listener: (event: LiveEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onGap(listener: () => void): () => void {
    this.gapListeners.add(listener);
    return () => this.gapListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signalClosing();
    this.listeners.clear();
    this.gapListeners.clear();
    this.reader.disconnect();
    this.pub.disconnect();
    await this.reading;
  }

  /** Events and bytes held in the local window (for tests and metrics). */
  historyStats(): { count: number; bytes: number } {
    return { count: this.history.size, bytes: this.history.bytes };
  }

  /** The latest state of every feed (hash) and the stream's tail (window), merged in stream order. */
  private async load(): Promise<void> {
    const [latest, tail] = await Promise.all([
      this.reader.hgetall(this.latestKey),
      this.reader.xrevrange(this.streamKey, '+', '-', 'COUNT', this.options.historyCount),
    ]);
    const byId = new Map<string, StreamEvent>();
    for (const value of Object.values(latest)) {
      const space = value.indexOf(' ');
      const event = space > 0 ? decodeEntry(value.slice(0, space), value.slice(space + 1)) : undefined;
      if (event) byId.set(event.cursor, event);
    }
    // Resuming the history store: the window stops at what it holds; the reader streams the rest
    // (and follows its publishers' numbers then: followed here too, they would be read as repeats).
    const resume = await this.resumePoint();
    const windowIds: string[] = [];
    for (const [id, fields] of tail.reverse()) {
      if (resume && compareIds(parseId(id)!, resume) > 0) break;
      if (this.follow(fieldValue(fields, 'p')) === 'repeat') continue; // where each publisher stands
      const event = byId.get(id) ?? decodeEntry(id, fieldValue(fields, 'e'));
      if (!event) continue;
      byId.set(id, event);
      windowIds.push(id);
    }
    const all = [...byId.values()].sort((a, b) => compareIds(a.id, b.id));
    for (const event of all) {
      event.position = ++this.position;
      rememberLatest(this.latestByFeed, event.feed, event, this.maxFeeds);
    }
    for (const id of windowIds) this.history.push(byId.get(id)!);
    const newest = this.history.size > 0 ? this.history.at(this.history.size - 1).cursor : undefined;
    if (resume) {
      this.lastId = this.options.history!.resumeAfter!;
      this.options.history!.continueAfter(this.lastId);
    } else if (newest) this.lastId = newest;
  }

  /** The history's `resumeAfter` when the stream still holds every event after it; else undefined. */
  private async resumePoint(): Promise<StreamId | undefined> {
    const from = this.options.history?.resumeAfter;
    const after = from === undefined ? undefined : parseId(from);
    if (!after) return undefined;
    const first = await this.reader.xrange(this.streamKey, '-', '+', 'COUNT', 1);
    const firstId = first[0] ? parseId(first[0][0]) : undefined;
    // An empty stream, or one trimmed past it: what followed may be gone.
    if (!firstId || compareIds(firstId, after) > 0) return undefined;
    return after;
  }

  private async readLoop(): Promise<void> {
    const count = this.options.readCount ?? 512;
    const block = this.options.blockMs ?? 5000;
    while (!this.closed) {
      try {
        if (this.reconnected) {
          this.reconnected = false;
          await this.checkContinuity();
        }
        const reply = (await this.untilClosed(
          this.reader.xread('COUNT', count, 'BLOCK', block, 'STREAMS', this.streamKey, this.lastId),
        )) as [string, [string, string[]][]][] | null | typeof CLOSED;
        if (reply === CLOSED) return;
        if (!reply) continue;
        for (const [, entries] of reply) {
          for (const [id, fields] of entries) this.ingest(id, fields);
        }
      } catch (err) {
        if (this.closed) return;
        this.options.log.debug({ err: (err as Error).message }, 'live: stream read failed; retrying');
        await this.untilClosed(new Promise((resolve) => setTimeout(resolve, 200)));
      }
    }
  }

  /**
   * `pending`, or CLOSED as soon as close() is called. close() cannot count on ioredis to settle the
   * reader's command: an XREAD in flight when Redis went away is stashed for re-sending, and
   * disconnect() while the client waits to reconnect neither re-sends nor rejects it, so it stays
   * pending for ever (redis/ioredis#2169, #2197). Awaiting it made close() hang during an outage —
   * a shutdown that never finished.
   */
  private untilClosed<T>(pending: Promise<T>): Promise<T | typeof CLOSED> {
    return Promise.race([pending, this.closing]);
  }

  /** After a reconnect: if the stream was trimmed past our last ID, the window has a hole. */
  private async checkContinuity(): Promise<void> {
    if (this.lastId === '0-0') return; // nothing read yet: the reader starts from the beginning
    const first = await this.untilClosed(this.reader.xrange(this.streamKey, '-', '+', 'COUNT', 1));
    if (first === CLOSED) return;
    const firstId = first[0] ? parseId(first[0][0]) : undefined;
    const last = parseId(this.lastId);
    if (!firstId || !last || compareIds(firstId, last) <= 0) return;
    this.options.log.warn(
      { lastId: this.lastId, firstId: first[0]![0] },
      'live: events were trimmed from the stream while Redis was unreachable; older cursors get a gap',
    );
    this.history.clear();
    this.floor = undefined;
    this.lost(firstId);
  }

  private ingest(id: string, fields: string[]): void {
    this.lastId = id;
    const order = this.follow(fieldValue(fields, 'p'));
    if (order === 'repeat') return; // a publish resent after a reconnect, already read once
    if (order === 'after-loss') this.lost(parseId(id));
    const event = decodeEntry(id, fieldValue(fields, 'e'));
    if (!event) return;
    event.position = ++this.position;
    this.history.push(event);
    rememberLatest(this.latestByFeed, event.feed, event, this.maxFeeds);
    this.options.history?.append(event);
    for (const listener of this.listeners) listener(event);
  }

  /**
   * Follows a publisher's numbering (`<id>:<n>`). A publisher appends in order, so its numbers only
   * grow along the stream: a skipped number is an event lost on the way (`after-loss`), a number
   * seen already is a publish ioredis resent after a reconnect (`repeat`).
   */
  private follow(publisher: string): 'next' | 'after-loss' | 'repeat' {
    const colon = publisher.lastIndexOf(':');
    if (colon <= 0) return 'next'; // an entry of an older version: not numbered
    const id = publisher.slice(0, colon);
    const n = Number(publisher.slice(colon + 1));
    const last = this.publishers.get(id);
    if (last !== undefined && n <= last) return 'repeat';
    this.publishers.delete(id); // re-inserted last: the map is in order of last use
    this.publishers.set(id, n);
    if (this.publishers.size > MAX_PUBLISHERS) this.publishers.delete(this.publishers.keys().next().value!);
    return last !== undefined && n > last + 1 ? 'after-loss' : 'next';
  }

  /** Events before the entry `at` were lost: tell the listeners, and refuse resumes across it. */
  private lost(at: StreamId | undefined): void {
    if (at && (!this.holeAt || compareIds(at, this.holeAt) > 0)) this.holeAt = at;
    // The history store too: a cursor from before the hole gets gap there as well.
    this.options.history?.breakContinuity();
    this.gaps++;
    const now = Date.now();
    if (now - this.gapLoggedAt > GAP_LOG_INTERVAL_MS) {
      this.gapLoggedAt = now;
      this.options.log.warn(
        { gaps: this.gaps },
        'live: events were lost between Redis and this instance (outage or failover); browsers get a gap and fresh snapshots',
      );
    }
    for (const listener of this.gapListeners) listener();
  }

  private drop(err: Error | undefined): void {
    this.dropped++;
    this.markerOwed = true;
    if (this.dropLogged) return;
    this.dropLogged = true; // once per outage; RedisHealth logs the outage itself
    this.options.log.warn(
      { err: err?.message },
      'live: redis unreachable, live events dropped until it is back',
    );
  }
}

/** The value of a field of a stream entry (`[field, value, …]`). */
function fieldValue(fields: string[], name: 'e' | 'p'): string {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]!;
  return '';
}
