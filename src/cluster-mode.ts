/**
 * Room: composition (with app.ts). Cluster mode (REDIS_URL): the Redis connections of one bridge
 * instance, made here and handed to the rooms that use them — Aedes's relay and session store
 * (broker/cluster.ts) and the live stream (bridge/live/broker-redis.ts) — all watched by one
 * `RedisHealth` (redis.ts).
 */
import { RedisLiveBroker, type StreamHistory } from './bridge/live/broker-redis.js';
import { type AedesCluster, openAedesCluster } from './broker/cluster.js';
import type { Logger } from './log.js';
import { RedisHealth } from './redis.js';
import { describeTarget, type RedisTarget, redactUrl } from './redis-target.js';

/** The live stream's key (RedisLiveBroker's default prefix). */
const LIVE_STREAM_KEY = 'telebridge:live:stream';

/** Everything cluster mode adds to one bridge instance. */
export interface ClusterMode {
  readonly target: RedisTarget;
  readonly health: RedisHealth;
  /** For `createBroker({ cluster })`. */
  readonly aedes: AedesCluster;
  /** For `createLiveChannel({ broker })`. */
  readonly live: RedisLiveBroker;
  /** Not ready while any Redis connection is down. */
  readiness(): { ok: boolean; reason?: string };
  /** After the broker and the live channel closed: ends every Redis connection. */
  close(): Promise<void>;
}

/**
 * Opens cluster mode for REDIS_URL: Aedes's relay and session store, and the live channel's stream.
 * (The cluster's registry and token store open on the same `health`: auth/open-auth.ts.)
 * @throws when Redis cannot be reached at start-up (the bridge does not start half-clustered).
 */
export async function openClusterMode(
  target: RedisTarget,
  live: { readonly historyCount: number; readonly historyBytes: number },
  log: Logger,
  /** The history store, fed by the live stream's reader from its first read on. */
  history?: StreamHistory,
): Promise<ClusterMode> {
  const health = new RedisHealth(log);
  try {
    const aedes = await openAedesCluster(target, health, log);
    const liveBroker = await RedisLiveBroker.open({
      redis: target,
      health,
      log,
      historyCount: live.historyCount,
      historyBytes: live.historyBytes,
      ...(history ? { history } : {}),
    });
    log.info(
      { redis: describeTarget(target) },
      'cluster mode: MQTT relay, sessions, live stream, devices, users and tokens on Redis',
    );
    return {
      target,
      health,
      aedes,
      live: liveBroker,
      readiness: () => health.readiness(),
      async close() {
        await liveBroker.close();
        await aedes.close();
        health.close();
      },
    };
  } catch (err) {
    health.close();
    throw err;
  }
}

/** The live stream's key and Redis, as the history store names its key space (a change empties it). */
export function liveStreamIdentity(url: string): string {
  return `${redactUrl(url)} ${LIVE_STREAM_KEY}`;
}
