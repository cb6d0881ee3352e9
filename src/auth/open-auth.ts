/**
 * Room: auth. The credentials a process works with — the device and user registry, and the token
 * service over its store — from the data directory (one instance), or from Redis (cluster mode,
 * REDIS_URL: every instance and the CLI see the same ones). The bridge and the CLI both open them
 * here, so they always agree on where credentials live.
 */
import type { Logger } from '../log.js';
import type { RedisHealth } from '../redis.js';
import type { RedisTarget } from '../redis-target.js';
import { AuthRedis } from './auth-redis.js';
import type { Registry } from './registry.js';
import { FileRegistry } from './registry-file.js';
import { RedisRegistry } from './registry-redis.js';
import type { TokenStore } from './token-store.js';
import { FileTokenStore } from './token-store-file.js';
import { RedisTokenStore } from './token-store-redis.js';
import { createTokenService, type TokenService } from './tokens.js';

export interface Auth {
  readonly registry: Registry;
  readonly tokens: TokenService;
  /** The store behind `tokens` (key, revocations), for `registry import`. */
  readonly tokenStore: TokenStore;
  /** Where they are, for messages: the data directory or the Redis. */
  readonly where: 'data-dir' | 'redis';
  close(): Promise<void>;
}

export interface OpenAuthOptions {
  readonly dataDir: string;
  /** Cluster mode. `watch`: follow changes made elsewhere (a bridge instance); the CLI does not. */
  readonly redis?: {
    readonly target: RedisTarget;
    readonly health: RedisHealth;
    readonly watch: boolean;
    /** Key prefix (tests); default `telebridge:auth`. */
    readonly prefix?: string;
    readonly connectTimeoutMs?: number;
    /** Where a loss of the cluster's credentials is reported (auth-redis.ts). */
    readonly log?: Logger;
  };
}

/** @throws when Redis cannot be reached, or a stored file is not what it should be. */
export async function openAuth(options: OpenAuthOptions): Promise<Auth> {
  const { redis } = options;
  if (!redis) {
    const registry = await FileRegistry.open(options.dataDir);
    const tokenStore = await FileTokenStore.open(options.dataDir);
    return {
      registry,
      tokenStore,
      tokens: createTokenService(tokenStore),
      where: 'data-dir',
      async close() {
        await registry.close();
        await tokenStore.close();
      },
    };
  }
  const auth = await AuthRedis.open(redis.target, redis.health, {
    watch: redis.watch,
    ...(redis.prefix ? { prefix: redis.prefix } : {}),
    ...(redis.connectTimeoutMs ? { connectTimeoutMs: redis.connectTimeoutMs } : {}),
    ...(redis.log ? { log: redis.log } : {}),
  });
  try {
    const registry = new RedisRegistry(auth);
    const tokenStore = await RedisTokenStore.open(auth);
    return {
      registry,
      tokenStore,
      tokens: createTokenService(tokenStore),
      where: 'redis',
      async close() {
        await registry.close();
        await tokenStore.close();
        auth.close();
      },
    };
  } catch (err) {
    auth.close();
    throw err;
  }
}
