/**
 * The services a scale-out test runs its bridges on, started and stopped as one: a Redis (plain, or
 * a primary + replica + three sentinels), an InfluxDB 1.6 with one database, and the cluster's
 * credentials in that Redis (opened as the CLI opens them, to provision devices, users and tokens).
 * `env()` is a bridge's environment for this cluster; `stop()` ends everything, in reverse order.
 */
import type { Auth } from '../../src/auth/open-auth.js';
import type { RedisTarget } from '../../src/redis-target.js';
import { type InfluxdServer, startInfluxd } from './influx.js';
import {
  clusterAuth,
  type RedisServer,
  type SentinelGroup,
  startRedis,
  startSentinelGroup,
} from './redis.js';

export interface ClusterServices {
  readonly influx: InfluxdServer;
  readonly database: string;
  /** The Redis (plain mode): tests stop and restart it. */
  readonly redis: RedisServer | undefined;
  /** The Sentinel group (sentinel mode): tests fail it over. */
  readonly sentinels: SentinelGroup | undefined;
  readonly target: RedisTarget;
  /** The cluster's devices, users and tokens. */
  readonly auth: Auth;
  /** A bridge's environment for this cluster (Redis, InfluxDB v1 into `database`), plus `extra`. */
  env(extra?: Record<string, string>): Record<string, string>;
  stop(): Promise<void>;
}

/** `{ skip }` when a service binary is missing (and CI is not set). */
export async function startClusterServices(options: {
  database: string;
  /** A Sentinel group instead of one Redis. */
  sentinel?: boolean;
}): Promise<ClusterServices | { skip: string }> {
  const closers: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const close of closers.reverse()) await close();
  };
  try {
    const redis = options.sentinel ? undefined : await startRedis();
    const sentinels = options.sentinel ? await startSentinelGroup() : undefined;
    const started = redis ?? sentinels!;
    if ('skip' in started) return started;
    closers.push(() => started.stop());
    const influx = await startInfluxd({ database: options.database });
    if ('skip' in influx) {
      await stop();
      return influx;
    }
    closers.push(() => influx.stop());
    const target: RedisTarget = 'target' in started ? started.target : { url: started.url };
    const auth = await clusterAuth(target);
    closers.push(() => auth.close());
    const redisEnv: Record<string, string> =
      'env' in started ? started.env : { REDIS_URL: (started as RedisServer).url };
    return {
      influx,
      database: options.database,
      redis: redis && !('skip' in redis) ? redis : undefined,
      sentinels: sentinels && !('skip' in sentinels) ? sentinels : undefined,
      target,
      auth,
      env: (extra = {}) => ({
        ...redisEnv,
        INFLUX_URL: influx.url,
        INFLUX_API: 'v1',
        INFLUX_DATABASE: options.database,
        INFLUX_FLUSH_INTERVAL_MS: '50',
        INFLUX_SELF_METRICS_MS: '0',
        ...extra,
      }),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
