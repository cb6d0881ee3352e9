/**
 * Room: shared. Where the bridge's Redis is (REDIS_URL, REDIS_SENTINELS…), as configuration holds it:
 * no Redis client here, so reading the configuration never loads one (the CLI answers fast).
 */

/** Where the bridge's Redis is. */
export interface RedisTarget {
  /**
   * REDIS_URL. Without sentinels: the server. With sentinels: the password, database and TLS
   * (`rediss://`) used on the primary; its host and port are not used.
   */
  readonly url: string;
  /** REDIS_SENTINELS: asked for the primary's address; empty or absent = no Sentinel. */
  readonly sentinels?: readonly { readonly host: string; readonly port: number }[];
  /** REDIS_SENTINEL_NAME: the primary's name at the sentinels (`sentinel monitor <name> …`). */
  readonly sentinelName?: string;
  /** REDIS_SENTINEL_PASSWORD: the sentinels' own password (`requirepass` of sentinel.conf). */
  readonly sentinelPassword?: string;
}

/** The primary's name at the sentinels when REDIS_SENTINEL_NAME is unset (Redis's own examples use it). */
export const DEFAULT_SENTINEL_NAME = 'mymaster';

/** For messages: the URL without its password, or the sentinels and the primary's name. */
export function describeTarget(target: RedisTarget): string {
  if (!target.sentinels?.length) return redactUrl(target.url);
  const hosts = target.sentinels.map((s) => `${s.host}:${s.port}`).join(',');
  return `primary '${target.sentinelName ?? DEFAULT_SENTINEL_NAME}' of sentinels ${hosts}`;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis://?';
  }
}
