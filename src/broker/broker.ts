/**
 * Room: broker. Aedes with telebridge's policy in its hooks: an adapter between MQTT connections and
 * the ingest port it is given (ingest-port.ts); it imports nothing from the bridge. The broker owns no
 * socket: listeners hand it guarded streams (`handle`, `handleSocket`).
 *
 *   CONNECT ─▶ connect-check (CONNACK 2) ─▶ login (registry, certificate, throttle; CONNACK 3/4/5)
 *   PUBLISH ─▶ topic rights ─▶ publish rate (QoS 1/2 slowed, QoS 0 dropped) ─▶ ingest.handle
 *                                                                               │ verdict
 *             PUBACK after the verdict ◀── relay to subscribers | discard (+ reply) | refuse (close)
 *   SUBSCRIBE ─▶ rights (SUBACK 0x80) ─▶ delivery taken over (fanout.ts: max QoS, encode once, slow subscribers)
 *
 * Others use it through `publish` (rejections, commands) and `disconnect`. A device or user removed
 * from the registry (here, by the CLI, or on another instance of a cluster) is disconnected.
 */

import type { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import {
  Aedes,
  type AedesPublishPacket,
  type AuthenticateError,
  type Client,
  type Connection,
  type PublishPacket,
} from 'aedes';
import { Acl } from '../auth/acl-file.js';
import { LoginThrottle } from '../auth/login-throttle.js';
import type { Identity, Registry } from '../auth/registry.js';
import { canPublish, canSubscribe } from '../auth/rights.js';
import type { Config } from '../config.js';
import { CONNACK, type ConnackCode } from '../errors.js';
import { BurstLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import {
  checkAedesInternals,
  closeClientOf,
  compactListeners,
  forgetConnectPacket,
  inboundWindowOnDemand,
  isDrainTimeout,
  memorySessionStore,
  prepareSubscriber,
  refreshKeepalive,
  sweepKeepalives,
  trimClient,
  writeNumbersUncached,
} from './aedes-internals.js';
import { DISCARD_TOPIC, isBrokerTopic, isHiddenFilter } from './broker-topics.js';
import { type ConnectRefusal, connectRefusal, MAX_CLIENT_ID_LENGTH } from './connect-check.js';
import { type DropReason, Fanout } from './fanout.js';
import {
  GuardedStream,
  type GuardOptions,
  guardSocket,
  type OutboundSink,
  type PausableSource,
} from './guard.js';
import type { IngestPort, IngestVerdict } from './ingest-port.js';
import { PublishPace } from './publish-rate.js';

export type ListenerName = 'tcp' | 'tls' | 'ws';

export interface BrokerDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly registry: Registry;
  /** Where every PUBLISH a client's rights allow goes (the bridge's pipeline). */
  readonly ingest: IngestPort;
  /** Cluster mode (REDIS_URL): Aedes's relay and session store on Redis (cluster.ts). Default: in memory. */
  readonly cluster?: { readonly mq: unknown; readonly persistence: unknown };
}

export interface Broker {
  /** Aedes, for its public events ('client', 'clientDisconnect', 'publish', …). */
  readonly aedes: Aedes;
  /**
   * Wraps a client stream in the packet guard and hands it to Aedes (MQTT over WebSocket); `source`
   * is paused with it when the stream does not stop reading by itself (guard.ts).
   */
  handle(
    stream: Connection,
    sink: OutboundSink,
    listener: ListenerName,
    req?: IncomingMessage,
    source?: PausableSource,
  ): void;
  /** Guards a TCP or TLS socket in place and hands the socket itself to Aedes (`guardSocket`). */
  handleSocket(socket: Socket, listener: Extract<ListenerName, 'tcp' | 'tls'>): void;
  /** Publishes from the bridge itself (rejections, commands). */
  publish(topic: string, payload: Buffer, qos: 0 | 1): void;
  /** The connected client with this id, if any. */
  client(clientId: string): Client | undefined;
  /** Closes a client's connection (e.g. a removed device); false when it is not connected here. */
  disconnect(clientId: string, why: string): boolean;
  close(): Promise<void>;
}

/** Milliseconds a flooding client is refused after being disconnected. */
const FLOOD_BAN_MS = 30_000;
/**
 * How long a removal is remembered for logins that were accepted just before it and are not
 * connected yet (Aedes restores the session between the two), ms.
 */
const REMOVAL_MEMORY_MS = 30_000;

function authError(message: string, returnCode: ConnackCode): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const { config, log, metrics, registry, ingest } = deps;
  const identities = new WeakMap<Client, Identity>();
  /** Accepted logins, numbered in order (removals cover the logins before them). */
  const loginNumbers = new WeakMap<Client, number>();
  let logins = 0;
  const refused = new WeakMap<Client, ConnectRefusal>();
  /** Will topics from CONNECT (preConnect's packet), checked against the rights once the client is known. */
  const wills = new WeakMap<Client, string>();
  const addresses = new WeakMap<Client, string>();
  const connected = new Map<string, Client>();
  /** Clients whose deliveries the fan-out took over (at their first SUBSCRIBE, see `takeDeliveries`). */
  const subscribers = new WeakSet<Client>();
  const banned = new Map<string, number>();
  const throttle = new LoginThrottle();
  const loginErrors = new BurstLogger(log);
  /** BRIDGE_ACL_FILE: the rights of anonymous clients (config allows it only with BRIDGE_AUTH=off). */
  const anonymous = config.acl ? new Acl(config.acl.rules) : undefined;
  /** Per connection, made at its first rate-limited PUBLISH (an idle device carries none). */
  const paces = new WeakMap<Client, PublishPace>();
  const { deviceRate, deviceBurst } = config.limits;

  /** Aedes's `authorizeForward`, and the fan-out's: what a subscriber may be sent. */
  const forwarded = <P extends { readonly topic: string }>(packet: P): P | null => {
    if (packet.topic === DISCARD_TOPIC) return null;
    // A granted wildcard subscription may still cover topics the ACL denies reading.
    return anonymous && !anonymous.canRead(packet.topic) ? null : packet;
  };
  const droppedSubscriber = (client: Client, reason: DropReason, queued?: number) => {
    metrics.subscribersDropped.inc({ reason });
    log.warn({ clientId: client.id, reason, queued }, 'slow subscriber disconnected');
  };
  const fanout = new Fanout({
    maxBufferedBytes: config.limits.subscriberBufferBytes,
    drainTimeoutMs: config.limits.drainTimeoutMs,
    authorizeForward: (_client, packet) => forwarded(packet),
    onDrop: droppedSubscriber,
  });

  /** CONNACK 5 for a will on a topic the client may not publish to. */
  const willRefusal = (client: Client, identity: Identity | undefined): AuthenticateError | undefined => {
    const will = wills.get(client);
    if (will === undefined || canPublish(identity, will, anonymous)) return undefined;
    return authError(`will topic '${will}' is not allowed`, CONNACK.notAuthorized);
  };

  /** Routes an acknowledged message as its verdict says; publishes the verdict's reply. */
  const route = (packet: PublishPacket, verdict: IngestVerdict) => {
    // A client's publish to the broker's own `$` topics is acknowledged and dropped, as Mosquitto does.
    if (verdict.route === 'discard' || isBrokerTopic(packet.topic)) {
      packet.topic = DISCARD_TOPIC;
      packet.retain = false;
    }
    if (verdict.route === 'discard' && verdict.reply) publish(verdict.reply.topic, verdict.reply.payload, 1);
  };

  /** Hands a PUBLISH to the ingest port; the callback (so the PUBACK) waits for its verdict. */
  const ingestPublish = (
    client: Client | null,
    packet: PublishPacket,
    callback: (err?: Error | null) => void,
  ) => {
    let verdict: IngestVerdict | Promise<IngestVerdict>;
    try {
      verdict = ingest.handle(client?.id ?? '', packet.topic, packet.payload as Buffer);
    } catch (err) {
      return callback(err as Error);
    }
    if ('then' in verdict) {
      verdict.then((v) => {
        route(packet, v);
        callback(null);
      }, callback);
    } else {
      route(packet, verdict);
      callback(null);
    }
  };

  /**
   * The per-client publish rate (contract §3, publish-rate.ts): QoS 1/2 go on to the ingest when their
   * token is due, the connection held meanwhile; QoS 0 over the rate is acknowledged as far as QoS 0
   * goes, routed nowhere and reported (`rate_limited`), and a flood of it is cut off and banned.
   */
  function limitRate(client: Client, packet: PublishPacket, callback: (err?: Error | null) => void): void {
    let pace = paces.get(client);
    if (!pace) {
      pace = new PublishPace(deviceRate, deviceBurst, client.conn);
      paces.set(client, pace);
    }
    if (packet.qos === 0) {
      const admission = pace.admit();
      if (admission === 'pass') {
        ingestPublish(client, packet, callback);
        return;
      }
      const reply = ingest.dropped(client.id, packet.topic, `over ${deviceRate} messages/s`);
      route(packet, { route: 'discard', reply });
      callback(null);
      if (admission === 'flood') {
        // It may come back after the ban; until then CONNACK 3.
        banned.set(client.id, Date.now() + FLOOD_BAN_MS);
        log.warn({ clientId: client.id }, 'client disconnected: flooding QoS 0 over the rate limit');
        client.close();
      }
      return;
    }
    const held = pace;
    const paced = pace.pace(() => {
      if (client.closed) {
        held.close();
        return;
      }
      refreshKeepalive(client);
      ingestPublish(client, packet, callback);
    });
    if (paced === 'waits') metrics.publishesDelayed.inc();
    else if (paced === 'overflow') {
      log.warn({ clientId: client.id, waiting: held.backlog }, 'rate limit: too many messages waiting');
      // Closes the connection: nothing of it was acknowledged, the device sends it again.
      callback(new Error('too many messages waiting for the rate limit'));
    }
  }

  const aedes = await Aedes.createBroker({
    ...(deps.cluster
      ? { mq: deps.cluster.mq, persistence: deps.cluster.persistence }
      : { persistence: memorySessionStore() }),
    concurrency: 100,
    // A subscriber that stops reading is dropped within seconds instead of stalling delivery.
    drainTimeout: config.limits.drainTimeoutMs,
    connectTimeout: config.limits.connectTimeoutMs,
    // No limit in Aedes: it would answer with the reserved code 6 (connect-check.ts applies it).
    keepaliveLimit: 0,
    maxClientsIdLength: MAX_CLIENT_ID_LENGTH,
    maxTopicLevels: 32,
    heartbeatInterval: 60_000,

    preConnect(client, packet, callback) {
      forgetConnectPacket(client, packet);
      const refusal = connectRefusal(packet, config.limits.keepaliveLimitS);
      if (refusal) refused.set(client, refusal);
      if (packet.will) wills.set(client, packet.will.topic);
      callback(null, true);
    },

    authenticate(client, username, password, done) {
      const refusal = refused.get(client);
      if (refusal) {
        if (refusal.log) log.warn({ clientId: client.id }, refusal.message);
        return done(authError(refusal.message, refusal.returnCode), false);
      }
      const bannedUntil = banned.get(client.id);
      if (bannedUntil !== undefined) {
        if (bannedUntil > Date.now())
          return done(authError('temporarily refused after flooding', CONNACK.serverUnavailable), false);
        banned.delete(client.id);
      }
      if (!config.auth) {
        const willRefused = willRefusal(client, undefined);
        return willRefused ? done(willRefused, false) : done(null, true);
      }
      const address = addresses.get(client) ?? 'unknown';
      const certificateName = verifiedCertificateName(client);
      const attempt = async (): Promise<Identity | undefined> => {
        if (
          certificateName &&
          (!username || username === certificateName) &&
          (await registry.hasDeviceNow(certificateName))
        ) {
          return { kind: 'device', id: certificateName };
        }
        if (!username || !password) return undefined;
        return registry.authenticate(username, password);
      };
      throttle
        .run(address, attempt)
        .then((result) => {
          if (result.busy)
            return done(
              authError('too many logins from this address; retry later', CONNACK.serverUnavailable),
              false,
            );
          const { identity } = result;
          if (!identity) return done(authError('bad user name or password', CONNACK.badCredentials), false);
          if (identity.kind === 'device' && client.id !== identity.id) {
            return done(
              authError(`client id must be the device id '${identity.id}'`, CONNACK.identifierRejected),
              false,
            );
          }
          const willRefused = willRefusal(client, identity);
          if (willRefused) return done(willRefused, false);
          identities.set(client, identity);
          loginNumbers.set(client, ++logins);
          done(null, true);
        })
        .catch((err: Error) => {
          // The cluster's registry unreachable fails every uncached login alike: once per burst.
          loginErrors.error({ err: err.message, clientId: client.id }, 'authentication failed with an error');
          done(authError('server unavailable', CONNACK.serverUnavailable), false);
        });
    },

    authorizePublish(client, packet, callback) {
      // Aedes publishes wills of clients that are gone with client = null; their rights were
      // checked at CONNECT.
      const identity = client ? identities.get(client) : undefined;
      if (client && !canPublish(identity, packet.topic, anonymous)) {
        // [MQTT-3.3.5-2] a publish the server does not allow: MQTT 3.1.1 has no negative PUBACK,
        // so the connection is closed.
        return callback(new Error(`not authorized to publish to '${packet.topic}'`));
      }
      // The rate counts what the bridge ingests, as the client sends it. A will is published as its
      // client closes (`client.closed`): never held back, never dropped.
      if (!client || client.closed || deviceRate === 0 || !ingest.ingests(packet.topic))
        return ingestPublish(client, packet, callback);
      limitRate(client, packet, callback);
    },

    authorizeSubscribe(client, subscription, callback) {
      takeDeliveries(client);
      const identity = identities.get(client);
      if (isHiddenFilter(subscription.topic) || !canSubscribe(identity, subscription.topic, anonymous)) {
        return callback(null, null); // SUBACK 0x80
      }
      callback(null, subscription);
    },

    authorizeForward: (_client, packet: AedesPublishPacket) => forwarded(packet),
  });
  checkAedesInternals(aedes);
  writeNumbersUncached();
  sweepKeepalives(aedes);
  inboundWindowOnDemand(aedes);

  /**
   * `<kind>:<name>` removed a moment ago → the last login number it covers (a later login is of
   * the name re-created) and until when it is remembered (REMOVAL_MEMORY_MS).
   */
  const removed = new Map<string, { upTo: number; until: number }>();
  const isRemoved = (client: Client): boolean => {
    const identity = identities.get(client);
    const removal = identity ? removed.get(`${identity.kind}:${identity.id}`) : undefined;
    return removal !== undefined && (loginNumbers.get(client) ?? 0) <= removal.upTo;
  };
  const stopWatchingRemovals = config.auth
    ? registry.onRemoved(({ kind, name }) => {
        const now = Date.now();
        for (const [key, { until }] of removed) if (until <= now) removed.delete(key);
        removed.set(`${kind}:${name}`, { upTo: logins, until: now + REMOVAL_MEMORY_MS });
        for (const client of connected.values()) {
          if (!isRemoved(client)) continue;
          log.warn({ clientId: client.id, [kind]: name }, `client disconnected: its ${kind} was removed`);
          client.close();
        }
      })
    : () => {};

  aedes.on('client', (client) => {
    connected.set(client.id, client);
    if (isRemoved(client)) {
      log.warn({ clientId: client.id }, 'client disconnected: removed while it was logging in');
      client.close();
    }
  });
  aedes.on('clientDisconnect', (client) => {
    if (connected.get(client.id) === client) connected.delete(client.id);
    paces.get(client)?.close();
  });
  aedes.on('clientError', (client, err) => {
    // Aedes's own drain timeout, on its QoS 1/2 path (fanout.ts counts the rest).
    if (isDrainTimeout(err)) droppedSubscriber(client, 'drain_timeout');
    else log.debug({ clientId: client.id, err: err.message }, 'client error');
  });
  aedes.on('connectionError', (client, err) =>
    log.debug({ clientId: client?.id, err: err.message }, 'connection error'),
  );
  // A session-store failure (cluster mode) is emitted on the broker; unheard, it would end the process.
  (aedes as EventEmitter).on('error', (err: Error) =>
    log.error({ err: err.message }, 'mqtt session store error'),
  );

  /**
   * Gives a client's deliveries to the fan-out once, at its first subscription: Aedes binds them when
   * a subscription is added (restored ones too, which also pass through `authorizeSubscribe`), and a
   * client with no subscription is delivered nothing. An idle device that only publishes thus
   * carries none of it (~0.5 KiB per connection).
   */
  function takeDeliveries(client: Client): void {
    if (subscribers.has(client)) return;
    subscribers.add(client);
    // Its own subscriptions and duplicate counters (trimClient shared empty ones), before the fan-out
    // or a subscription holds on to them.
    prepareSubscriber(client);
    fanout.install(client);
  }

  // Per listener, not per connection: every closure or object made in `handle` is multiplied by the
  // number of idle devices (issue 8, bench/idle-memory.ts).
  const guardOptions = {} as Record<ListenerName, GuardOptions>;
  const connectionClosed = {} as Record<ListenerName, (this: unknown) => void>;
  for (const listener of ['tcp', 'tls', 'ws'] as const) {
    guardOptions[listener] = {
      maxPacketBytes: config.maxPacketBytes,
      onViolation: (err) => log.warn({ listener, err: err.message }, 'connection closed by the packet guard'),
    };
    // Also closes the Aedes client: it stands in for Aedes's own end-of-stream hooks (trimClient).
    connectionClosed[listener] = function closed(this: unknown) {
      metrics.connections.dec({ listener });
      closeClientOf(this);
    };
  }

  const noop = () => {};
  function publish(topic: string, payload: Buffer, qos: 0 | 1): void {
    aedes.publish({ cmd: 'publish', topic, payload, qos, retain: false, dup: false }, noop);
  }

  return {
    aedes,
    handle(stream, sink, listener, req, source) {
      metrics.connections.inc({ listener });
      const guarded = new GuardedStream(
        stream as GuardedStream['inner'],
        sink,
        guardOptions[listener],
        source,
      );
      // Not `req`: Aedes would keep the upgrade request (headers and all, ~1 KiB) for the connection's
      // life, and nothing reads it.
      const client = aedes.handle(guarded);
      trimClient(client);
      // A stream emits 'close' once; `on` spares the wrapper `once` allocates per connection. Added
      // after trimClient took Aedes's own hook off: a third listener would grow the list for good.
      guarded.on('close', connectionClosed[listener]);
      // The inner stream's listeners (websocket-stream's, the guard's) as a fast table.
      compactListeners(stream as EventEmitter);
      if (!config.auth) return;
      // The login throttle is per address.
      const address = (stream as { remoteAddress?: string }).remoteAddress ?? req?.socket.remoteAddress;
      if (address) addresses.set(client, address);
    },
    handleSocket(socket, listener) {
      metrics.connections.inc({ listener });
      const client = aedes.handle(guardSocket(socket, guardOptions[listener]) as Connection);
      trimClient(client);
      socket.on('close', connectionClosed[listener]);
      if (config.auth && socket.remoteAddress) addresses.set(client, socket.remoteAddress);
    },
    publish,
    client: (clientId) => connected.get(clientId),
    disconnect(clientId, why) {
      const client = connected.get(clientId);
      if (!client) return false;
      log.warn({ clientId, why }, 'client disconnected');
      client.close();
      return true;
    },
    close: () => {
      stopWatchingRemovals();
      return new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

/** The CN of a client certificate verified against BRIDGE_TLS_CA, if any. */
function verifiedCertificateName(client: Client): string | undefined {
  const conn: unknown = client.conn;
  // TLS sockets are handed to Aedes themselves (`handleSocket`); other streams wrap theirs.
  const socket = conn instanceof TLSSocket ? conn : conn instanceof GuardedStream ? conn.inner : undefined;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const cn = socket.getPeerCertificate().subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}
