/**
 * Room: broker. Every use of a private field, or a replaced method, of the packages the broker is
 * built on — Aedes 1.2 (its per-client delivery functions, subscriptions and keepalive timer), the
 * Node streams Aedes reads (`push` of a socket, `read` of a connection), mqemitter-redis and
 * aedes-persistence-redis — in this one file, behind small typed functions. Nothing else in the code
 * casts into those packages.
 *
 * Aedes is pinned exactly in package.json, and `checkAedesInternals` runs at start-up on a probe
 * connection: if a field or method is missing or has another shape (an upgrade changed it), start-up
 * fails with one error naming the installed version and what is missing. `checkRelayInternals` does
 * the same for the Redis relay in cluster mode. One test per patched behaviour:
 * src/broker/aedes-internals.test.ts and the security-* integration tests named there.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { Duplex, Readable } from 'node:stream';
import type { Aedes, Client } from 'aedes';
import { ERROR_CODES, TelebridgeError } from '../errors.js';

const require = createRequire(import.meta.url);

/** The Aedes version the internals below were written against (package.json pins it exactly). */
export const AEDES_VERSION = '1.2.0';

/** The installed version of a package, for messages (read beside its entry point: not every package exports package.json). */
function installedVersion(name: string): string {
  try {
    let dir = dirname(require.resolve(name));
    while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function internalsError(pkg: string, missing: readonly string[]): TelebridgeError {
  return new TelebridgeError(
    ERROR_CODES.internals,
    `${pkg} ${installedVersion(pkg)} is not the one telebridge is built for (aedes ${AEDES_VERSION}): ` +
      `${missing.join('; ')}. Install the pinned versions (npm ci).`,
  );
}

// ─── Aedes clients ──────────────────────────────────────────────────────────────────────────────

/** A message as Aedes hands it to a client's delivery function. */
export interface DeliveredPacket {
  readonly topic: string;
  readonly qos: number;
  readonly payload: Buffer;
  readonly retain: boolean;
  readonly dup?: boolean;
  /**
   * Set by Aedes on every message it routes: with `brokerCounter`, the message's identity (null on a
   * retained message sent to a new subscription, which is never deduplicated).
   */
  readonly brokerId?: string | null;
  readonly brokerCounter?: number;
  /** The publishing client's id and MQTT 5 no-local flag (Aedes 1.2 speaks 3.1 and 3.1.1: never set). */
  readonly clientId?: string;
  readonly nl?: boolean;
}

/** Aedes's per-client delivery function: called once per matching subscription and message. */
export type Deliver = (packet: DeliveredPacket, done: () => void) => void;

interface ClientInternals {
  deliver0: Deliver;
  deliverQoS: Deliver;
  subscriptions: Record<string, { qos: number }>;
  /** brokerId → the highest brokerCounter delivered to this client (Aedes's `dedupe`). */
  duplicates: Record<string, number>;
  _keepaliveTimer: NodeJS.Timeout | null;
}

const CLIENT_SHAPE: readonly [keyof ClientInternals, string][] = [
  ['deliver0', 'function'],
  ['deliverQoS', 'function'],
  ['subscriptions', 'object'],
  ['duplicates', 'object'],
  ['_keepaliveTimer', 'object'],
];

/**
 * Checks, on a probe connection that never speaks, that every client internal used below exists with
 * the expected shape, and that a socket's reads go through `push` and a stream's through `read`.
 * @throws TelebridgeError (E_INTERNALS) naming the installed Aedes version and what is missing.
 */
export function checkAedesInternals(aedes: Aedes): void {
  const missing: string[] = [];
  const probe = new Duplex({ read() {}, write: (_chunk, _encoding, done) => done() });
  const client = aedes.handle(probe) as unknown as Record<string, unknown>;
  try {
    for (const [field, type] of CLIENT_SHAPE) {
      if (!(field in client)) missing.push(`client.${field} is missing`);
      else if (typeof client[field] !== type)
        missing.push(`client.${field} is a ${typeof client[field]}, not a ${type}`);
    }
    if (typeof client['deliver0'] === 'function' && (client['deliver0'] as Deliver).length !== 2)
      missing.push('client.deliver0 does not take (packet, callback)');
    if (client['conn'] !== probe) missing.push('client.conn is not the stream it was handed');
  } finally {
    (client as unknown as Client).close();
  }
  if (typeof Readable.prototype.push !== 'function' || typeof Readable.prototype.read !== 'function')
    missing.push('streams have no push/read');
  if (missing.length > 0) throw internalsError('aedes', missing);
}

function internals(client: Client): ClientInternals {
  return client as unknown as ClientInternals;
}

/** A client's two delivery functions: for QoS 0 subscriptions, and for QoS 1/2 ones. */
export interface Deliveries {
  readonly deliver0: Deliver;
  readonly deliverQoS: Deliver;
}

/**
 * Replaces a client's delivery functions. Aedes binds one of them to each subscription when it is
 * made (restored ones too), so call this before the client's first subscription takes effect.
 * @param replace gets the current functions (Aedes's, or an earlier replacement) and returns the new.
 */
export function replaceDeliveries(client: Client, replace: (current: Deliveries) => Deliveries): void {
  const c = internals(client);
  const next = replace({ deliver0: c.deliver0, deliverQoS: c.deliverQoS });
  c.deliver0 = next.deliver0;
  c.deliverQoS = next.deliverQoS;
}

/** The client's subscriptions, filter → granted QoS record (Aedes caps delivery at an exact filter's `qos`). */
export function subscriptionsOf(client: Client): Record<string, { qos: number }> {
  return internals(client).subscriptions;
}

/**
 * Aedes's `dedupe`, for a delivery that bypasses Aedes's delivery functions: true (and remembered)
 * the first time this client is handed the message with this identity — a message reaches a client
 * once per matching subscription, and through every broker of a cluster only once per origin counter.
 * A message without a `brokerId` (a retained one, sent per subscription) is always first.
 */
export function firstDelivery(client: Client, packet: DeliveredPacket): boolean {
  const id = packet.brokerId;
  if (!id) return true;
  const duplicates = internals(client).duplicates;
  const counter = packet.brokerCounter ?? 0;
  if ((duplicates[id] ?? 0) >= counter) return false;
  duplicates[id] = counter;
  return true;
}

/** The error Aedes destroys a connection with when a QoS 1/2 delivery waited `drainTimeout` for it. */
export function isDrainTimeout(err: Error): boolean {
  return err.message === 'drain timeout';
}

/**
 * Restarts the client's keepalive timer: Aedes refreshes it as it parses a packet, and a packet the
 * broker held (publish rate) was received, so it counts from when it goes on ([MQTT-3.1.2-24]).
 */
export function refreshKeepalive(client: Client): void {
  internals(client)._keepaliveTimer?.refresh();
}

// ─── Node streams as Aedes reads them ───────────────────────────────────────────────────────────

/**
 * Routes every chunk a socket reads through `push` (Node's stream read path calls it before the chunk
 * is buffered anywhere); `push` hands it on with `pushOnward`. Costs one own property on the socket,
 * and no closure per connection when `push` is shared.
 */
export function interceptSocketReads(
  socket: Socket,
  push: (this: Socket, chunk: unknown, encoding?: BufferEncoding) => boolean,
): void {
  socket.push = push as Socket['push'];
}

/** Readable's own `push`, for an intercepting `push` to hand a chunk on. */
export function pushOnward(socket: Socket, chunk: unknown, encoding?: BufferEncoding): boolean {
  return Duplex.prototype.push.call(socket, chunk, encoding);
}

/**
 * Holds a connection's reader: Aedes pulls with `conn.read(null)` on 'readable'; while held it gets
 * nothing, while `read(0)` (how a stream refills its buffer from the socket, up to the high-water
 * mark, where the socket stops reading) goes on. The own property is assigned back on release,
 * never deleted: deleting would turn the socket into a slow dictionary-mode object.
 */
export function holdReads(conn: Readable): void {
  conn.read = heldRead;
}

/** Lets the reader pull again: 'readable' makes it take what was buffered meanwhile. */
export function releaseReads(conn: Readable, emitReadable = true): void {
  conn.read = ownRead(conn);
  if (emitReadable) process.nextTick(emitReadableOf, conn);
}

function heldRead(this: Readable, n?: number): unknown {
  return n === 0 ? ownRead(this).call(this, 0) : null;
}

/** The stream's class's own `read` (net.Socket has its own, over Readable's). */
function ownRead(conn: Readable): Readable['read'] {
  return (Object.getPrototypeOf(conn) as Readable).read;
}

function emitReadableOf(conn: Readable): void {
  if (!conn.destroyed) conn.emit('readable');
}

// ─── Cluster mode: mqemitter-redis and aedes-persistence-redis ──────────────────────────────────

/** What Aedes needs from the relay (mqemitter's interface, as far as Aedes uses it). */
export interface MqEmitter {
  on(topic: string, listener: (packet: unknown, done: () => void) => void, done?: () => void): unknown;
  removeListener(
    topic: string,
    listener: (packet: unknown, done: () => void) => void,
    done?: () => void,
  ): unknown;
  emit(packet: { topic: string }, done?: (err?: Error) => void): void;
  close(done: () => void): void;
}

interface RelayInternals extends MqEmitter {
  /** MQEmitter's own emit: delivers to this process's listeners only. */
  _emit(packet: { topic: string }, done?: (err?: Error) => void): void;
  _close(done: () => void): void;
  closed?: boolean;
  closing?: boolean;
  subConn: { disconnect(): void };
  state: { on(event: 'error', listener: (err: Error) => void): void };
}

/** Checks the mqemitter-redis internals the relay uses. @throws TelebridgeError (E_INTERNALS). */
export function checkRelayInternals(relay: MqEmitter): void {
  const r = relay as Partial<RelayInternals>;
  const missing: string[] = [];
  if (typeof r._emit !== 'function') missing.push('_emit (local delivery) is missing');
  if (typeof r._close !== 'function') missing.push('_close is missing');
  if (typeof r.subConn?.disconnect !== 'function') missing.push('subConn is missing');
  if (typeof r.state?.on !== 'function') missing.push('state (error events) is missing');
  if (missing.length > 0) throw internalsError('mqemitter-redis', missing);
}

/** Delivers to this instance's subscribers only (mqemitter's own emit, under mqemitter-redis's). */
export function emitLocally(relay: MqEmitter, packet: { topic: string }, done?: (err?: Error) => void): void {
  (relay as RelayInternals)._emit(packet, done);
}

/** True once the relay is closed. */
export function relayClosed(relay: MqEmitter): boolean {
  return (relay as RelayInternals).closed === true;
}

/** Errors of the relay's Redis connections (mqemitter-redis reports them on `state`). */
export function onRelayError(relay: MqEmitter, listener: (err: Error) => void): void {
  (relay as RelayInternals).state.on('error', listener);
}

/**
 * Closes the relay without waiting for Redis: mqemitter-redis's close() sends QUIT and waits for both
 * connections to end, which never happens while Redis is away (and leaves QUIT's promise unhandled).
 */
export function closeRelayNow(relay: MqEmitter, pubConn: { disconnect(): void }, done: () => void): void {
  const r = relay as RelayInternals;
  r.closing = true;
  pubConn.disconnect();
  r.subConn.disconnect();
  r._close(done);
}

interface RetainedStreams {
  createRetainedStreamCombi(patterns: string[]): unknown;
  createRetainedStream(pattern: string): unknown;
}

/**
 * aedes-persistence-redis 11 yields retained messages as async generators where Aedes 1.2 calls
 * `.pipe()`: both retained streams become Readables.
 */
export function retainedStreamsAsReadable(persistence: RetainedStreams): void {
  if (typeof persistence.createRetainedStreamCombi !== 'function')
    throw internalsError('aedes-persistence-redis', ['createRetainedStreamCombi is missing']);
  const combi = persistence.createRetainedStreamCombi.bind(persistence) as (
    patterns: string[],
  ) => AsyncIterable<unknown>;
  persistence.createRetainedStreamCombi = (patterns) => Readable.from(combi(patterns));
  persistence.createRetainedStream = (pattern) => Readable.from(combi([pattern]));
}
