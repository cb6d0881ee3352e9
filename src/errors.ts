/**
 * Room: shared. The catalogue of codes, in one place: errors the bridge raises (one base class with a
 * stable code; callers branch on `code`, never on message text), CONNACK return codes, and the
 * rejection reasons of contract §3. The live channel's error codes and WebSocket close codes are
 * part of its protocol, defined once for server and browser in web/client/protocol.ts
 * (`SERVER_ERROR_CODES`, `CLOSE_CODES`).
 */
export const ERROR_CODES = {
  /** Bad configuration: start-up stops with one line. */
  config: 'E_CONFIG',
  registry: 'E_REGISTRY',
  schema: 'E_SCHEMA',
  storage: 'E_STORAGE',
  /** The spool is at BRIDGE_SPOOL_MAX_BYTES: the message is not acknowledged. */
  spoolFull: 'E_SPOOL_FULL',
  /** A history query with a malformed range (bounds, step, cursor, feeds). */
  historyRange: 'E_HISTORY_RANGE',
  /** A history query over a limit (window, points, readings). */
  historyLimit: 'E_HISTORY_LIMIT',
  /** No history on this bridge: BRIDGE_HISTORY_RETENTION=0 and no InfluxDB to read. */
  historyOff: 'E_HISTORY_OFF',
  /** No token, or one that is malformed, expired or revoked (HTTP 401). */
  token: 'E_TOKEN',
  /** The token does not allow what was asked (a device outside its feeds; HTTP 403). */
  forbidden: 'E_FORBIDDEN',
  usage: 'E_USAGE',
  /** An installed Aedes (or relay) lacks an internal the broker relies on (aedes-internals.ts). */
  internals: 'E_INTERNALS',
  /** Packet guard: a packet announces more than BRIDGE_MAX_PACKET_BYTES. */
  packetTooLarge: 'E_PACKET_TOO_LARGE',
  /** Packet guard: a remaining length of more than 4 bytes. */
  malformedLength: 'E_MALFORMED_LENGTH',
  /** Packet guard: a string that is not well-formed UTF-8 or contains U+0000 [MQTT-1.5.3]. */
  malformedUtf8: 'E_MALFORMED_UTF8',
} as const;

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

export class TelebridgeError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = 'TelebridgeError';
  }
}

/** Bad configuration: start-up stops with this one line. */
export class ConfigError extends TelebridgeError {
  constructor(message: string) {
    super(ERROR_CODES.config, message);
    this.name = 'ConfigError';
  }
}

/**
 * CONNACK return codes of MQTT 3.1.1 (§3.2.2.3). Codes 6 and above are reserved and never sent
 * [MQTT-3.2.2-6].
 */
export const CONNACK = {
  accepted: 0,
  unacceptableProtocol: 1,
  /** Client id refused: empty with CleanSession 0, too long, not the device id, or keepalive over the limit. */
  identifierRejected: 2,
  /** Server unavailable: a login error, too many logins from one address, or a flood ban. */
  serverUnavailable: 3,
  badCredentials: 4,
  /** Not authorized: e.g. a will on a topic the client may not publish to. */
  notAuthorized: 5,
} as const;

export type ConnackCode = (typeof CONNACK)[keyof typeof CONNACK];

/** Why a message was acknowledged but neither stored nor relayed (contract §3), as sent in a `Rejection`. */
export const REJECT_REASONS = [
  'too_large',
  'decode_error',
  'device_mismatch',
  'bad_time',
  'bad_name',
  'bad_value',
  'too_many_samples',
  'too_many_values',
  'too_many_labels',
  'rate_limited',
] as const;

export type RejectReason = (typeof REJECT_REASONS)[number];
