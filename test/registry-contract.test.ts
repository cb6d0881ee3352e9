/**
 * The Registry contract (src/auth/registry.ts), one suite run against both implementations: the data
 * directory's file (one instance) and Redis (cluster mode, a real redis-server). Each suite holds two
 * handles on one store, as a running bridge and the CLI do: `bridge` watches for changes, `cli` makes
 * them.
 *
 * - Devices and users: created with a secret shown once, listed, removed; names checked; one
 *   namespace; a batch with `replace`; rights of users.
 * - A login succeeds with the right secret only, and stops succeeding once the name is removed —
 *   wherever it was removed — and the removal is announced to `onRemoved`.
 * - `records()` → `import()` carries hashes, so secrets keep working; re-importing keeps what exists.
 *
 * Then what only Redis has to prove: a cached login costs no round trip; a change channel cut off
 * and restored announces what was removed meanwhile; a Redis that comes back empty is not a removal
 * of everyone, and the token key is put back.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type Auth, openAuth } from '../src/auth/open-auth.js';
import type { Registry, Removal } from '../src/auth/registry.js';
import { FileRegistry } from '../src/auth/registry-file.js';
import { createLogger } from '../src/log.js';
import { RedisHealth } from '../src/redis.js';
import { contractSuite } from './support/contract.js';
import { captureLog } from './support/influx.js';
import { type RedisServer, startRedis } from './support/redis.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

interface RegistryUnderTest {
  /** The running bridge's handle: watches for changes. */
  readonly bridge: Registry;
  /** Another process's handle (the CLI). */
  readonly cli: Registry;
  close(): Promise<void>;
}

const pw = (secret: string) => Buffer.from(secret);

function contract(name: string, open: () => Promise<RegistryUnderTest | { skip: string }>): void {
  const removals: Removal[] = [];
  const watched = async () => {
    const opened = await open();
    if (!('skip' in opened)) opened.bridge.onRemoved((removal) => removals.push(removal));
    return opened;
  };
  contractSuite(`Registry contract: ${name}`, watched, ({ test, subject }) => {
    test('a device: created with a secret, listed, logs in with it only', async () => {
      const r = subject();
      const secret = await r.cli.addDevice('dev-a');
      assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(
        (await r.cli.listDevices()).map((d) => d.id),
        ['dev-a'],
      );
      assert.deepEqual(await r.bridge.authenticate('dev-a', pw(secret)), { kind: 'device', id: 'dev-a' });
      assert.deepEqual(await r.bridge.authenticate('dev-a', pw(secret)), { kind: 'device', id: 'dev-a' });
      assert.equal(await r.bridge.authenticate('dev-a', pw(`${secret}x`)), undefined);
      assert.equal(await r.bridge.authenticate('nobody', pw(secret)), undefined);
      assert.equal(await r.bridge.hasDeviceNow('dev-a'), true);
      assert.equal(await r.bridge.hasDeviceNow('nobody'), false);
    });

    test('names are checked; devices and users share one namespace', async () => {
      const r = subject();
      await assert.rejects(r.cli.addDevice('bad id'), { code: 'E_REGISTRY', message: /invalid device id/ });
      await assert.rejects(r.cli.addDevice('dev-a'), { code: 'E_REGISTRY', message: /already exists/ });
      await assert.rejects(r.cli.addUser('dev-a', { publish: [], subscribe: [] }), {
        message: /already exists/,
      });
      await assert.rejects(r.cli.addUser('u-bad', { publish: ['a/#/b'], subscribe: [] }), {
        message: /invalid topic filter/,
      });
      assert.equal(await r.cli.removeDevice('nobody'), false);
      assert.equal(await r.cli.removeUser('dev-a'), false, 'a device is not removed as a user');
    });

    test('a user logs in with its rights', async () => {
      const r = subject();
      const secret = await r.cli.addUser('backend', {
        publish: ['plant/#'],
        subscribe: ['devices/+/telemetry'],
      });
      assert.deepEqual(await r.bridge.authenticate('backend', pw(secret)), {
        kind: 'user',
        id: 'backend',
        publish: ['plant/#'],
        subscribe: ['devices/+/telemetry'],
      });
      assert.deepEqual(
        (await r.cli.listUsers()).map((u) => [u.name, u.publish, u.subscribe]),
        [['backend', ['plant/#'], ['devices/+/telemetry']]],
      );
      await assert.rejects(r.cli.addDevice('backend'), { message: /already exists/ });
      assert.equal(await r.bridge.hasDeviceNow('backend'), false);
    });

    test('a batch: all or nothing; `replace` gives existing devices new secrets', async () => {
      const r = subject();
      await assert.rejects(r.cli.addDevices(['batch-1', 'backend']), { message: /'backend' already exists/ });
      assert.equal(await r.bridge.hasDeviceNow('batch-1'), false, 'nothing of a refused batch is written');
      const first = await r.cli.addDevices(['batch-1', 'batch-2']);
      assert.deepEqual([...first.keys()], ['batch-1', 'batch-2']);
      assert.ok(await r.bridge.authenticate('batch-1', pw(first.get('batch-1')!)));
      await assert.rejects(r.cli.addDevices(['batch-2']), { message: /already exists/ });
      const again = await r.cli.addDevices(['batch-2', 'batch-3'], { replace: true });
      // The bridge sees a change within about a second (file: its mtime; Redis: the change channel).
      await waitFor('the new secret', () => r.bridge.authenticate('batch-2', pw(again.get('batch-2')!)));
      assert.equal(
        await r.bridge.authenticate('batch-2', pw(first.get('batch-2')!)),
        undefined,
        'the old secret of a replaced device no longer works',
      );
      await assert.rejects(r.cli.addDevices(['backend'], { replace: true }), { message: /already exists/ });
    });

    test('removed elsewhere: announced to the bridge, and the secret stops working', async () => {
      const r = subject();
      const device = await r.cli.addDevice('dev-gone');
      const user = await r.cli.addUser('user-gone', { publish: [], subscribe: ['#'] });
      assert.ok(await r.bridge.authenticate('dev-gone', pw(device)), 'logged in (and cached)');
      assert.ok(await r.bridge.authenticate('user-gone', pw(user)));
      assert.equal(await r.cli.removeDevice('dev-gone'), true);
      assert.equal(await r.cli.removeUser('user-gone'), true);
      await waitFor('both removals announced', () =>
        [
          { kind: 'device', name: 'dev-gone' },
          { kind: 'user', name: 'user-gone' },
        ].every((want) => removals.some((got) => got.kind === want.kind && got.name === want.name)),
      );
      assert.equal(await r.bridge.authenticate('dev-gone', pw(device)), undefined);
      assert.equal(await r.bridge.authenticate('user-gone', pw(user)), undefined);
      assert.equal(await r.bridge.hasDeviceNow('dev-gone'), false);
      // Re-created: a new secret, the old one still refused.
      const renewed = await r.cli.addDevice('dev-gone');
      await waitFor('the re-created device to log in', () => r.bridge.authenticate('dev-gone', pw(renewed)));
      assert.equal(await r.bridge.authenticate('dev-gone', pw(device)), undefined);
    });

    test('added elsewhere: the bridge lets it in at once', async () => {
      const r = subject();
      assert.equal(await r.bridge.hasDeviceNow('dev-new'), false);
      const secret = await r.cli.addDevice('dev-new');
      assert.equal(await r.bridge.hasDeviceNow('dev-new'), true);
      assert.ok(await r.bridge.authenticate('dev-new', pw(secret)));
    });

    test('records → import keeps the hashes (the secrets keep working); existing names are kept', async () => {
      const r = subject();
      const source = await FileRegistry.open(tempDir('registry-import'));
      const moved = await source.addDevice('imp-1');
      const movedUser = await source.addUser('imp-user', { publish: ['x/#'], subscribe: [] });
      await source.addDevice('dev-a'); // exists in the target with another secret
      await source.addUser('dev-new', { publish: [], subscribe: [] }); // a device in the target
      const records = await source.records();
      const first = await r.cli.import(records);
      assert.deepEqual(first.added.sort(), ['imp-1', 'imp-user']);
      assert.deepEqual(first.kept.sort(), ['dev-a', 'dev-new']);
      assert.deepEqual(await r.bridge.authenticate('imp-1', pw(moved)), { kind: 'device', id: 'imp-1' });
      assert.deepEqual((await r.bridge.authenticate('imp-user', pw(movedUser)))?.kind, 'user');
      const again = await r.cli.import(records);
      assert.deepEqual(again.added, [], 'importing twice adds nothing');
      const replaced = await r.cli.import(records, { replace: true });
      assert.deepEqual(replaced.added.sort(), ['dev-a', 'imp-1', 'imp-user']);
      assert.deepEqual(replaced.kept, ['dev-new'], 'a device never becomes a user');
      await assert.rejects(r.cli.import({ devices: { 'bad id': records.devices['imp-1']! }, users: {} }), {
        message: /invalid device id/,
      });
      await source.close();
    });
  });
}

contract('file (data directory)', async () => {
  const dir = tempDir('registry-contract');
  const bridge = await FileRegistry.open(dir);
  const cli = await FileRegistry.open(dir);
  return {
    bridge,
    cli,
    async close() {
      await bridge.close();
      await cli.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

let redis: RedisServer | undefined;
const log = createLogger('silent');
/** What the watching instances report (a lost registry). */
const authLog = captureLog();
const lossReports = () =>
  authLog.lines.filter((l) => /^redis came back without/.test(String(l['msg']))).length;

/** Two handles on the cluster's Redis: a watching one (a bridge) and the CLI's. */
async function openPair(
  url: string,
  prefix: string,
): Promise<{ bridge: Auth; cli: Auth; close(): Promise<void> }> {
  const health = new RedisHealth(log);
  const dir = tempDir('registry-redis');
  const bridge = await openAuth({
    dataDir: dir,
    redis: { target: { url }, health, watch: true, prefix, log: createLogger('error', authLog.stream) },
  });
  const cli = await openAuth({ dataDir: dir, redis: { target: { url }, health, watch: false, prefix } });
  return {
    bridge,
    cli,
    async close() {
      await bridge.close();
      await cli.close();
      health.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

contract('Redis (cluster mode)', async () => {
  const started = await startRedis();
  if ('skip' in started) return started;
  redis = started;
  const pair = await openPair(started.url, 'contract');
  return { bridge: pair.bridge.registry, cli: pair.cli.registry, close: () => pair.close() };
});

describe('Registry in Redis: what the cache must get right', () => {
  let pair: Awaited<ReturnType<typeof openPair>>;
  let admin: RedisHealth;
  let conn: Awaited<ReturnType<RedisHealth['connect']>>;
  const removals: Removal[] = [];
  before(async () => {
    if (!redis) return;
    pair = await openPair(redis.url, 'cache');
    pair.bridge.registry.onRemoved((removal) => removals.push(removal));
    admin = new RedisHealth(log);
    conn = await admin.connect({ url: redis.url }, 'admin');
  });
  after(async () => {
    await pair?.close();
    admin?.close();
    await redis?.stop();
  });

  /** A device added by the CLI and logged in once on the bridge, so the bridge has it cached. */
  const cachedDevice = async (id: string): Promise<string> => {
    const secret = await pair.cli.registry.addDevice(id);
    assert.ok(await pair.bridge.registry.authenticate(id, pw(secret)));
    return secret;
  };

  /** The CLI removes a device: the bridge announces the removal and refuses its secret. */
  const removedOnTheBridge = async (id: string, secret: string): Promise<void> => {
    await pair.cli.registry.removeDevice(id);
    await waitFor(`the removal of ${id} announced`, () => removals.some((r) => r.name === id));
    assert.equal(await pair.bridge.registry.authenticate(id, pw(secret)), undefined);
  };

  const calls = async (command: string): Promise<number> => {
    const info = await conn.info('commandstats');
    return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
  };

  test('a login cached once costs no Redis round trip after', async (t) => {
    if (!redis) return t.skip('redis-server missing');
    const secret = await cachedDevice('cached-1');
    const before = await calls('hget');
    for (let i = 0; i < 5; i++) assert.ok(await pair.bridge.registry.authenticate('cached-1', pw(secret)));
    assert.equal(await calls('hget'), before, 'no HGET for a cached name');
    await removedOnTheBridge('cached-1', secret);
  });

  test('the change channel cut: a removal made meanwhile is announced once it is back', async (t) => {
    if (!redis) return t.skip('redis-server missing');
    const secret = await cachedDevice('cut-1');
    // Kill the subscriber and remove at once: the message may go nowhere; the resync must find it.
    await conn.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await removedOnTheBridge('cut-1', secret);
  });

  test('Redis back empty: no one is announced removed, logins are refused, the token key is put back', async (t) => {
    if (!redis) return t.skip('redis-server missing');
    const secret = await cachedDevice('kept-1');
    const { token } = await pair.bridge.tokens.create({ feeds: ['#'] });
    const removedBefore = removals.length;
    await conn.flushall();
    await conn.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await waitFor('the token key put back', async () => (await conn.exists('cache:token-key')) === 1);
    assert.equal(removals.length, removedBefore, 'a lost registry is not a removal of everyone');
    assert.equal(await pair.bridge.registry.authenticate('kept-1', pw(secret)), undefined, 'not cached');
    const fresh = await openPair(redis.url, 'cache');
    try {
      assert.ok(await fresh.cli.tokens.verify(token), 'the key put back is the one tokens were signed with');
    } finally {
      await fresh.close();
    }
  });

  test('Redis back empty, another instance noticed first and put the token key back: still no removal', async (t) => {
    if (!redis) return t.skip('redis-server missing');
    await cachedDevice('kept-2');
    const removedBefore = removals.length;
    const reportsBefore = lossReports();
    await conn.flushall();
    // What the first instance to resync does: the key back (and a new epoch) before this one looks.
    await conn.set('cache:token-key', 'put-back-by-another-instance');
    await conn.set('cache:epoch', 'made-by-another-instance');
    await conn.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await waitFor('the loss reported', () => lossReports() > reportsBefore);
    assert.equal(removals.length, removedBefore, 'a lost registry is not a removal of everyone');
  });
});
