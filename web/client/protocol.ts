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
  | ErrorMessage;

/** What the server sends besides streamed messages (telemetry, status, snapshot). */
export type ControlMessage =
  | SubscribedMessage
  | UnsubscribedMessage
  | ReplayedMessage
  | GapMessage
  | AckMessage
  | ErrorMessage;

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
  | { type: 'subscribe'; id: string; feeds: readonly Feed[]; since?: string }
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
