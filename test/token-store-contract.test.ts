/**
 * The TokenStore contract (src/auth/token-store.ts), one suite run against both implementations: the
 * data directory's files (one instance) and Redis (cluster mode, a real redis-server). Each suite
 * holds two handles on one store, as a running bridge (`bridge`, watching) and the CLI (`cli`) do.
 *
 * - Both handles sign and verify with the same key: a token made by one verifies on the other.
 * - A revocation made by one is seen by the other (within about a second); a later expiry wins;
 *   revocations whose token expired anyway are not reported.
 * - `adoptKey` takes a key where there is none, keeps a different one unless told to replace it;
 *   in Redis a replaced key reaches the running handles too.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { openAuth } from '../src/auth/open-auth.js';
import type { TokenStore } from '../src/auth/token-store.js';
import { FileTokenStore } from '../src/auth/token-store-file.js';
import { createTokenService } from '../src/auth/tokens.js';
import { createLogger } from '../src/log.js';
import { RedisHealth } from '../src/redis.js';
import { contractSuite } from './support/contract.js';
import { startRedis } from './support/redis.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

interface StoreUnderTest {
  readonly bridge: TokenStore;
  readonly cli: TokenStore;
  /**
   * Whether a replaced key reaches a running handle (Redis: the change channel) or only handles
   * opened after (file: the key is read at start-up, as before).
   */
  readonly keyFollowsChanges: boolean;
  close(): Promise<void>;
}

const now = () => Math.floor(Date.now() / 1000);

function contract(name: string, open: () => Promise<StoreUnderTest | { skip: string }>): void {
  contractSuite(`TokenStore contract: ${name}`, open, ({ test, subject }) => {
    test('one key: a token made on one handle verifies on the other', async () => {
      const s = subject();
      const key = s.bridge.signingKey();
      assert.ok(key && key.length >= 32);
      assert.deepEqual(s.cli.signingKey(), key);
      const { token, claims } = await createTokenService(s.cli).create({ feeds: ['telemetry/+'] });
      assert.deepEqual(await createTokenService(s.bridge).verify(token), claims);
    });

    test('a revocation made by the CLI is seen by the bridge; a later expiry wins', async () => {
      const s = subject();
      const cli = createTokenService(s.cli);
      const bridge = createTokenService(s.bridge);
      const { token, claims } = await cli.create({ ttlSeconds: 3600 });
      await bridge.verify(token);
      assert.equal(await cli.revoke(token), claims.jti);
      await waitFor('the bridge to refuse the token', () => bridge.isRevoked(claims.jti));
      await assert.rejects(bridge.verify(token), { code: 'E_TOKEN', message: 'token revoked' });
      await s.cli.revoke(new Map([[claims.jti, now() + 10]]));
      assert.equal((await s.cli.revocations()).get(claims.jti), claims.exp, 'the later expiry is kept');
    });

    test('revocations of expired tokens are not reported', async () => {
      const s = subject();
      await s.cli.revoke(
        new Map([
          ['old-jti', now() - 60],
          ['live-jti', now() + 60],
        ]),
      );
      const listed = await s.bridge.revocations();
      assert.equal(listed.has('old-jti'), false);
      await waitFor('the live one at the bridge', () => s.bridge.isRevoked('live-jti'));
      assert.equal(await s.bridge.isRevoked('old-jti'), false);
    });

    test('adoptKey: a different key is kept unless replaced', async () => {
      const s = subject();
      const current = s.cli.signingKey()!;
      const other = new Uint8Array(randomBytes(32));
      assert.equal(await s.cli.adoptKey(current, false), true, 'the same key is the key');
      assert.equal(await s.cli.adoptKey(other, false), false);
      assert.deepEqual(s.cli.signingKey(), current);
      const { token } = await createTokenService(s.bridge).create();
      assert.equal(await s.cli.adoptKey(other, true), true);
      assert.deepEqual(s.cli.signingKey(), other);
      await assert.rejects(createTokenService(s.cli).verify(token), { message: 'invalid token' });
      if (!s.keyFollowsChanges) return;
      await waitFor('the running bridge to sign with the new key', () =>
        Buffer.from(s.bridge.signingKey()!).equals(Buffer.from(other)),
      );
    });
  });
}

contract('file (data directory)', async () => {
  const dir = tempDir('token-contract');
  const bridge = await FileTokenStore.open(dir);
  const cli = await FileTokenStore.open(dir);
  return {
    bridge,
    cli,
    keyFollowsChanges: false,
    async close() {
      await bridge.close();
      await cli.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

contract('Redis (cluster mode)', async () => {
  const redis = await startRedis();
  if ('skip' in redis) return redis;
  const health = new RedisHealth(createLogger('silent'));
  const dir = tempDir('token-contract-redis');
  const target = { url: redis.url };
  const bridge = await openAuth({ dataDir: dir, redis: { target, health, watch: true } });
  const cli = await openAuth({ dataDir: dir, redis: { target, health, watch: false } });
  return {
    bridge: bridge.tokenStore,
    cli: cli.tokenStore,
    keyFollowsChanges: true,
    async close() {
      await bridge.close();
      await cli.close();
      health.close();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

test('a file store opened without making a key adopts one', async () => {
  const dir = tempDir('token-adopt');
  const store = await FileTokenStore.open(dir, { createKey: false });
  assert.equal(store.signingKey(), undefined);
  assert.throws(() => createTokenService(store), { code: 'E_TOKEN' });
  const key = new Uint8Array(randomBytes(32));
  assert.equal(await store.adoptKey(key, false), true);
  assert.deepEqual((await FileTokenStore.open(dir)).signingKey(), key, 'written to the data directory');
  rmSync(dir, { recursive: true, force: true });
});
