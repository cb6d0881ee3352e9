/**
 * Aedes with telebridge's policy in its hooks. The broker owns no socket: listeners hand it guarded
 * streams (`handle`). Authentication, topic rights, the publish rate and the pipeline run in Aedes's
 * hooks; a message the pipeline rejects is acknowledged and then routed to a topic nobody can receive.
 */

import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client, type Connection } from 'aedes';
import type { Pipeline } from '../bridge/pipeline.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { SchemaRegistry } from '../schemas/registry.js';
import { Acl } from './acl-file.js';
import { DISCARD_TOPIC, isBrokerTopic, isHiddenFilter } from './broker-topics.js';
import { deliverAtMaxQos } from './conformance.js';
import { type ConnectRefusal, connectRefusal, MAX_CLIENT_ID_LENGTH } from './connect-check.js';
import {
  GuardedStream,
  type GuardOptions,
  guardSocket,
  type OutboundSink,
  type PausableSource,
} from './guard.js';
import { LoginThrottle } from './login-throttle.js';
import { PublishPace } from './publish-rate.js';
import type { Identity, Registry } from './registry.js';
import { canPublish, canSubscribe } from './rights.js';
import { releaseDeliveries } from './slow-subscriber.js';

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
  close(): Promise<void>;
}

/** Milliseconds a flooding client is refused after being disconnected. */
const FLOOD_BAN_MS = 30_000;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const { config, log, metrics, registry } = deps;
  const identities = new WeakMap<Client, Identity>();
  const refused = new WeakMap<Client, ConnectRefusal>();
  const addresses = new WeakMap<Client, string>();
  /** Clients whose delivery functions are wrapped (done at their first SUBSCRIBE, see `wrapDeliveries`). */
  const subscribers = new WeakSet<Client>();
  const banned = new Map<string, number>();
  const throttle = new LoginThrottle();
  /** BRIDGE_ACL_FILE: the rights of anonymous clients (config allows it only with BRIDGE_AUTH=off). */
  const anonymous = config.acl ? new Acl(config.acl.rules) : undefined;

  /** CONNACK 5 for a will on a topic the client may not publish to. */
  const willRefusal = (client: Client, identity: Identity | undefined): AuthenticateError | undefined => {
    const will = (client as unknown as { _will?: { topic: string } })._will;
    if (!will || canPublish(identity, will.topic, anonymous)) return undefined;
    return authError(`will topic '${will.topic}' is not allowed`, 5);
  };

  /** Per connection, made at its first rate-limited PUBLISH (an idle device carries none). */
  const paces = new WeakMap<Client, PublishPace>();
  const { deviceRate, deviceBurst } = config.limits;

  /**
   * The per-client publish rate (contract §3, publish-rate.ts): QoS 1/2 go on to `ingest` when their
   * token is due, the connection held meanwhile; QoS 0 over the rate is acknowledged as far as QoS 0
   * goes, routed nowhere and reported (`rate_limited`), and a flood of it is cut off and banned.
   */
  function limitRate(
    client: Client,
    packet: { qos: number; topic: string; retain: boolean },
    ingest: () => void,
    callback: (err: Error | null) => void,
  ): void {
    let pace = paces.get(client);
    if (!pace) {
      pace = new PublishPace(deviceRate, deviceBurst, client.conn as unknown as Readable);
      paces.set(client, pace);
    }
    if (packet.qos === 0) {
      const admission = pace.admit();
      if (admission === 'pass') {
        ingest();
        return;
      }
      deps.pipeline().rateLimited(client.id, packet.topic, `over ${deviceRate} messages/s`);
      discard(packet);
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
      // Aedes refreshes the keepalive as it parses a packet; a packet held here was received, so it
      // counts from when it goes on, or a long wait would look like a silent client ([MQTT-3.1.2-24]).
      (client as unknown as { _keepaliveTimer?: NodeJS.Timeout | null })._keepaliveTimer?.refresh();
      ingest();
    });
    if (paced === 'waits') metrics.publishesDelayed.inc();
    else if (paced === 'overflow') {
      log.warn({ clientId: client.id, waiting: held.backlog }, 'rate limit: too many messages waiting');
      // Closes the connection: nothing of it was acknowledged, the device sends it again.
      callback(new Error('too many messages waiting for the rate limit'));
    }
  }

  const aedes = await Aedes.createBroker({
    ...(deps.cluster ? { mq: deps.cluster.mq, persistence: deps.cluster.persistence } : {}),
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
      const refusal = connectRefusal(packet, config.limits.keepaliveLimitS);
      if (refusal) refused.set(client, refusal);
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
        if (bannedUntil > Date.now()) return done(authError('temporarily refused after flooding', 3), false);
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
          if (result.busy) return done(authError('too many logins from this address; retry later', 3), false);
          const { identity } = result;
          if (!identity) return done(authError('bad user name or password', 4), false);
          if (identity.kind === 'device' && client.id !== identity.id) {
            return done(authError(`client id must be the device id '${identity.id}'`, 2), false);
          }
          const willRefused = willRefusal(client, identity);
          if (willRefused) return done(willRefused, false);
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
      if (client && !canPublish(identity, packet.topic, anonymous)) {
        // [MQTT-3.3.5-2] a publish the server does not allow: MQTT 3.1.1 has no negative PUBACK,
        // so the connection is closed.
        return callback(new Error(`not authorized to publish to '${packet.topic}'`));
      }
      const ingest = () => {
        deps
          .pipeline()
          .handle(client?.id ?? '', packet.topic, packet.payload as Buffer)
          .then((outcome) => {
            // A client's publish to the broker's own `$` topics is acknowledged and dropped, as
            // Mosquitto does.
            if (outcome === 'discard' || isBrokerTopic(packet.topic)) discard(packet);
            callback(null);
          }, callback);
      };
      // The rate counts what the bridge ingests (mapped topics), as the client sends it. A will is
      // published as its client closes (`client.closed`): never held back, never dropped.
      if (!client || client.closed || deviceRate === 0 || !deps.schemas.match(packet.topic)) return ingest();
      limitRate(client, packet, ingest, callback);
    },

    authorizeSubscribe(client, subscription, callback) {
      wrapDeliveries(client);
      const identity = identities.get(client);
      if (isHiddenFilter(subscription.topic) || !canSubscribe(identity, subscription.topic, anonymous)) {
        return callback(null, null); // SUBACK 0x80
      }
      callback(null, subscription);
    },

    authorizeForward(_client, packet: AedesPublishPacket) {
      if (packet.topic === DISCARD_TOPIC) return null;
      // A granted wildcard subscription may still cover topics the ACL denies reading.
      return anonymous && !anonymous.canRead(packet.topic) ? null : packet;
    },
  });

  aedes.on('clientDisconnect', (client) => paces.get(client)?.close());
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
    handle(stream, sink, listener, req, source) {
      metrics.connections.inc({ listener });
      const guarded = new GuardedStream(
        stream as GuardedStream['inner'],
        sink,
        guardOptions[listener],
        source,
      );
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
    close: () => new Promise<void>((resolve) => aedes.close(() => resolve())),
  };
}

/** Routes an acknowledged message nowhere: no client can subscribe to DISCARD_TOPIC. */
function discard(packet: { topic: string; retain: boolean }): void {
  packet.topic = DISCARD_TOPIC;
  packet.retain = false;
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
