/**
 * Room: broker. Cluster mode for Aedes (REDIS_URL): the message relay between instances (`mq`, mqemitter-redis:
 * Redis pub/sub) and the MQTT session store (`persistence`, aedes-persistence-redis: subscriptions of
 * persistent sessions, retained messages, QoS 1 queues of offline persistent sessions, wills), shared
 * by every instance.
 *
 * Compatibility (checked against the installed packages): Aedes 1.2 requires a persistence whose
 * `setup` is an async function and calls it with promises. aedes-persistence-redis 11.2 exports a
 * callback wrapper by default, but ships the promise class itself in `asyncPersistence.js`; that is
 * the one used here. Two of its methods return async generators where Aedes 1.2 calls `.pipe()`
 * (`createRetainedStream*`): they are wrapped in `Readable.from`. `cleanIncoming` (QoS 2 only) is
 * feature-detected by Aedes and absent here.
 *
 * Relay and the pipeline: Aedes runs `authorizePublish` (where the pipeline validates and spools)
 * only for PUBLISH packets of its own clients; a message relayed from another instance arrives
 * through `mq` and goes straight to local subscribers. So each reading is stored once, by the
 * instance that accepted it.
 *
 * Redis down: the relay falls back to local delivery (`emit` goes to this instance's subscribers and
 * completes at once, so PUBACKs keep flowing and nothing waits on Redis); messages published
 * elsewhere during the outage do not reach this instance. Session-store operations are queued by
 * ioredis and fail after `PERSISTENCE_RETRIES` reconnect attempts: QoS 1 delivery to persistent
 * sessions, connects of persistent sessions and retained messages wait for Redis (bounded), while
 * storage never does — the pipeline spools before Aedes touches the session store.
 */
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import type { RedisHealth } from '../redis.js';
import type { RedisTarget } from '../redis-target.js';
import {
  checkRelayInternals,
  closeRelayNow,
  emitLocally,
  type MqEmitter,
  onRelayError,
  relayClosed,
  retainedStreamsAsReadable,
} from './aedes-internals.js';

export type { MqEmitter } from './aedes-internals.js';

const require = createRequire(import.meta.url);

/** Reconnect attempts a queued session-store command waits through before it fails. */
export const PERSISTENCE_RETRIES = 3;

type MqEmitterFactory = (opts: Record<string, unknown>) => MqEmitter;
type AsyncPersistenceClass = new (
  opts: Record<string, unknown>,
) => Parameters<typeof retainedStreamsAsReadable>[0];

export interface AedesCluster {
  /** For `Aedes.createBroker({ mq, persistence })`. */
  readonly mq: MqEmitter;
  readonly persistence: unknown;
  /** After `aedes.close()`: ends the session store's connection. */
  close(): Promise<void>;
}

/**
 * Builds Aedes's relay and session store on Redis. The connections are made (and watched) through
 * `health`, so `/readyz` and the outage log cover them.
 * @throws when Redis cannot be reached at start-up.
 */
export async function openAedesCluster(
  target: RedisTarget,
  health: RedisHealth,
  log: Logger,
): Promise<AedesCluster> {
  const pubConn = await health.connect(target, 'mqtt-relay-pub', {
    enableAutoPipelining: true,
    // Never queue relay publishes while Redis is away: emit() falls back to local delivery instead.
    enableOfflineQueue: false,
  });
  const subConn = await health.connect(target, 'mqtt-relay-sub', { autoResubscribe: true });
  const db = await health.connect(target, 'mqtt-sessions', { maxRetriesPerRequest: PERSISTENCE_RETRIES });

  const createMq = require('mqemitter-redis') as MqEmitterFactory;
  const inner = createMq({ pubConn, subConn, matchEmptyLevels: true });
  checkRelayInternals(inner);
  onRelayError(inner, (err) => log.debug({ err: err.message }, 'mqtt relay: redis error'));
  const mq = new LocalFallbackMq(inner, pubConn, log);

  const AsyncRedisPersistence =
    require('aedes-persistence-redis/asyncPersistence.js') as AsyncPersistenceClass;
  const persistence = new AsyncRedisPersistence({ conn: db });
  // Aedes 1.2 pipes retained messages (`stream.pipe`); this version yields an async generator.
  retainedStreamsAsReadable(persistence);

  return {
    mq,
    persistence,
    async close() {
      // The persistence's destroy() unsubscribes through the (already closed) relay: end the
      // connection directly instead.
      db.disconnect();
    },
  };
}

/**
 * mqemitter-redis with a local fallback: while the publishing connection is not ready, a message is
 * delivered to this instance's subscribers only, and the publisher's PUBACK does not wait for Redis.
 */
class LocalFallbackMq implements MqEmitter {
  private fallbacks = 0;

  constructor(
    private readonly inner: MqEmitter,
    private readonly pubConn: Redis,
    private readonly log: Logger,
  ) {}

  on(topic: string, listener: (packet: unknown, done: () => void) => void, done?: () => void): unknown {
    return this.inner.on(topic, listener, done);
  }

  removeListener(
    topic: string,
    listener: (packet: unknown, done: () => void) => void,
    done?: () => void,
  ): unknown {
    return this.inner.removeListener(topic, listener, done);
  }

  emit(packet: { topic: string }, done?: (err?: Error) => void): void {
    if (this.pubConn.status !== 'ready' && !relayClosed(this.inner)) {
      this.local(packet, done);
      return;
    }
    this.inner.emit(packet, (err) => {
      if (err && !relayClosed(this.inner))
        this.local(packet, done); // lost the connection in between
      else done?.(err);
    });
  }

  close(done: () => void): void {
    closeRelayNow(this.inner, this.pubConn, done);
  }

  private local(packet: { topic: string }, done?: (err?: Error) => void): void {
    if (this.fallbacks++ % 10_000 === 0) {
      this.log.debug({ topic: packet.topic }, 'mqtt relay: redis down, delivering locally only');
    }
    emitLocally(this.inner, packet, done);
  }
}
