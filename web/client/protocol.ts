/**
 * The live channel's protocol (contract §5), defined once: the server (src/bridge/live/) builds these
 * messages and the browser client parses them. One object per text frame; every object has `type`.
 * Cursors are opaque strings: never compared, only echoed back as `since`. Dependency-free (no DOM,
 * no Node types), so both builds compile it.
 */

/** A feed: `telemetry/<device>` or `status/<device>`; filters may use MQTT wildcards `+` and `#`. */
export type Feed = string;

export type DeviceState = 'online' | 'offline' | 'unspecified';

export interface TelemetryMessage {
  readonly type: 'telemetry';
  readonly feed: Feed;
  readonly device: string;
  readonly cursor: string;
  readonly seq: number;
  /** Sample time, Unix ms. */
  readonly time: number;
  readonly values: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
}

export interface StatusMessage {
  readonly type: 'status';
  readonly feed: Feed;
  readonly device: string;
  readonly cursor: string;
  readonly state: DeviceState;
  readonly firmware: string;
  /** Unix ms. */
  readonly time: number;
}

/**
 * The latest known state of one device on one feed. On a `telemetry/…` feed it carries the
 * telemetry fields, on a `status/…` feed the status fields.
 */
export interface SnapshotMessage {
  readonly type: 'snapshot';
  readonly feed: Feed;
  readonly device: string;
  readonly cursor: string;
  readonly seq?: number;
  readonly time?: number;
  readonly values?: Readonly<Record<string, number>>;
  readonly labels?: Readonly<Record<string, string>>;
  readonly state?: DeviceState;
  readonly firmware?: string;
}

/** One value name's series in a history answer: raw readings, or per bucket mean, min, max, count. */
export type HistorySeries =
  | { readonly values: readonly (number | null)[] }
  | {
      readonly mean: readonly (number | null)[];
      readonly min: readonly (number | null)[];
      readonly max: readonly (number | null)[];
      /** Samples carrying the value in the bucket (0: none). */
      readonly count: readonly number[];
    };

export interface HistoryStatusPoint {
  /** Unix ms. */
  readonly time: number;
  readonly state: DeviceState;
  readonly firmware: string;
}

/**
 * A device's history over a window (issue 15): the body of `GET /api/history` and the content of a
 * `history` message. Columns: `t[i]` is a reading's time (raw, `step` null) or a bucket's start
 * (buckets of `step` ms aligned to the Unix epoch, as InfluxQL's `GROUP BY time()`), and
 * `series[name]` holds that value name's column(s) aligned with `t` (null: no such value there).
 */
export interface HistoryData {
  readonly device: string;
  /** The window, Unix ms, inclusive. */
  readonly from: number;
  readonly to: number;
  /** Bucket width, ms; null: raw readings. */
  readonly step: number | null;
  readonly t: readonly number[];
  readonly series: Readonly<Record<string, HistorySeries>>;
  /** Status changes in the window, by time. */
  readonly status: readonly HistoryStatusPoint[];
  /**
   * The live channel's cursor up to which the answer reflects every event: `since` from it
   * continues without gap or duplicate. Absent when only InfluxDB answered.
   */
  readonly cursor?: string;
  /** Present when part of the window could not be read: the answer is complete from this time on. */
  readonly completeFrom?: number;
}

/**
 * History of one feed, sent after `subscribed` when `subscribe` carried `history` (one a feed with
 * history in the window; every feed named without wildcards). A `telemetry/…` feed carries `t` and
 * `series` (and no status), a `status/…` feed the `status` changes (and empty columns).
 */
export interface HistoryMessage extends HistoryData {
  readonly type: 'history';
  readonly id: string;
  readonly feed: Feed;
}

export interface SubscribedMessage {
  readonly type: 'subscribed';
  readonly id: string;
  readonly feeds: readonly Feed[];
}
export interface UnsubscribedMessage {
  readonly type: 'unsubscribed';
  readonly id: string;
}
export interface ReplayedMessage {
  readonly type: 'replayed';
  readonly id: string;
  /** Messages replayed after the `since` cursor. */
  readonly count: number;
}
export interface GapMessage {
  readonly type: 'gap';
  readonly id: string;
}
export interface AckMessage {
  readonly type: 'ack';
  readonly id: string;
}

/** The `code` of an `error` message, stable (contract §5). */
export const SERVER_ERROR_CODES = [
  'bad_request',
  'forbidden',
  'too_many_subscriptions',
  'rate_limited',
] as const;
export type ServerErrorCode = (typeof SERVER_ERROR_CODES)[number];
export interface ErrorMessage {
  readonly type: 'error';
  readonly id?: string;
  readonly code: ServerErrorCode;
  readonly message: string;
}

export type ServerMessage =
  | TelemetryMessage
  | StatusMessage
  | SnapshotMessage
  | SubscribedMessage
  | UnsubscribedMessage
  | ReplayedMessage
  | GapMessage
  | AckMessage
  | ErrorMessage
  | HistoryMessage;

/** What the server sends besides streamed messages (telemetry, status, snapshot). */
export type ControlMessage =
  | SubscribedMessage
  | UnsubscribedMessage
  | ReplayedMessage
  | GapMessage
  | AckMessage
  | ErrorMessage
  | HistoryMessage;

/** The fields of a streamed message after its envelope (type, feed, device, cursor). */
export type TelemetryBody = Omit<TelemetryMessage, 'type' | 'feed' | 'device' | 'cursor'>;
export type StatusBody = Omit<StatusMessage, 'type' | 'feed' | 'device' | 'cursor'>;

/** WebSocket close codes the live channel uses (RFC 6455 §7.4.1). */
export const CLOSE_CODES = {
  /** The client closed on purpose. */
  normal: 1000,
  /** The server is shutting down. */
  goingAway: 1001,
  /** The token expired or was revoked, or the client kept going over its message rate. */
  policy: 1008,
  /** An inbound frame over 4 KiB (sent by `ws`). */
  tooBig: 1009,
  /** The reader's send buffer passed its hard limit. */
  tryAgainLater: 1013,
} as const;

export type ClientMessage =
  | {
      type: 'subscribe';
      id: string;
      feeds: readonly Feed[];
      /** Resume after this cursor (the messages after it, then `replayed`). */
      since?: string;
      /** Or: the feeds' history over this window first (`"1h"`: s, m, h, d), then live. */
      history?: string;
      /** With `history`: at most this many points a series (downsampled). */
      points?: number;
    }
  | { type: 'unsubscribe'; id: string; feeds: readonly Feed[] }
  | { type: 'command'; id: string; device: string; name: string; args: Readonly<Record<string, string>> };

/** The subprotocol the client offers; the server selects it (contract §5). */
export const SUBPROTOCOL = 'telemetry.v1.json';

const SERVER_TYPES = new Set([
  'telemetry',
  'status',
  'snapshot',
  'subscribed',
  'unsubscribed',
  'replayed',
  'gap',
  'ack',
  'error',
  'history',
]);

/** Parses one text frame; undefined for anything that is not a JSON object with a known `type`. */
export function parseServerMessage(text: string): ServerMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string' || !SERVER_TYPES.has(type)) return undefined;
  return value as ServerMessage;
}
