/** The live channel's client library: see live-client.ts. */
export { type BackoffOptions, backoffDelay, backoffWindow, DEFAULT_BACKOFF } from './backoff.js';
export {
  type ClientError,
  CommandError,
  type ConnectionState,
  type DeviceView,
  LiveClient,
  type LiveClientEvents,
  type LiveClientOptions,
  MAX_FEEDS,
  type Timers,
} from './live-client.js';
export type * from './protocol.js';
export { parseServerMessage, SUBPROTOCOL } from './protocol.js';
export type { SocketConstructor, SocketLike } from './socket.js';
