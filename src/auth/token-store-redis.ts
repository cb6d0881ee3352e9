/**
 * Room: auth. The cluster's token key and revocations (cluster mode), in Redis (auth-redis.ts): the
 * key is made once by whoever needs it first (`SET NX`), so every instance signs and verifies with
 * the same key; revocations are a sorted set scored by expiry.
 *
 * A bridge instance (watching) keeps the revocations in memory — loaded at start, added to by the
 * change channel, re-read after the channel was interrupted (and used meanwhile, so browsers connect
 * during a Redis outage) — so verifying a token costs no round trip; the CLI (not watching) asks
 * Redis.
 */
import { randomBytes } from 'node:crypto';
import type { AuthChange, AuthRedis } from './auth-redis.js';
import { type TokenStore, tokenError } from './token-store.js';

/** KEYS: revoked zset. ARGV: channel, now, then jti/expiry pairs. Prunes, adds (a later expiry wins), announces. */
const REVOKE_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
local jtis = {}
local exps = {}
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], 'GT', ARGV[i + 1], ARGV[i])
  jtis[#jtis + 1] = ARGV[i]
  exps[#exps + 1] = tonumber(ARGV[i + 1])
end
redis.call('PUBLISH', ARGV[1], cjson.encode({op = 'revoke', jtis = jtis, exps = exps}))
return #jtis`;

/** KEYS: token key. ARGV: channel, key. Replaces the key and announces it. */
const SET_KEY_SCRIPT = `
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[1], cjson.encode({op = 'key'}))
return 1`;

export class RedisTokenStore implements TokenStore {
  /** jti → expiry, while watching; undefined means ask Redis. */
  private revoked: Map<string, number> | undefined;
  private readonly unsubscribe: (() => void)[] = [];

  private constructor(
    private readonly redis: AuthRedis,
    private key: Uint8Array,
  ) {}

  /** Reads (making it if needed) the cluster's key; when `redis` watches, loads the revocations. */
  static async open(redis: AuthRedis): Promise<RedisTokenStore> {
    const { tokenKey } = redis.keys;
    await redis.cmd.set(tokenKey, randomBytes(32).toString('base64url'), 'NX'); // made once, by the first
    const store = new RedisTokenStore(redis, await readKey(redis));
    if (redis.watching) {
      store.unsubscribe.push(
        redis.onChange((change) => store.changed(change)),
        redis.onResync((lost) => {
          // Lost (Redis came back empty): put the key back, so tokens keep verifying everywhere.
          const restore = lost ? store.adoptKey(store.key, false) : Promise.resolve(true);
          restore.then(() => store.reload()).catch(() => undefined); // until then, verification asks Redis
        }),
      );
      await store.reload();
    }
    return store;
  }

  signingKey(): Uint8Array {
    return this.key;
  }

  async isRevoked(jti: string): Promise<boolean> {
    const now = Math.floor(Date.now() / 1000);
    if (this.revoked) return (this.revoked.get(jti) ?? -1) >= now;
    const score = await this.redis.cmd.zscore(this.redis.keys.revoked, jti);
    return score !== null && Number(score) >= now;
  }

  async revoke(entries: ReadonlyMap<string, number>): Promise<void> {
    if (entries.size === 0) return;
    const { revoked, changes } = this.redis.keys;
    const now = Math.floor(Date.now() / 1000);
    const args = [...entries].flatMap(([jti, exp]) => [jti, String(exp)]);
    await this.redis.cmd.eval(REVOKE_SCRIPT, 1, revoked, changes, String(now), ...args);
    // Our own message comes back too; this only makes the change visible here at once.
    for (const [jti, exp] of entries) this.revoked?.set(jti, Math.max(exp, this.revoked.get(jti) ?? 0));
  }

  async revocations(): Promise<Map<string, number>> {
    const now = Math.floor(Date.now() / 1000);
    const flat = await this.redis.cmd.zrangebyscore(this.redis.keys.revoked, now, '+inf', 'WITHSCORES');
    const out = new Map<string, number>();
    for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i]!, Number(flat[i + 1]));
    return out;
  }

  async adoptKey(key: Uint8Array, replace: boolean): Promise<boolean> {
    const text = Buffer.from(key).toString('base64url');
    const { tokenKey, changes } = this.redis.keys;
    if (replace) await this.redis.cmd.eval(SET_KEY_SCRIPT, 1, tokenKey, changes, text);
    else await this.redis.cmd.set(tokenKey, text, 'NX');
    this.key = await readKey(this.redis);
    return Buffer.from(this.key).equals(Buffer.from(key));
  }

  async close(): Promise<void> {
    for (const stop of this.unsubscribe) stop();
  }

  private changed(change: AuthChange): void {
    if (change.op === 'key') {
      readKey(this.redis).then(
        (key) => {
          this.key = key;
        },
        () => undefined,
      );
      return;
    }
    if (change.op !== 'revoke' || !this.revoked) return;
    change.jtis.forEach((jti, i) => {
      const exp = change.exps[i] ?? 0;
      this.revoked!.set(jti, Math.max(exp, this.revoked!.get(jti) ?? 0));
    });
  }

  private async reload(): Promise<void> {
    this.revoked = await this.revocations();
    this.key = await readKey(this.redis);
  }
}

async function readKey(redis: AuthRedis): Promise<Uint8Array> {
  const text = await redis.cmd.get(redis.keys.tokenKey);
  const key = text ? Buffer.from(text.trim(), 'base64url') : Buffer.alloc(0);
  if (key.length < 32)
    throw tokenError(`${redis.keys.tokenKey}: the token signing key is shorter than 32 bytes`);
  return new Uint8Array(key);
}
