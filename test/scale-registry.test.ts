/**
 * The cluster's registry as an operator uses it (issue 16 §1): two bridge instances on one real
 * Redis, and `npx telebridge …` run as a child process with the same REDIS_URL.
 *
 * - `devices add` on the CLI: the device logs in on either instance; `devices remove`: it is
 *   disconnected wherever it is connected (TCP on A, WebSocket on B) and refused after.
 * - `users remove`: the user's connection is closed.
 * - `token create` / `token revoke`: the token works on both instances, then is refused by both and
 *   its open /live connection is closed.
 * - `registry import`: a data directory's devices and token key move into Redis; its secrets and
 *   its tokens work on the cluster.
 * - Without REDIS_URL the data directory stays the registry, and a removed device is disconnected
 *   there too.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { MqttClient } from 'mqtt';
import { FileRegistry } from '../src/auth/registry-file.js';
import { openTokenService } from '../src/auth/tokens.js';
import { projectRoot } from '../src/paths.js';
import { connectMqtt, startTestBridge, type TestBridge } from './support/bridge.js';
import { LiveTestClient } from './support/live-client.js';
import { type RedisServer, startRedis } from './support/redis.js';
import { tempDir } from './support/services.js';
import { waitEvent, waitFor } from './support/wait.js';

const run = promisify(execFile);
const bin = join(projectRoot(), 'bin', 'telebridge.js');

const redis = await startRedis();
const skip = 'skip' in redis ? redis.skip : undefined;

let r: RedisServer;
let a: TestBridge;
let b: TestBridge;
const dirs: string[] = [];
const clients: MqttClient[] = [];

/** `npx telebridge …` with the cluster's configuration; resolves with stdout's last line. */
async function telebridge(
  args: string[],
  env: Record<string, string> = { REDIS_URL: r.url },
): Promise<string> {
  const { stdout } = await run(process.execPath, [bin, ...args], {
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
  return stdout.trimEnd().split('\n').at(-1)!;
}

/** The CONNACK refusal of a login, or 'accepted'. */
async function loginResult(url: string, id: string, secret: string): Promise<string> {
  try {
    const client = await connectMqtt(url, { clientId: id, username: id, password: secret }, clients);
    client.end(true);
    return 'accepted';
  } catch (err) {
    return String((err as { code?: number }).code ?? (err as Error).message);
  }
}

describe('the cluster registry through the CLI', { skip }, () => {
  before(async () => {
    if ('skip' in redis) return;
    r = redis;
    const env = { REDIS_URL: r.url, BRIDGE_LIVE_PING_MS: '300' };
    a = await startTestBridge(env);
    b = await startTestBridge(env);
  });

  after(async () => {
    for (const c of clients) c.end(true);
    await a?.close();
    await b?.close();
    if (!('skip' in redis)) await redis.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('devices add: logs in on both instances; remove: disconnected wherever connected, then refused', async () => {
    const one = await telebridge(['devices', 'add', 'reg-1']);
    const two = await telebridge(['devices', 'add', 'reg-2']);
    assert.match(one, /^[A-Za-z0-9_-]{43}$/);
    const onA = await a.connect('tcp', { clientId: 'reg-1', username: 'reg-1', password: one });
    const onB = await b.connect('ws', { clientId: 'reg-2', username: 'reg-2', password: two });
    const listed = JSON.parse(await telebridge(['devices', 'list', '--json'])) as { id: string }[];
    assert.deepEqual(
      listed.map((d) => d.id),
      ['reg-1', 'reg-2'],
    );

    // When each connection is closed, against the command's own run (a process start included):
    // printed for docs/scaling.md's "within one second".
    const timings: string[] = [];
    for (const [id, client] of [
      ['reg-1', onA],
      ['reg-2', onB],
    ] as const) {
      const started = performance.now();
      let closedAfter = -1;
      const closed = waitEvent(client, 'close').then(() => {
        closedAfter = performance.now() - started;
      });
      assert.equal(await telebridge(['devices', 'remove', id]), `device ${id} removed`);
      const returnedAfter = performance.now() - started;
      await closed;
      timings.push(
        `${id}: closed at ${Math.round(closedAfter)} ms, the command returned at ${Math.round(returnedAfter)} ms`,
      );
    }
    console.log(`devices remove (A over TCP, B over WebSocket) — ${timings.join('; ')}`);
    assert.equal(await loginResult(a.mqttUrl('tcp'), 'reg-1', one), '4', 'bad credentials on A');
    assert.equal(await loginResult(b.mqttUrl('tcp'), 'reg-2', two), '4', 'and on B');
  });

  test('users remove: its connection is closed', async () => {
    const secret = await telebridge(['users', 'add', 'reg-backend', '--subscribe', 'devices/+/telemetry']);
    const user = await b.connect('tcp', { clientId: 'any-id', username: 'reg-backend', password: secret });
    await user.subscribeAsync('devices/+/telemetry');
    const closed = waitEvent(user, 'close');
    await telebridge(['users', 'remove', 'reg-backend']);
    await closed;
    assert.equal(await loginResult(a.mqttUrl('tcp'), 'reg-backend', secret), '4');
  });

  test('token create works on both instances; token revoke: refused by both, its connection closed', async () => {
    const token = await telebridge(['token', 'create', '--feeds', 'telemetry/+', '--ttl', '1h']);
    const live = await LiveTestClient.connect(`ws://127.0.0.1:${a.bridge.ports.http}/live`, token);
    const onB = await LiveTestClient.connect(`ws://127.0.0.1:${b.bridge.ports.http}/live`, token);
    onB.close();
    assert.match(await telebridge(['token', 'revoke', token]), /^revoked /);
    await waitFor('B to refuse it', async () => {
      const url = `ws://127.0.0.1:${b.bridge.ports.http}/live?token=${encodeURIComponent(token)}`;
      return (await LiveTestClient.refusedStatus(url).catch(() => 0)) === 401;
    });
    // The open connection on A is closed at its next ping (BRIDGE_LIVE_PING_MS=300).
    assert.equal((await live.closed).code, 1008);
  });

  test('registry import: a data directory moves into Redis; its secrets and tokens work on the cluster', async () => {
    const dir = tempDir('reg-import');
    dirs.push(dir);
    const file = await FileRegistry.open(dir);
    const secret = await file.addDevice('from-file');
    const { token } = await (await openTokenService(dir)).create({ feeds: ['#'] });
    // Before: unknown to the cluster.
    assert.equal(await loginResult(a.mqttUrl('tcp'), 'from-file', secret), '4');

    // The cluster already has its own key: without --replace it is kept, and the command says so.
    const kept = await run(process.execPath, [bin, 'registry', 'import', '--data-dir', dir], {
      env: { ...process.env, REDIS_URL: r.url },
    }).catch((err: { code: number; stdout: string }) => err);
    assert.equal((kept as { code?: number }).code, 1);
    assert.match(kept.stdout, /1 devices and users added/);
    assert.match(kept.stdout, /different one, kept/);
    assert.equal(await loginResult(a.mqttUrl('tcp'), 'from-file', secret), 'accepted');

    assert.match(
      await telebridge(['registry', 'import', '--replace', '--data-dir', dir]),
      /the cluster's key is the data directory's/,
    );
    await waitFor('B to take the imported key', async () => {
      const url = `ws://127.0.0.1:${b.bridge.ports.http}/live?token=${encodeURIComponent(token)}`;
      const client = await LiveTestClient.connect(url).catch(() => undefined);
      client?.close();
      return client !== undefined;
    });
  });

  test('registry import without REDIS_URL says what it needs', async () => {
    const dir = tempDir('reg-none');
    dirs.push(dir);
    const refused = await run(process.execPath, [bin, 'registry', 'import'], {
      env: { ...process.env, REDIS_URL: '', BRIDGE_DATA_DIR: dir },
    }).catch((err: { code: number; stderr: string }) => err);
    assert.equal((refused as { code?: number }).code, 2);
    assert.match((refused as { stderr: string }).stderr, /set REDIS_URL/);
  });
});

test('without REDIS_URL: the data directory is the registry, and a removed device is disconnected', async () => {
  const single = await startTestBridge();
  try {
    const secret = await telebridge(['devices', 'add', 'file-1', '--data-dir', single.dataDir], {});
    const device = await single.connect('tcp', { clientId: 'file-1', username: 'file-1', password: secret });
    const closed = waitEvent(device, 'close');
    await telebridge(['devices', 'remove', 'file-1', '--data-dir', single.dataDir], {});
    await closed;
  } finally {
    await single.close();
  }
});
