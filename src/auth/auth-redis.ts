/**
 * Room: auth. Where the cluster keeps its credentials (cluster mode, REDIS_URL): devices, service
 * users, token revocations and the token signing key in Redis, shared by every instance and by the
 * CLI; and the change channel that tells every instance about a change at once.
 *
 * ```
 * <prefix>:devices    hash   id → JSON { salt, hash, createdAt }           (scrypt hashes, as in the file)
 * <prefix>:users      hash   name → JSON { salt, hash, createdAt, publish, subscribe }
 * <prefix>:revoked    zset   jti, score = the token's expiry (Unix s)
 * <prefix>:token-key  string the HS256 key, base64url (made once, by whoever needs it first)
 * <prefix>:epoch      string a random id of this Redis's credentials (made once; see below)
 * <prefix>:changes    pub/sub channel: one JSON `AuthChange` per change, published by the same Lua
 *                     script that makes the change (atomic: no change without its message)
 * ```
 *
 * An instance caches what it reads and drops a cached entry when its change message arrives. Pub/sub
 * is not queued: a message sent while this instance's subscriber was reconnecting (a Redis restart,
 * a Sentinel failover) is lost, so after every reconnect the subscriber re-subscribes first and then
 * asks its listeners to resynchronise (`onResync`) — they re-read what they cached.
 *
 * A Redis that comes back empty (restarted without persistence, or flushed) has lost the cluster's
 * credentials: that is told apart from removals by the epoch, which each watching instance reads at
 * start and compares at every resync. Missing or different means lost — whichever instance noticed
 * first and made a new one, the others still see a different one (the token key could not say so:
 * the first instance puts it back, and the next one to check took the empty registry for removals).
 * Then nothing is announced as removed (connected clients stay), the loss is logged, the instances
 * put their token key back, and new logins are refused until the registry is restored
 * (`telebridge registry import`, or provisioning again).
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import type { RedisHealth } from '../redis.js';
import type { RedisTarget } from '../redis-target.js';

/** Default key prefix of the cluster's auth state. */
export const AUTH_KEY_PREFIX = 'telebridge:auth';

export type AuthChange =
  | { readonly op: 'set' | 'del'; readonly kind: 'device' | 'user'; readonly names: readonly string[] }
  | { readonly op: 'revoke'; readonly jtis: readonly string[]; readonly exps: readonly number[] }
  | { readonly op: 'key' };

export interface AuthKeys {
  readonly devices: string;
  readonly users: string;
  readonly revoked: string;
  readonly tokenKey: string;
  readonly epoch: string;
  readonly changes: string;
}

export class AuthRedis {
  readonly keys: AuthKeys;
  private readonly changeListeners = new Set<(change: AuthChange) => void>();
  private readonly resyncListeners = new Set<(lost: boolean) => void>();
  private readonly downListeners = new Set<() => void>();
  private subscribed = false;
  /** The epoch this instance knows (watching instances only). */
  private epoch: string | undefined;

  private constructor(
    /** Commands (reads, change scripts). */
    readonly cmd: Redis,
    /** The change channel's subscriber; absent when not watching (the CLI). */
    private readonly sub: Redis | undefined,
    prefix: string,
    private readonly log: Logger | undefined,
  ) {
    this.keys = {
      devices: `${prefix}:devices`,
      users: `${prefix}:users`,
      revoked: `${prefix}:revoked`,
      tokenKey: `${prefix}:token-key`,
      epoch: `${prefix}:epoch`,
      changes: `${prefix}:changes`,
    };
  }

  /**
   * Connects through `health` (so `/readyz` and the outage log cover these connections).
   * `watch`: subscribe to the change channel (a bridge instance); the CLI only makes changes.
   * @throws when Redis cannot be reached.
   */
  static async open(
    target: RedisTarget,
    health: RedisHealth,
    options: { watch: boolean; prefix?: string; connectTimeoutMs?: number; log?: Logger },
  ): Promise<AuthRedis> {
    const timeout = options.connectTimeoutMs ?? 10_000;
    // A login waits for a cache miss; bounded, so a Redis outage refuses logins (CONNACK 3) instead
    // of holding them.
    const cmd = await health.connect(target, 'auth', { maxRetriesPerRequest: 2 }, timeout);
    const sub = options.watch ? await health.connect(target, 'auth-changes', {}, timeout) : undefined;
    const auth = new AuthRedis(cmd, sub, options.prefix ?? AUTH_KEY_PREFIX, options.log);
    if (sub) await auth.watch(sub);
    return auth;
  }

  /** True while changes reach this instance (subscribed and connected): cached entries are fresh. */
  get watching(): boolean {
    return this.subscribed && this.sub?.status === 'ready';
  }

  onChange(listener: (change: AuthChange) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /**
   * After the change channel was interrupted: messages may have been missed. `lost`: Redis came
   * back without the cluster's credentials (see the header).
   */
  onResync(listener: (lost: boolean) => void): () => void {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  /** The change channel was interrupted: stop trusting caches until `onResync`. */
  onDown(listener: () => void): () => void {
    this.downListeners.add(listener);
    return () => this.downListeners.delete(listener);
  }

  close(): void {
    this.changeListeners.clear();
    this.resyncListeners.clear();
    this.downListeners.clear();
    this.sub?.disconnect();
    this.cmd.disconnect();
  }

  private async watch(sub: Redis): Promise<void> {
    sub.on('message', (channel: string, text: string) => {
      if (channel !== this.keys.changes) return;
      const change = parseChange(text);
      if (change) for (const listener of this.changeListeners) listener(change);
    });
    sub.on('close', () => {
      if (!this.subscribed) return;
      this.subscribed = false;
      for (const listener of this.downListeners) listener();
    });
    sub.on('ready', () => {
      if (this.subscribed) return;
      // ioredis re-subscribes by itself; our own SUBSCRIBE answers after its, so once it resolves
      // nothing published from then on is missed, and the listeners can re-read what they cached.
      sub
        .subscribe(this.keys.changes)
        .then(async () => {
          const epoch = await this.cmd.get(this.keys.epoch);
          if (epoch === this.epoch) return false;
          this.epoch = await this.claimEpoch();
          return true;
        })
        .then(
          (lost) => {
            this.subscribed = true;
            if (lost) {
              this.log?.error(
                { key: this.keys.tokenKey },
                "redis came back without the cluster's devices, users and token key (restarted without persistence?): connected clients are kept, new logins are refused until the registry is restored (telebridge registry import)",
              );
            }
            for (const listener of this.resyncListeners) listener(lost);
          },
          () => undefined, // closed again meanwhile: the next 'ready' retries
        );
    });
    await sub.subscribe(this.keys.changes);
    this.epoch = await this.claimEpoch();
    this.subscribed = true;
  }

  /** The epoch in Redis, made now (a new random id) if there is none. */
  private async claimEpoch(): Promise<string | undefined> {
    await this.cmd.set(this.keys.epoch, randomBytes(12).toString('base64url'), 'NX');
    return (await this.cmd.get(this.keys.epoch)) ?? undefined;
  }
}

function parseChange(text: string): AuthChange | undefined {
  try {
    const change = JSON.parse(text) as AuthChange;
    if (change.op === 'key') return change;
    if (change.op === 'revoke')
      return Array.isArray(change.jtis) && Array.isArray(change.exps) ? change : undefined;
    if ((change.op === 'set' || change.op === 'del') && Array.isArray(change.names)) return change;
  } catch {}
  return undefined;
}
