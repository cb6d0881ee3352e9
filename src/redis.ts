/**
 * Room: shared. Redis connections for cluster mode (REDIS_URL) and their shared health.
 *
 * Every connection of the bridge (live stream publisher and reader, MQTT relay pub/sub, MQTT session
 * store) is made here and watched by one `RedisHealth`: `/readyz` is not ready while any of them is
 * down, and an outage is logged once when it starts and once when it ends (ioredis reports every
 * failed reconnect attempt; those go to debug), never once per attempt.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './log.js';

/** Longest wait between two reconnect attempts, ms. */
export const REDIS_MAX_RECONNECT_DELAY_MS = 2000;

/** Reconnect forever: 100, 200, … ms, capped at REDIS_MAX_RECONNECT_DELAY_MS. */
function retryStrategy(times: number): number {
  return Math.min(times * 100, REDIS_MAX_RECONNECT_DELAY_MS);
}

export class RedisHealth {
  private readonly connections = new Map<string, Redis>();
  private downSince: number | undefined;
  private closing = false;

  constructor(private readonly log: Logger) {}

  /**
   * Opens a connection named `name` (for logs and readiness) and waits until it is ready.
   * @param options ioredis options on top of ours (reconnect forever, no ready check delay).
   * @throws when Redis cannot be reached at start-up within `connectTimeoutMs` (default 10 s).
   */
  async connect(
    url: string,
    name: string,
    options: RedisOptions = {},
    connectTimeoutMs = 10_000,
  ): Promise<Redis> {
    const conn = new Redis(url, {
      retryStrategy,
      connectionName: `telebridge-${name}`,
      lazyConnect: true,
      ...options,
    });
    this.track(name, conn);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        conn.connect(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Redis at ${redactUrl(url)} not reachable within ${connectTimeoutMs} ms`)),
            connectTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      conn.disconnect();
      this.connections.delete(name);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return conn;
  }

  /** `ok: false` with the names of the connections that are down. */
  readiness(): { ok: boolean; reason?: string } {
    const down = [...this.connections].filter(([, c]) => c.status !== 'ready').map(([n]) => n);
    return down.length === 0 ? { ok: true } : { ok: false, reason: `redis unavailable (${down.join(', ')})` };
  }

  /** True while every connection is ready. */
  get up(): boolean {
    return this.readiness().ok;
  }

  /** Closes every connection without waiting for replies (pending commands are rejected). */
  close(): void {
    this.closing = true;
    for (const conn of this.connections.values()) conn.disconnect();
    this.connections.clear();
  }

  private track(name: string, conn: Redis): void {
    this.connections.set(name, conn);
    conn.on('error', (err: Error) => {
      if (this.closing) return;
      // The first error of a burst is logged by `wentDown`; the reconnect attempts are noise.
      this.log.debug({ redis: name, err: err.message }, 'redis connection error');
      if (conn.status !== 'ready') this.wentDown(name, err);
    });
    // 'reconnecting' (not 'close'): a connection closed on purpose (shutdown) never reconnects.
    conn.on('reconnecting', () => {
      if (!this.closing) this.wentDown(name, undefined);
    });
    conn.on('ready', () => {
      if (this.downSince === undefined || !this.up) return;
      this.log.warn({ downMs: Date.now() - this.downSince }, 'redis reachable again: cluster mode restored');
      this.downSince = undefined;
    });
  }

  private wentDown(name: string, err: Error | undefined): void {
    if (this.downSince !== undefined) return;
    this.downSince = Date.now();
    this.log.error(
      { redis: name, err: err?.message },
      'redis unreachable: not ready; serving local clients only (MQTT relay local, live fan-out paused, storage unaffected); reconnecting',
    );
  }
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
