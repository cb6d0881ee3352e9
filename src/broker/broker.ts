/**
 * Aedes with telebridge's policy in its hooks. The broker owns no socket: listeners hand it guarded
 * streams (`handle`). Authentication, topic rights and the pipeline run in Aedes's hooks; a message
 * the pipeline rejects is acknowledged and then routed to a topic nobody can receive.
 */

import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client, type Connection } from 'aedes';
import type { Pipeline } from '../bridge/pipeline.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { SchemaRegistry } from '../schemas/registry.js';
import { deliverAtMaxQos } from './conformance.js';
import { GuardedStream, type GuardOptions, guardSocket, type OutboundSink } from './guard.js';
import { LoginThrottle } from './login-throttle.js';
import type { Identity, Registry } from './registry.js';
import { canPublish, canSubscribe } from './rights.js';
import { releaseDeliveries } from './slow-subscriber.js';

/** Where rejected messages go after their PUBACK: a `$` topic no filter of a client can reach. */
export const DISCARD_TOPIC = '$telebridge/discarded';

export type ListenerName = 'tcp' | 'tls' | 'ws';

export interface BrokerDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly registry: Registry;
  readonly schemas: SchemaRegistry;
  readonly pipeline: () => Pipeline;
  /** Cluster mode (REDIS_URL): Aedes's relay and session store on Redis (cluster.ts). Default: in memory. */
  readonly cluster?: { readonly mq: unknown; readonly persistence: unknown };
}

export interface Broker {
  readonly aedes: Aedes;
  /** Wraps a client stream in the packet guard and hands it to Aedes (MQTT over WebSocket). */
  handle(stream: Connection, sink: OutboundSink, listener: ListenerName, req?: IncomingMessage): void;
  /** Guards a TCP or TLS socket in place and hands the socket itself to Aedes (`guardSocket`). */
  handleSocket(socket: Socket, listener: Extract<ListenerName, 'tcp' | 'tls'>): void;
  /** Publishes from the bridge itself (rejections, commands). */
  publish(topic: string, payload: Buffer, qos: 0 | 1): void;
  disconnect(clientId: string, why: string): void;
  close(): Promise<void>;
}

/** Longest client id, characters (Aedes's `maxClientsIdLength` only applies to MQTT 3.1). */
const MAX_CLIENT_ID_LENGTH = 128;

/** Milliseconds a flooding client is refused after being disconnected. */
const FLOOD_BAN_MS = 30_000;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const { config, log, metrics, registry } = deps;
  const identities = new WeakMap<Client, Identity>();
  const refusedClientId = new WeakSet<Client>();
  const addresses = new WeakMap<Client, string>();
  /** The will topic of each CONNECT, from the packet (Aedes keeps it only in a private field). */
  const willTopics = new WeakMap<Client, string>();
  /** Clients whose delivery functions are wrapped (done at their first SUBSCRIBE, see `wrapDeliveries`). */
  const subscribers = new WeakSet<Client>();
  const banned = new Map<string, number>();
  const throttle = new LoginThrottle();

  const aedes = await Aedes.createBroker({
    ...(deps.cluster ? { mq: deps.cluster.mq, persistence: deps.cluster.persistence } : {}),
    concurrency: 100,
    // A subscriber that stops reading is dropped within seconds instead of stalling delivery.
    drainTimeout: config.limits.drainTimeoutMs,
    connectTimeout: config.limits.connectTimeoutMs,
    keepaliveLimit: config.limits.keepaliveLimitS,
    maxClientsIdLength: MAX_CLIENT_ID_LENGTH,
    maxTopicLevels: 32,
    heartbeatInterval: 60_000,

    preConnect(client, packet, callback) {
      // [MQTT-3.1.3-8] a zero-byte client id with CleanSession 0 gets CONNACK 2; Aedes would invent one.
      if (!packet.clientId && !packet.clean) refusedClientId.add(client);
      // [MQTT-3.1.3-5] servers may refuse long client ids: CONNACK 2 like Aedes does for 3.1.
      if (packet.clientId && packet.clientId.length > MAX_CLIENT_ID_LENGTH) refusedClientId.add(client);
      if (packet.will) willTopics.set(client, packet.will.topic);
      callback(null, true);
    },

    authenticate(client, username, password, done) {
      if (refusedClientId.has(client))
        return done(authError('client id refused: empty with clean session 0, or too long', 2), false);
      const bannedUntil = banned.get(client.id);
      if (bannedUntil !== undefined) {
        if (bannedUntil > Date.now()) return done(authError('temporarily refused after flooding', 3), false);
        banned.delete(client.id);
      }
      if (!config.auth) return done(null, true);
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
          if (result.busy) return done(authError('too many logins from this address; retry later', 3), false);
          const { identity } = result;
          if (!identity) return done(authError('bad user name or password', 4), false);
          if (identity.kind === 'device' && client.id !== identity.id) {
            return done(authError(`client id must be the device id '${identity.id}'`, 2), false);
          }
          // A will is refused here, not when it is published: another instance publishes the stored
          // will of a client whose instance died (cluster mode) with no client to check.
          const willTopic = willTopics.get(client);
          if (willTopic !== undefined && !canPublish(identity, willTopic)) {
            return done(authError(`will topic '${willTopic}' is not allowed`, 5), false);
          }
          identities.set(client, identity);
          done(null, true);
        })
        .catch((err: Error) => {
          log.error({ err, clientId: client.id }, 'authentication failed with an error');
          done(authError('server unavailable', 3), false);
        });
    },

    authorizePublish(client, packet, callback) {
      // Aedes publishes wills of clients that are gone with client = null; their rights were
      // checked at CONNECT.
      const identity = client ? identities.get(client) : undefined;
      if (client && config.auth && !canPublish(identity, packet.topic)) {
        // [MQTT-3.3.5-2] a publish the server does not allow: MQTT 3.1.1 has no negative PUBACK,
        // so the connection is closed.
        return callback(new Error(`not authorized to publish to '${packet.topic}'`));
      }
      if (packet.topic.startsWith('$')) return callback(new Error('publishing to $ topics is not allowed'));
      deps
        .pipeline()
        .handle(client?.id ?? '', packet.topic, packet.payload as Buffer)
        .then((outcome) => {
          if (outcome === 'discard') {
            packet.topic = DISCARD_TOPIC;
            packet.retain = false;
          }
          callback(null);
        }, callback);
    },

    authorizeSubscribe(client, subscription, callback) {
      wrapDeliveries(client);
      const identity = identities.get(client);
      if (
        subscription.topic.startsWith('$telebridge') ||
        (config.auth && !canSubscribe(identity, subscription.topic))
      ) {
        return callback(null, null); // SUBACK 0x80
      }
      callback(null, subscription);
    },

    authorizeForward(_client, packet: AedesPublishPacket) {
      return packet.topic === DISCARD_TOPIC ? null : packet;
    },
  });

  aedes.on('clientDisconnect', (client) => deps.pipeline().forget(client.id));
  aedes.on('clientError', (client, err) =>
    log.debug({ clientId: client.id, err: err.message }, 'client error'),
  );
  aedes.on('connectionError', (client, err) =>
    log.debug({ clientId: client?.id, err: err.message }, 'connection error'),
  );

  /**
   * Wraps a client's delivery functions once, at its first subscription: Aedes binds them when a
   * subscription is added (restored ones too, which also pass through `authorizeSubscribe`), and a
   * client with no subscription is delivered nothing. An idle device that only publishes thus
   * carries none of these closures (~0.5 KiB per connection).
   */
  function wrapDeliveries(client: Client): void {
    if (subscribers.has(client)) return;
    subscribers.add(client);
    // [MQTT-3.3.5-1] before any subscription (restored ones included) binds its delivery function.
    deliverAtMaxQos(client);
    // One subscriber that stops reading must not hold up routing for everyone (slow-subscriber.ts).
    releaseDeliveries(client, config.limits.subscriberBufferBytes, (queued) =>
      log.warn({ clientId: client.id, queued }, 'slow subscriber disconnected'),
    );
  }

  // Per listener, not per connection: every closure or object made in `handle` is multiplied by the
  // number of idle devices (issue 8, bench/idle-memory.ts).
  const guardOptions = {} as Record<ListenerName, GuardOptions>;
  const connectionClosed = {} as Record<ListenerName, () => void>;
  for (const listener of ['tcp', 'tls', 'ws'] as const) {
    guardOptions[listener] = {
      maxPacketBytes: config.maxPacketBytes,
      onViolation: (err) => log.warn({ listener, err: err.message }, 'connection closed by the packet guard'),
    };
    connectionClosed[listener] = () => metrics.connections.dec({ listener });
  }

  const noop = () => {};
  return {
    aedes,
    handle(stream, sink, listener, req) {
      metrics.connections.inc({ listener });
      const guarded = new GuardedStream(stream as GuardedStream['inner'], sink, guardOptions[listener]);
      // A stream emits 'close' once; `on` spares the wrapper `once` allocates per connection.
      guarded.on('close', connectionClosed[listener]);
      // Not `req`: Aedes would keep the upgrade request (headers and all, ~1 KiB) for the connection's
      // life, and nothing reads it.
      const client = aedes.handle(guarded);
      if (!config.auth) return;
      // The login throttle is per address.
      const address = (stream as { remoteAddress?: string }).remoteAddress ?? req?.socket.remoteAddress;
      if (address) addresses.set(client, address);
    },
    handleSocket(socket, listener) {
      metrics.connections.inc({ listener });
      socket.on('close', connectionClosed[listener]);
      const client = aedes.handle(guardSocket(socket, guardOptions[listener]) as Connection);
      if (config.auth && socket.remoteAddress) addresses.set(client, socket.remoteAddress);
    },
    publish(topic, payload, qos) {
      aedes.publish({ cmd: 'publish', topic, payload, qos, retain: false, dup: false }, noop);
    },
    disconnect(clientId, why) {
      banned.set(clientId, Date.now() + FLOOD_BAN_MS);
      log.warn({ clientId, why }, 'client disconnected');
      (aedes as unknown as { clients: Record<string, Client> }).clients[clientId]?.close();
    },
    close: () => new Promise<void>((resolve) => aedes.close(() => resolve())),
  };
}

/** The CN of a client certificate verified against BRIDGE_TLS_CA, if any. */
function verifiedCertificateName(client: Client): string | undefined {
  const conn = (client as unknown as { conn?: { inner?: unknown } }).conn;
  // TLS sockets are handed to Aedes themselves (`handleSocket`); other streams wrap theirs.
  const socket = conn instanceof TLSSocket ? conn : conn?.inner;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const cn = socket.getPeerCertificate().subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}
