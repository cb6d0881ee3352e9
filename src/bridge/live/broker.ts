/**
 * Room: bridge/live. The live broker: the one ordering of every streamed message (cursors), the bounded history kept for
 * resume, and the latest state per feed for snapshots. The in-memory implementation
 * (`broker-memory.ts`) serves one instance; a Redis Streams implementation (stream IDs as cursors,
 * shared by all instances) can replace it behind this interface.
 *
 * Contract: `publish` assigns the next cursor; the message's JSON is built at most once (a broker may
 * build it on first use: with no browser connected nobody reads it); every `onMessage` listener
 * later receives the same `LiveEvent` (same bytes) in cursor order. An event is in `after()`
 * and `latest()` before any listener sees it. A broker that can lose events (Redis: an outage, a
 * failover) never loses them silently: it calls its `onGap` listeners before the first event after
 * the loss, and `after()` answers `'gap'` for a cursor from before it.
 */
import type { StatusBody, TelemetryBody } from '../../../web/client/protocol.js';
import { type FeedKind, type FeedPattern, feedName, patternMatches } from '../../feeds.js';

/** One message as streamed: built once, sent as-is to every client. */
export interface LiveEvent {
  readonly kind: FeedKind;
  readonly device: string;
  /** `<kind>/<device>`. */
  readonly feed: string;
  /** Opaque, orders every event of the broker. */
  readonly cursor: string;
  /** Orders events within the broker's current epoch (for sorting only; never sent). */
  readonly position: number;
  /** Sample or status time, Unix ms. */
  readonly time: number;
  /** The `telemetry`/`status` message, UTF-8 JSON (built once, possibly on first use). */
  readonly json: Buffer;
  /** The same object with `type: "snapshot"`, built on first use. */
  snapshotJson(): Buffer;
  /**
   * The cursor's ordering key, for the history store: `(position, 0)` in the memory broker, the
   * stream ID's `(ms, seq)` on Redis (src/bridge/history/key.ts).
   */
  readonly key: { readonly major: number; readonly minor: number };
  /**
   * Its kind-specific fields as published (memory broker), or their JSON where only that is at hand
   * (Redis reads it back from the stream): what the history store keeps of it.
   */
  readonly fields: TelemetryBody | StatusBody | string;
}

/** A message to stream: its kind-specific fields (`body`) follow the envelope type/feed/device/cursor. */
export type PublishInput =
  | {
      readonly kind: 'telemetry';
      readonly device: string;
      readonly time: number;
      readonly body: TelemetryBody;
    }
  | { readonly kind: 'status'; readonly device: string; readonly time: number; readonly body: StatusBody };

export interface LiveBroker {
  publish(input: PublishInput): void;
  /**
   * Up to `limit` events after `since`, in order; `[]` when `since` is the newest; `'gap'` when the
   * cursor is unknown (another epoch, malformed, or from the future) or older than the history kept.
   */
  after(since: string, limit: number): readonly LiveEvent[] | 'gap';
  /**
   * The cursor of the newest event streamed: `after(head())` is `[]` until the next one. Before the
   * first event, a cursor that `after()` answers the same way.
   */
  head(): string;
  /** The latest event of every feed matching one of the patterns, in cursor order. */
  latest(patterns: readonly FeedPattern[]): LiveEvent[];
  /** Registers a listener for every published event; returns the unsubscribe function. */
  onMessage(listener: (event: LiveEvent) => void): () => void;
  /**
   * Registers a listener told when events were lost (before the first event after the loss; what
   * `latest()` answers then is the state before it). The in-memory broker never loses any.
   */
  onGap(listener: () => void): () => void;
  close(): Promise<void>;
}

/**
 * The latest event of every feed matching one of `patterns`, from a broker's feed → event map, for
 * snapshots (unsorted; each broker orders them by its cursor). Exact patterns are looked up, others
 * scanned.
 */
export function latestMatching<E extends { readonly kind: FeedKind; readonly device: string }>(
  latestByFeed: ReadonlyMap<string, E>,
  patterns: readonly FeedPattern[],
): E[] {
  const out: E[] = [];
  if (patterns.every((p) => p.kind !== undefined && p.device !== undefined)) {
    const seen = new Set<string>();
    for (const p of patterns) {
      const feed = feedName(p.kind!, p.device!);
      const event = latestByFeed.get(feed);
      if (event && !seen.has(feed)) out.push(event);
      seen.add(feed);
    }
    return out;
  }
  for (const event of latestByFeed.values()) {
    if (patterns.some((p) => patternMatches(p, event.kind, event.device))) out.push(event);
  }
  return out;
}
