/**
 * Room: broker. Every use of a private field, or a replaced method, of the packages the broker is
 * built on — Aedes 1.2 (its per-client delivery functions, subscriptions and keepalive timer), the
 * Node streams Aedes reads (`push` of a socket, `read` of a connection), aedes-persistence (the
 * in-memory session store), mqemitter-redis and aedes-persistence-redis — in this one file, behind
 * small typed functions. Nothing else in the code casts into those packages.
 *
 * Aedes is pinned exactly in package.json, and `checkAedesInternals` runs at start-up on a probe
 * connection: if a field or method is missing or has another shape (an upgrade changed it), start-up
 * fails with one error naming the installed version and what is missing. `checkRelayInternals` does
 * the same for the Redis relay in cluster mode. One test per patched behaviour:
 * src/broker/aedes-internals.test.ts and the security-* integration tests named there.
 */

import type { EventEmitter } from 'node:events';
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
    missing.push(...trimProblems(client as unknown as Client));
    missing.push(...numberCacheProblems());
    missing.push(...keepaliveProblems(aedes, client as unknown as Client));
    missing.push(...inboundWindowProblems(client as unknown as Client));
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

// ─── One keepalive sweep instead of a timer per client ──────────────────────────────────────────

/** How often the sweep runs. */
const KEEPALIVE_SWEEP_MS = 1000;
/** The resolution of the time a packet was last handled. */
const KEEPALIVE_TICK_MS = 100;

/**
 * The sweep's clock: tenths of a second since the process started, an integer V8 stores in place for
 * 3.4 years of uptime (a refresh allocates nothing).
 */
function keepaliveTicks(): number {
  return Math.floor(performance.now() / KEEPALIVE_TICK_MS);
}

/**
 * Stands in for a client's keepalive Timeout (Aedes 1.2: `_keepaliveTimer`, which it `refresh()`es
 * after every packet it handles, and `clearTimeout`s on close: a no-op on this). 20-odd bytes instead
 * of a Timeout, its closure and their context (~0.2 KiB per idle connection).
 */
class KeepaliveMark {
  /** `keepaliveTicks()` when the client's last packet was handled. */
  private last = keepaliveTicks();

  refresh(): void {
    this.last = keepaliveTicks();
  }

  /** True once more than `intervalMs` has certainly passed since the last packet. */
  expired(now: number, intervalMs: number): boolean {
    // `last` was read up to one period late, so one period is not counted.
    return (now - this.last - 1) * KEEPALIVE_TICK_MS >= intervalMs;
  }
}

interface KeepaliveFields {
  _keepaliveTimer: NodeJS.Timeout | KeepaliveMark | null;
  /** 1.5 × the CONNECT's keepalive in ms, +1 ([MQTT-3.1.2-24]); -1 without keepalive. */
  _keepaliveInterval: number;
  broker: EventEmitter;
  emit(event: string, ...args: unknown[]): boolean;
}

function keepaliveProblems(aedes: Aedes, client: Client): string[] {
  const problems: string[] = [];
  const c = client as unknown as KeepaliveFields;
  if (typeof c._keepaliveInterval !== 'number') problems.push('client._keepaliveInterval is not a number');
  const clients = (aedes as unknown as { clients?: unknown }).clients;
  if (typeof clients !== 'object' || clients === null) problems.push('aedes.clients is not an object');
  return problems;
}

/**
 * Replaces every connected client's keepalive timer with one sweep per broker: Aedes 1.2 sets a
 * Timeout per client at CONNECT ([MQTT-3.1.2-24]: disconnect after 1.5 × keepalive without a packet)
 * and refreshes it per packet. Here each client ready with a keepalive gets a `KeepaliveMark`, and a
 * sweep every second walks the broker's registered clients (`aedes.clients`) and does what Aedes's
 * timer did for the ones past their deadline: 'keepaliveTimeout' on the broker, then the client's
 * error (which closes it). A client is never cut before its deadline, and at most 1.2 s after it.
 * The sweep stops when the broker closes.
 */
export function sweepKeepalives(aedes: Aedes): void {
  aedes.on('clientReady', adoptKeepalive);
  setInterval(sweepKeepalivesOf, KEEPALIVE_SWEEP_MS, aedes).unref();
}

function adoptKeepalive(client: Client): void {
  const c = client as unknown as KeepaliveFields;
  const timer = c._keepaliveTimer;
  if (!timer || timer instanceof KeepaliveMark || !(c._keepaliveInterval > 0)) return;
  clearTimeout(timer);
  c._keepaliveTimer = new KeepaliveMark();
}

function sweepKeepalivesOf(this: NodeJS.Timeout, aedes: Aedes): void {
  if (aedes.closed) {
    clearInterval(this);
    return;
  }
  const now = keepaliveTicks();
  const clients = (aedes as unknown as { clients: Record<string, Client> }).clients;
  for (const id in clients) {
    const c = clients[id] as unknown as KeepaliveFields;
    const mark = c._keepaliveTimer;
    const interval = c._keepaliveInterval;
    if (interval > 0 && mark instanceof KeepaliveMark && mark.expired(now, interval)) {
      // Once only (the client stays registered until its close finishes), and as Aedes's close
      // leaves it: no refresh from a packet still being handled.
      c._keepaliveInterval = -1;
      c.broker.emit('keepaliveTimeout', c);
      c.emit('error', new Error('keep alive timeout'));
    }
  }
}

// ─── The inbound QoS 2 window, made when first used ─────────────────────────────────────────────

/** Where a client keeps its inbound QoS 2 window once it has one. */
const kInboundInflight = Symbol('telebridge.inboundInflight');
type InflightHolder = { [kInboundInflight]?: Set<number> };

/**
 * Aedes 1.2 gives every client a Set of the QoS 2 message ids awaiting PUBREL (`_inboundInflight`,
 * ~0.17 KiB with its table) in its constructor; only QoS 2 PUBLISH and PUBREL read it. An accessor on
 * Aedes's Client prototype makes the Set at the first read instead, and drops the constructor's empty
 * one. Process-wide, once (the prototype is shared); the behaviour is Aedes's own.
 */
export function inboundWindowOnDemand(aedes: Aedes): void {
  const proto = clientPrototype(aedes);
  if (Object.getOwnPropertyDescriptor(proto, '_inboundInflight')) return;
  Object.defineProperty(proto, '_inboundInflight', {
    configurable: true,
    get(this: InflightHolder): Set<number> {
      let inflight = this[kInboundInflight];
      if (!inflight) {
        inflight = new Set();
        this[kInboundInflight] = inflight;
      }
      return inflight;
    },
    set(this: InflightHolder, value: Set<number>) {
      // The constructor's empty Set is dropped; anything else is kept as Aedes set it.
      if (value.size > 0 || this[kInboundInflight]) this[kInboundInflight] = value;
    },
  });
}

/** Aedes's Client prototype, from a probe connection that never speaks. */
function clientPrototype(aedes: Aedes): object {
  const probe = aedes.handle(new Duplex({ read() {}, write: (_chunk, _encoding, done) => done() }));
  try {
    return Object.getPrototypeOf(probe) as object;
  } finally {
    probe.close();
  }
}

function inboundWindowProblems(client: Client): string[] {
  const inflight = (client as unknown as { _inboundInflight?: unknown })._inboundInflight;
  return inflight instanceof Set ? [] : ['client._inboundInflight is not a Set'];
}

// ─── What an idle client keeps ──────────────────────────────────────────────────────────────────

/** The listeners and fields of an Aedes client that `trimClient` replaces. */
interface TrimmableClient {
  conn: EventEmitter & { client?: Client };
  _parser: EventEmitter & {
    client?: Client;
    settings: { protocolVersion?: number; bridgeMode?: boolean };
    _list: { length: number };
    _states: readonly string[];
  };
  _eos: () => void;
  subscriptions: Record<string, unknown>;
  duplicates: Record<string, unknown>;
}

/** mqtt-packet's parser states, the same for every parser (each parser gets its own copy). */
const PARSER_STATES: readonly string[] = Object.freeze([
  '_parseHeader',
  '_parseLength',
  '_parsePayload',
  '_newPacket',
]);

/**
 * The subscriptions and duplicate counters of a client that never subscribed: shared, and frozen so a
 * path that writes to them without subscribing first fails loudly instead of mixing clients.
 */
const NO_SUBSCRIPTIONS: Record<string, never> = Object.freeze(Object.create(null));

/** The path of mqtt-packet as Aedes loads it. */
function aedesMqttPacketPath(): string {
  return createRequire(import.meta.resolve('aedes')).resolve('mqtt-packet');
}

/** bl's plain BufferList: the parser's buffer without the Duplex stream mqtt-packet wraps it in. */
let BufferListClass: (new () => { length: number }) | undefined;
function bufferListClass(): new () => { length: number } {
  if (!BufferListClass) {
    const fromParser = createRequire(aedesMqttPacketPath());
    BufferListClass = (fromParser('bl') as { BufferList: new () => { length: number } }).BufferList;
  }
  return BufferListClass;
}

/** mqtt-packet's writer (Aedes's copy), with its switch for the 16-bit number cache. */
function packetWriter(): { cacheNumbers: boolean } {
  return (require(aedesMqttPacketPath()) as { writeToStream: { cacheNumbers: boolean } }).writeToStream;
}

function numberCacheProblems(): string[] {
  try {
    const switchable = Object.getOwnPropertyDescriptor(packetWriter(), 'cacheNumbers');
    return typeof switchable?.set === 'function'
      ? []
      : ["mqtt-packet's writeToStream.cacheNumbers is missing"];
  } catch (err) {
    return [`mqtt-packet cannot be loaded (${(err as Error).message})`];
  }
}

/**
 * mqtt-packet builds, at the first packet it writes, a Buffer for every 16-bit number (65,536 of them,
 * ~6.3 MiB of heap: 0.63 KiB per connection at 10,000) to write message ids and lengths from; without
 * it each such number is a 2-byte Buffer from Node's pool (measured: +25-45 ns per PUBACK, against
 * tens of µs per message). Process-wide (every packet mqtt-packet writes); call once at start-up.
 */
export function writeNumbersUncached(): void {
  packetWriter().cacheNumbers = false;
}

/** An event listener, as EventEmitter takes it. */
type Listener = Parameters<EventEmitter['on']>[1];

function trimmable(client: Client): TrimmableClient {
  return client as unknown as TrimmableClient;
}

/** The one listener of `event` named `name` (a bound function Aedes made), or undefined. */
function boundListener(emitter: EventEmitter, event: string, name: string): Listener | undefined {
  const found = emitter.rawListeners(event).filter((f) => f.name === name);
  return found.length === 1 ? (found[0] as Listener) : undefined;
}

/** What `trimClient` relies on, checked on a fresh client (for `checkAedesInternals`). */
function trimProblems(client: Client): string[] {
  const c = trimmable(client);
  const problems: string[] = [];
  if (typeof c._eos !== 'function') problems.push('client._eos (end-of-stream cleanup) is missing');
  if (c.conn?.client !== client) problems.push('conn.client is not the client');
  const parser = c._parser;
  if (parser?.client !== client) problems.push('client._parser.client is not the client');
  else {
    if (!boundListener(parser, 'error', 'bound emit'))
      problems.push("the parser's 'error' listener is not Aedes's bound emit");
    if (typeof parser._list?.length !== 'number' || parser._list.length !== 0)
      problems.push("the parser's buffer list is missing or not empty");
    if (!Array.isArray(parser._states) || parser._states.join() !== PARSER_STATES.join())
      problems.push("the parser's states are not mqtt-packet 9's");
    if (typeof parser.settings !== 'object') problems.push("the parser's settings are missing");
  }
  if (c.conn) {
    if (!boundListener(c.conn, 'error', 'bound emit'))
      problems.push("conn's 'error' listener is not Aedes's bound emit");
    if (!boundListener(c.conn, 'end', 'bound close'))
      problems.push("conn's 'end' listener is not Aedes's bound close");
  }
  problems.push(...listenerTableProblems(client as unknown as EventEmitter, 'client'));
  if (parser) problems.push(...listenerTableProblems(parser, 'client._parser'));
  for (const field of ['subscriptions', 'duplicates'] as const) {
    const dict = c[field];
    if (
      typeof dict !== 'object' ||
      dict === null ||
      Object.getPrototypeOf(dict) !== null ||
      Object.keys(dict).length > 0
    )
      problems.push(`client.${field} is not an empty null-prototype object`);
  }
  try {
    if (typeof bufferListClass().prototype !== 'object') problems.push("bl's BufferList is not a class");
  } catch (err) {
    problems.push(`bl's BufferList cannot be loaded (${(err as Error).message})`);
  }
  return problems;
}

/**
 * Drops what Aedes 1.2 keeps per connection that an idle device never uses (bench/idle-memory.ts
 * measured each): its end-of-stream hooks (`finished()`: seven closures and their listeners, ~0.7 KiB;
 * the connection's own 'close' listener closes the client instead, `closeClientOf`), the bound
 * functions it listens with (one shared function each, reading `this.client`), the Duplex stream
 * mqtt-packet keeps as a plain buffer list (~1 KiB: a plain BufferList), the parser's copy of its
 * state names, and the subscriptions and duplicate-counter dictionaries of a client that has not
 * subscribed (~0.4 KiB; `prepareSubscriber` gives it its own at its first SUBSCRIBE), and the
 * dictionaries the client and its parser keep their listeners in (`compactListeners`). Call right
 * after `aedes.handle(conn)`.
 */
export function trimClient(client: Client): void {
  const c = trimmable(client);
  c._eos();
  c._eos = noop;
  swapListener(c.conn, 'error', 'bound emit', emitClientError);
  swapListener(c.conn, 'end', 'bound close', closeClientOfThis);
  const parser = c._parser;
  swapListener(parser, 'error', 'bound emit', emitClientError);
  parser._list = new (bufferListClass())();
  parser._states = PARSER_STATES;
  c.subscriptions = NO_SUBSCRIPTIONS;
  c.duplicates = NO_SUBSCRIPTIONS;
  compactListeners(parser);
  // 'connected' (a once listener) goes when the CONNECT is accepted.
  compactListeners(client as unknown as EventEmitter, 'connected');
}

/**
 * An event table with fast properties: made by a constructor (V8 keeps such objects' properties in
 * place) and inheriting nothing (its prototype has no prototype), so no event name finds an
 * inherited function.
 */
const EventTable = function EventTable() {} as unknown as new () => Record<string | symbol, unknown>;
EventTable.prototype = Object.create(null);

/** Node's EventEmitter fields `compactListeners` replaces. */
interface EmitterFields {
  _events?: Record<string | symbol, unknown>;
  _eventsCount?: number;
}

function listenerTableProblems(emitter: EventEmitter, name: string): string[] {
  const e = emitter as unknown as EmitterFields;
  const events = e._events;
  if (typeof events !== 'object' || events === null || typeof e._eventsCount !== 'number')
    return [`${name} has no _events/_eventsCount (Node's EventEmitter fields)`];
  if (Reflect.ownKeys(events).filter((k) => events[k] !== undefined).length !== e._eventsCount)
    return [`${name}._eventsCount does not count its _events`];
  return [];
}

/**
 * Node's EventEmitter keeps its listeners in `_events`, a `{ __proto__: null }` object that V8 holds
 * as a dictionary: 160 B with two events, 256 B with four (heap snapshots of an idle connection).
 * The same entries in an `EventTable` take 40-70 B. Emitting, adding and removing work as before
 * (EventEmitter only indexes, assigns and deletes); removing an event other than the one added last
 * turns the table back into a dictionary, so `last` names the event expected to go first (a `once`
 * listener). Entries holding undefined (Node's streams preset them) are left out, as an absent key
 * reads the same; arrays of several listeners are copied to their exact length.
 */
export function compactListeners(emitter: EventEmitter, last?: string): void {
  const e = emitter as unknown as EmitterFields;
  const events = e._events;
  if (!events) return;
  const table = new EventTable();
  for (const key of Reflect.ownKeys(events)) {
    if (key !== last && events[key] !== undefined) table[key] = exactCopy(events[key]);
  }
  if (last !== undefined && events[last] !== undefined) table[last] = exactCopy(events[last]);
  e._events = table;
}

/** A listener array as long as its contents (`push` left room to grow: 84 B for three listeners). */
function exactCopy(listeners: unknown): unknown {
  return Array.isArray(listeners) ? listeners.slice() : listeners;
}

function swapListener(emitter: EventEmitter, event: string, name: string, shared: Listener): void {
  const bound = boundListener(emitter, event, name);
  if (bound) emitter.removeListener(event, bound);
  emitter.on(event, shared);
}

/** Aedes's 'error' listeners (on the connection and on its parser), shared: both carry `client`. */
function emitClientError(this: { client: Client }, err: Error): void {
  this.client.emit('error', err);
}

function closeClientOfThis(this: { client?: Client }): void {
  this.client?.close();
}

/** Closes the Aedes client of a connection; call from the connection's 'close' listener (see `trimClient`). */
export function closeClientOf(conn: unknown): void {
  (conn as { client?: Client }).client?.close();
}

/**
 * Gives a client its own subscriptions and duplicate counters, replacing the shared empty ones
 * `trimClient` left; call before its first subscription is stored (restored ones included: every
 * subscription passes `authorizeSubscribe` first).
 */
export function prepareSubscriber(client: Client): void {
  const c = trimmable(client);
  if (c.subscriptions === NO_SUBSCRIPTIONS) c.subscriptions = Object.create(null);
  if (c.duplicates === NO_SUBSCRIPTIONS) c.duplicates = Object.create(null);
}

/** Parser settings by protocol version and bridge mode: all a parser reads of them after CONNECT. */
const parserSettings = new Map<string, { protocolVersion?: number; bridgeMode?: boolean }>();

/**
 * mqtt-packet's parser keeps the whole CONNECT packet (client id, credentials, will) as its settings
 * for the connection's life, and reads only its protocol version and bridge mode from it: replaces it
 * with a shared object holding those two. Call from `preConnect`.
 */
export function forgetConnectPacket(
  client: Client,
  packet: { protocolVersion?: number; bridgeMode?: boolean },
): void {
  const parser = trimmable(client)._parser;
  if (parser.settings !== packet) return;
  const key = `${packet.protocolVersion}/${packet.bridgeMode === true}`;
  let settings = parserSettings.get(key);
  if (!settings) {
    settings = Object.freeze({
      protocolVersion: packet.protocolVersion,
      bridgeMode: packet.bridgeMode === true,
    });
    parserSettings.set(key, settings);
  }
  parser.settings = settings;
}

function noop(): void {}

// ─── The in-memory session store ────────────────────────────────────────────────────────────────

/** What the session store wrapper touches of aedes-persistence's in-memory store. */
interface OutgoingQueues {
  setup(broker: unknown): Promise<void>;
  outgoingEnqueue(sub: { clientId: string }, packet: unknown): Promise<void>;
  outgoingEnqueueCombi(subs: readonly { clientId: string }[], packet: unknown): Promise<void>;
  outgoingStream(client: { id: string }): unknown;
}

/**
 * Aedes's default session store — aedes-persistence's in-memory store, the copy Aedes itself depends
 * on — as Aedes 1.2 calls it: through its promise class. The package's default export wraps it in a
 * callback layer Aedes never uses, which wraps each outgoing stream in a second Readable.
 *
 * Every CONNECT runs `pipeline(persistence.outgoingStream(client), through(…))` to send, or for a
 * clean session discard, what was queued for the client while it was away: a Readable over an async
 * iterator, a Transform, end-of-stream hooks, an AbortController — about 10 KiB of allocations that
 * span several event-loop turns, so during a burst of connections most of it outlives a scavenge,
 * lands in the old generation and stays there as garbage until V8's next full GC (measured, 10,000
 * idle TCP connections: 4.5 KiB of RSS per connection). A client for which nothing was ever queued
 * here gets an empty array instead, which `pipeline` reads to its end in the same turn.
 * @throws TelebridgeError (E_INTERNALS) when the installed aedes-persistence lacks what this uses.
 */
export function memorySessionStore(): unknown {
  const fromAedes = createRequire(import.meta.resolve('aedes'));
  let store: OutgoingQueues;
  try {
    const MemoryPersistence = fromAedes('aedes-persistence/asyncPersistence.js') as new () => OutgoingQueues;
    store = new MemoryPersistence();
  } catch (err) {
    throw internalsError('aedes-persistence', [
      `its promise class cannot be loaded (${(err as Error).message})`,
    ]);
  }
  const missing = (['setup', 'outgoingEnqueue', 'outgoingEnqueueCombi', 'outgoingStream'] as const)
    .filter((method) => typeof store[method] !== 'function')
    .map((method) => `${method} is missing`);
  if (missing.length > 0) throw internalsError('aedes-persistence', missing);
  // Aedes refuses a store whose setup is not an async function (it awaits it).
  if (store.setup.constructor.name !== 'AsyncFunction')
    throw internalsError('aedes-persistence', ['setup is not async']);

  /** Clients something was ever queued for (persistent sessions that missed QoS 1/2 messages). */
  const queuedFor = new Set<string>();
  const enqueue = store.outgoingEnqueue;
  const enqueueCombi = store.outgoingEnqueueCombi;
  const outgoing = store.outgoingStream;
  store.outgoingEnqueue = function (this: OutgoingQueues, sub, packet) {
    queuedFor.add(sub.clientId);
    return enqueue.call(this, sub, packet);
  };
  store.outgoingEnqueueCombi = function (this: OutgoingQueues, subs, packet) {
    for (const sub of subs) queuedFor.add(sub.clientId);
    return enqueueCombi.call(this, subs, packet);
  };
  store.outgoingStream = function (this: OutgoingQueues, client) {
    return queuedFor.has(client.id) ? outgoing.call(this, client) : NOTHING_QUEUED;
  };
  return store;
}

/** What a client nothing was queued for gets: `pipeline` takes an iterable as its source. Never written to. */
const NOTHING_QUEUED: readonly unknown[] = Object.freeze([]);

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
