/**
 * The commands as a user runs them: `npx telebridge …` (bin/telebridge.js) and `npm start`
 * (dist/src/main.js), as child processes.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { projectRoot } from '../src/paths.js';
import { freePort, tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const run = promisify(execFile);
const bin = join(projectRoot(), 'bin', 'telebridge.js');
const main = join(projectRoot(), 'dist', 'src', 'main.js');

const telebridge = (args: string[], env: Record<string, string> = {}) =>
  run(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, timeout: 10_000 });

test('devices and users: add prints the secret alone on the last line; list and remove', async () => {
  const dir = tempDir('cli');
  try {
    const started = Date.now();
    const added = await telebridge(['devices', 'add', 'cli-1', '--data-dir', dir]);
    assert.ok(Date.now() - started < 2000, 'answers within 2 s');
    const secret = added.stdout.trimEnd().split('\n').at(-1)!;
    assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
    const listed = await telebridge(['devices', 'list', '--json'], { BRIDGE_DATA_DIR: dir });
    assert.deepEqual(
      (JSON.parse(listed.stdout) as { id: string }[]).map((d) => d.id),
      ['cli-1'],
    );
    const dup = await telebridge(['devices', 'add', 'cli-1', '--data-dir', dir]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal((dup as { code: number }).code, 2);
    assert.match((dup as { stderr: string }).stderr, /already exists/);
    const bad = await telebridge(['devices', 'add', '--data-dir', dir, '--', 'bad id']).catch(
      (e: { code: number; stderr: string }) => e,
    );
    assert.match((bad as { stderr: string }).stderr, /invalid device id/);
    const user = await telebridge([
      'users',
      'add',
      'red',
      '--publish',
      'plant/#',
      '--subscribe',
      'devices/+/telemetry',
      '--data-dir',
      dir,
    ]);
    assert.match(user.stdout.trimEnd().split('\n').at(-1)!, /^[A-Za-z0-9_-]{43}$/);
    const users = JSON.parse((await telebridge(['users', 'list', '--json', '--data-dir', dir])).stdout) as {
      name: string;
      subscribe: string[];
    }[];
    assert.deepEqual(
      users.map((u) => [u.name, u.subscribe]),
      [['red', ['devices/+/telemetry']]],
    );
    await telebridge(['devices', 'remove', 'cli-1', '--data-dir', dir]);
    assert.equal((await telebridge(['devices', 'list', '--data-dir', dir])).stdout, '');
    const token = await telebridge([
      'token',
      'create',
      '--feeds',
      'telemetry/+',
      '--ttl',
      '1h',
      '--data-dir',
      dir,
    ]);
    assert.match(token.stdout.trimEnd().split('\n').at(-1)!, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad configuration stops start-up with one line naming the variable', async () => {
  const result = await run(process.execPath, [main], {
    env: { ...process.env, BRIDGE_MQTT_PORT: 'seventeen' },
    timeout: 10_000,
  }).catch((e: { code: number; stderr: string }) => e);
  assert.equal((result as { code: number }).code, 2);
  assert.equal(
    (result as { stderr: string }).stderr,
    'telebridge: invalid configuration: BRIDGE_MQTT_PORT="seventeen": expected a number\n',
  );
});

test('npm start: /healthz within 5 s, storage off said once, SIGTERM exits 0', async () => {
  const dir = tempDir('start');
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [main], {
    env: {
      ...process.env,
      BRIDGE_MQTT_PORT: String(mqttPort),
      BRIDGE_HTTP_PORT: String(httpPort),
      BRIDGE_DATA_DIR: dir,
      BRIDGE_AUTH: 'off',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    const started = Date.now();
    await waitFor(
      '/healthz',
      async () => (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).status === 200,
      { timeoutMs: 5000 },
    );
    assert.ok(Date.now() - started < 5000);
    assert.equal((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status, 200);
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 0 });
    await client.endAsync();
    const lines = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; level: number });
    assert.equal(lines.filter((l) => l.msg.startsWith('storage off')).length, 1);
    assert.ok(
      lines.some((l) => l.msg.includes('BRIDGE_AUTH=off')),
      'warns that auth is off',
    );
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('npm run demo: the bridge plus simulated devices, and a dashboard URL with a working token', async () => {
  const dir = tempDir('demo');
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [bin, 'demo', '--devices', '3', '--interval', '200', '--duration', '30'],
    {
      env: {
        ...process.env,
        BRIDGE_MQTT_PORT: String(mqttPort),
        BRIDGE_HTTP_PORT: String(httpPort),
        BRIDGE_DATA_DIR: dir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    const url = await waitFor(
      'the dashboard URL',
      () => /dashboard: (http:\/\/\S+\?token=\S+)/.exec(out)?.[1],
      { timeoutMs: 20_000 },
    );
    assert.equal(new URL(url).port, String(httpPort));
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
    const token = decodeURIComponent(new URL(url).searchParams.get('token')!);
    // The token opens the live channel, and the demo devices are streaming.
    const sse = await fetch(
      `http://127.0.0.1:${httpPort}/live/sse?feeds=telemetry/%2B&token=${encodeURIComponent(token)}`,
    );
    assert.equal(sse.status, 200);
    const reader = sse.body!.getReader();
    let text = '';
    await waitFor('telemetry from a demo device', async () => {
      const { value } = await reader.read();
      text += Buffer.from(value ?? []).toString();
      return /"device":"demo-/.test(text);
    });
    await reader.cancel();
    child.kill('SIGINT');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
