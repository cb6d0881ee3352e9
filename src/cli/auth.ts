/**
 * Room: cli. The credentials a command acts on, opened as the bridge opens them (auth/open-auth.ts):
 * in the cluster's Redis when the configuration names one (REDIS_URL, REDIS_SENTINELS…: run the
 * command with the cluster's configuration), else in the data directory.
 */
import { type Auth, openAuth } from '../auth/open-auth.js';
import { loadConfig } from '../config.js';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import { describeTarget, type RedisTarget } from '../redis-target.js';

/** How long a command waits for Redis, ms (the contract wants an answer within 2 s when it is up). */
const REDIS_TIMEOUT_MS = 5000;

export const DATA_DIR_HELP = 'data directory, without REDIS_URL (default: BRIDGE_DATA_DIR or ./data)';

/**
 * Runs `use` with the credentials, and closes them (and any Redis connection) after. `env`: the
 * configuration to read (default: the process's environment).
 */
export async function withAuth<T>(
  options: { dataDir?: string; env?: NodeJS.ProcessEnv },
  use: (auth: Auth) => Promise<T>,
): Promise<T> {
  const config = loadConfig(options.env ?? process.env);
  const dataDir = options.dataDir ?? config.dataDir;
  // Loaded only for Redis: without it, a command must not pay for a Redis client's or pino's import.
  const health = config.redis
    ? new (await import('../redis.js')).RedisHealth((await import('../log.js')).createLogger('silent'))
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
    throw redisFailure(err, config.redis, 'is not reachable');
  }
  try {
    return await use(auth);
  } catch (err) {
    // Each change is one script in Redis: a failed command changed nothing.
    throw redisFailure(err, config.redis, 'failed');
  } finally {
    await auth.close();
    health?.close();
  }
}

/** A Redis error as one line for the user (TelebridgeError: exit 2); other errors as they are. */
function redisFailure(err: unknown, target: RedisTarget | undefined, what: string): unknown {
  if (err instanceof TelebridgeError || !target) return err;
  return new TelebridgeError(
    ERROR_CODES.registry,
    `the cluster's registry in Redis (${describeTarget(target)}) ${what}: ${(err as Error).message}`,
  );
}
