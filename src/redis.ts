/**
 * Room: shared. Redis connections for cluster mode (REDIS_URL) and their shared health.
 *
 * Every connection of the bridge (live stream publisher and reader, MQTT relay pub/sub, MQTT session
 * store, the cluster registry and its change channel) is made here, to one `RedisTarget` — a server
 * (REDIS_URL) or the primary that Redis Sentinel names (REDIS_SENTINELS) — and watched by one
 * `RedisHealth`: `/readyz` is not ready while any of them is down, and an outage is logged once when
 * it starts and once when it ends (ioredis reports every failed reconnect attempt; those go to
 * debug), never once per attempt.
 *
 * Sentinel: ioredis asks the sentinels for the primary's address on every (re)connect. `RedisHealth`
 * listens to the sentinels' `+switch-master` announcements (one subscription per process) and has
 * every connection reconnect, so none stays on a demoted primary that still accepts writes (a planned
 * failover demotes it only seconds later); one that a demoted primary answers with `READONLY`
 * reconnects too. After a failover every connection ends up on the new primary; while none is
 * reachable the connections are down and `/readyz` says so.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './log.js';
import { DEFAULT_SENTINEL_NAME, describeTarget, type RedisTarget } from './redis-target.js';

/** The ioredis options that reach `target` (on top of the per-connection ones). */
export function targetOptions(target: RedisTarget): RedisOptions {
  if (!target.sentinels?.length) return {};
  return {
    sentinels: target.sentinels.map((s) => ({ host: s.host, port: s.port })),
    name: target.sentinelName ?? DEFAULT_SENTINEL_NAME,
    ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
    // Not ioredis's `failoverDetector` (off by default): its subscription outlives the connection it
    // was made for, and an announcement that arrives while a reconnect is asking the sentinels aborts
    // that reconnect for good (status `end`, "Connection is closed", never retried) — the planned-
    // failover test lost a connection that way in 1 run of 5. RedisHealth follows the switch instead.
    // A demoted primary answers writes with READONLY: reconnect (through the sentinels) and resend.
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
    sentinelRetryStrategy: retryStrategy,
  };
}

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
  /** Sentinel mode: one subscriber per sentinel to `+switch-master`. */
  private sentinelWatch: Redis[] | undefined;
  /** The last switch followed (every sentinel announces it). */
  private lastSwitch = '';

  constructor(private readonly log: Logger) {}

  /**
   * Opens a connection named `name` (for logs and readiness) and waits until it is ready.
   * @param options ioredis options on top of ours (reconnect forever, no ready check delay).
   * @throws when Redis cannot be reached at start-up within `connectTimeoutMs` (default 10 s).
   */
  async connect(
    target: RedisTarget,
    name: string,
    options: RedisOptions = {},
    connectTimeoutMs = 10_000,
  ): Promise<Redis> {
    const conn = new Redis(target.url, {
      retryStrategy,
      connectionName: `telebridge-${name}`,
      lazyConnect: true,
      ...targetOptions(target),
      ...options,
    });
    this.track(name, conn);
    this.watchSentinels(target);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        conn.connect(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new Error(`Redis (${describeTarget(target)}) not reachable within ${connectTimeoutMs} ms`),
              ),
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
    for (const conn of this.sentinelWatch ?? []) conn.disconnect();
  }

  /**
   * Sentinel mode: follows `+switch-master` (`<name> <old ip> <old port> <new ip> <new port>`) of
   * the primary, from every sentinel (any one may be down), for the process's life.
   */
  private watchSentinels(target: RedisTarget): void {
    if (this.sentinelWatch || !target.sentinels?.length) return;
    const name = target.sentinelName ?? DEFAULT_SENTINEL_NAME;
    this.sentinelWatch = target.sentinels.map(({ host, port }) => {
      const watch = new Redis({
        host,
        port,
        ...(target.sentinelPassword ? { password: target.sentinelPassword } : {}),
        retryStrategy,
        connectionName: 'telebridge-sentinel-watch',
      });
      // Not part of readiness: a sentinel down is not Redis down. ioredis re-subscribes after reconnects.
      watch.on('error', (err: Error) =>
        this.log.debug({ sentinel: `${host}:${port}`, err: err.message }, 'sentinel watch'),
      );
      watch.subscribe('+switch-master').catch(() => undefined);
      watch.on('message', (_channel: string, text: string) => {
        const [master, , , newHost, newPort] = text.split(' ');
        if (master === name) this.followSwitch(`${newHost}:${newPort}`);
      });
      return watch;
    });
  }

  /**
   * Every connection reconnects through the sentinels. A ready one now; one that is connecting once
   * it is ready, unless it reached the new primary (it may have been told the old one just before
   * the switch): interrupting a connect would end it for good (ioredis does not retry a connect
   * aborted by disconnect()).
   */
  private followSwitch(primary: string): void {
    if (this.closing || primary === this.lastSwitch) return;
    this.lastSwitch = primary;
    this.log.warn({ primary }, 'redis: the sentinels switched the primary; reconnecting to it');
    for (const conn of this.connections.values()) {
      if (conn.status === 'ready' || conn.status === 'connect') conn.disconnect(true);
      else if (conn.status === 'connecting')
        conn.once('ready', () => {
          // Once, so a primary known by another address (a hostname) costs one reconnect, not a loop.
          if (`${conn.stream?.remoteAddress}:${conn.stream?.remotePort}` !== primary) conn.disconnect(true);
        });
      // 'reconnecting': its next attempt asks the sentinels, after the switch.
    }
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
