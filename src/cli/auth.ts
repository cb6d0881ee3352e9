/**
 * Room: cli. The credentials a command acts on, opened as the bridge opens them (auth/open-auth.ts):
 * in the cluster's Redis when the configuration names one (REDIS_URL, REDIS_SENTINELS…: run the
 * command with the cluster's configuration), else in the data directory.
 */
import { type Auth, openAuth } from '../auth/open-auth.js';
import { loadConfig } from '../config.js';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import { createLogger } from '../log.js';
import { describeTarget } from '../redis-target.js';

/** How long a command waits for Redis, ms (the contract wants an answer within 2 s when it is up). */
const REDIS_TIMEOUT_MS = 5000;

export const DATA_DIR_HELP = 'data directory, without REDIS_URL (default: BRIDGE_DATA_DIR or ./data)';

/** Runs `use` with the credentials, and closes them (and any Redis connection) after. */
export async function withAuth<T>(
  options: { dataDir?: string },
  use: (auth: Auth) => Promise<T>,
): Promise<T> {
  const config = loadConfig(process.env);
  const dataDir = options.dataDir ?? config.dataDir;
  // Loaded only for Redis: the other commands must not pay for a Redis client's import.
  const health = config.redis
    ? new (await import('../redis.js')).RedisHealth(createLogger('silent'))
    : undefined;
  let auth: Auth;
  try {
    auth = await openAuth({
      dataDir,
      ...(config.redis && health
        ? { redis: { target: config.redis, health, watch: false, connectTimeoutMs: REDIS_TIMEOUT_MS } }
        : {}),
    });
  } catch (err) {
    health?.close();
    if (err instanceof TelebridgeError || !config.redis) throw err;
    throw new TelebridgeError(
      ERROR_CODES.registry,
      `the cluster's registry in Redis (${describeTarget(config.redis)}) is not reachable: ${(err as Error).message}`,
    );
  }
  try {
    return await use(auth);
  } finally {
    await auth.close();
    health?.close();
  }
}
