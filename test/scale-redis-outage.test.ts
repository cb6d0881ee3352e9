/**
 * Redis going away under two clustered instances (real redis-server, real InfluxDB 1.6): the
 * instance keeps serving its own clients (PUBACK, local MQTT relay, storage), /readyz is 503 naming
 * Redis, the outage is logged once when it starts and once when it ends, and after Redis is back the
 * relay between instances and the live stream work again. Nothing acknowledged is lost.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { IClientOptions, MqttClient } from 'mqtt';
import { type BridgeHandle, startBridge } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import {
  connectMqtt,
  encodeTelemetry,
  publishAcked,
  startTestBridge,
  Telemetry,
  type TestBridge,
} from './support/bridge.js';
import { startClusterServices } from './support/cluster.js';
import { captureLog, type InfluxdServer } from './support/influx.js';
import { LiveTestClient } from './support/live-client.js';
import type { RedisServer } from './support/redis.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const DB = 'outage';
const T0 = Date.now() - 10 * 60_000;

const services = await startClusterServices({ database: DB });
const skip = 'skip' in services ? services.skip : undefined;

let r: RedisServer;
let db: InfluxdServer;
let a: BridgeHandle;
let b: TestBridge;
const logs = captureLog();
const dirs: string[] = [];
const clients: MqttClient[] = [];
let deviceSecret = '';
let otherSecret = '';
let backendSecret = '';
let token = '';
/** The cluster settings every instance here shares (Redis, InfluxDB). */
let clusterEnv: Record<string, string> = {};

const connect = (port: number, options: IClientOptions) =>
  connectMqtt(`mqtt://127.0.0.1:${port}`, options, clients);
const seqOf = (payload: Buffer) => Number((Telemetry.decode(payload) as unknown as { seq: number }).seq);
const sample = (seq: number) =>
  encodeTelemetry('dev-1', seq, [{ time_unix_ms: T0 + seq, values: { v: seq } }]);
const readyz = async (port: number) => {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: (await res.json()) as { reason?: string } };
};
const lines = (msg: RegExp) => logs.lines.filter((l) => msg.test(String(l['msg'])));

describe('Redis outage under a cluster', { skip }, () => {
  before(async () => {
    if ('skip' in services) return;
    r = services.redis!;
    db = services.influx;
    const dataA = tempDir('outage-a');
    const dataB = tempDir('outage-b');
    dirs.push(dataA, dataB);
    const { auth } = services;
    deviceSecret = await auth.registry.addDevice('dev-1');
    otherSecret = await auth.registry.addDevice('dev-2');
    backendSecret = await auth.registry.addUser('backend', {
      publish: [],
      subscribe: ['devices/+/telemetry'],
    });
    token = (await auth.tokens.create({ feeds: ['telemetry/+'] })).token;
    clusterEnv = services.env();
    const config = loadConfig({
      ...clusterEnv,
      BRIDGE_MQTT_PORT: '0',
      BRIDGE_HTTP_PORT: '0',
      BRIDGE_DATA_DIR: dataA,
      LOG_LEVEL: 'info',
    });
    a = await startBridge(config, { log: createLogger('info', logs.stream) });
    b = await startTestBridge(clusterEnv, { dataDir: dataB });
  });

  after(async () => {
    for (const c of clients) c.end(true);
    await a?.close();
    await b?.close();
    if (!('skip' in services)) await services.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('while Redis is down: local clients served, not ready, logged once; after: cluster again', async () => {
    const dev = await connect(a.ports.mqtt, { clientId: 'dev-1', username: 'dev-1', password: deviceSecret });
    const local = await connect(a.ports.mqtt, {
      clientId: 'local',
      username: 'backend',
      password: backendSecret,
    });
    const remote = await connect(b.bridge.ports.mqtt, {
      clientId: 'remote',
      username: 'backend',
      password: backendSecret,
    });
    const onA: number[] = [];
    const onB: number[] = [];
    local.on('message', (_t, p) => onA.push(seqOf(p)));
    remote.on('message', (_t, p) => onB.push(seqOf(p)));
    await local.subscribeAsync('devices/dev-1/telemetry', { qos: 1 });
    await remote.subscribeAsync('devices/dev-1/telemetry', { qos: 1 });
    await publishAcked(dev, 'devices/dev-1/telemetry', sample(1));
    await waitFor('seq 1 on both instances', () => onA.includes(1) && onB.includes(1));
    assert.equal((await readyz(a.ports.http)).status, 200);

    await r.stop();
    // Each Redis connection notices the outage on its own socket's close, not all in one turn: wait
    // until the relay's publisher has (the first one down already makes /readyz 503).
    await waitFor('A not ready, its relay publisher down', async () => {
      const { status, body } = await readyz(a.ports.http);
      return status === 503 && /redis unavailable \(.*mqtt-relay-pub/.test(body.reason ?? '');
    });
    // The device is acknowledged without Redis, the local subscriber still gets it, and it is stored.
    for (let seq = 2; seq <= 6; seq++) await publishAcked(dev, 'devices/dev-1/telemetry', sample(seq));
    await waitFor('local relay during the outage', () => onA.includes(6));
    assert.deepEqual(
      onA.filter((s) => s > 1),
      [2, 3, 4, 5, 6],
    );
    assert.ok(!onB.includes(2), 'not relayed to the other instance while Redis is away');
    await waitFor('stored during the outage', async () => {
      const rows = await db.rows(`SELECT count(v) FROM telemetry WHERE device_id = 'dev-1'`, DB);
      return rows[0]?.['count'] === 6;
    });
    assert.equal(lines(/^redis unreachable/).length, 1, 'one line for the outage, not one per attempt');
    // Logins: a device that logged in here before is cached and gets in again; one never seen here
    // cannot be checked and is told to come back (CONNACK 3, server unavailable).
    const again = await connect(a.ports.mqtt, {
      clientId: 'dev-1b',
      username: 'dev-1',
      password: deviceSecret,
    }).catch((err: { code?: number }) => err);
    assert.equal(
      (again as { code?: number }).code,
      2,
      'checked (client id must be the device id), not refused as unavailable',
    );
    const unseen = await connect(a.ports.mqtt, {
      clientId: 'dev-2',
      username: 'dev-2',
      password: otherSecret,
    }).catch((err: { code?: number }) => err);
    assert.equal((unseen as { code?: number }).code, 3);

    await r.start();
    await waitFor('A ready again', async () => (await readyz(a.ports.http)).status === 200, {
      timeoutMs: 20_000,
    });
    await waitFor('B ready again', async () => (await readyz(b.bridge.ports.http)).status === 200, {
      timeoutMs: 20_000,
    });
    assert.equal(lines(/^redis reachable again/).length, 1);
    assert.equal(lines(/^redis unreachable/).length, 1);
    // This Redis keeps nothing on disk: it came back without the registry. Said once; clients stay.
    await waitFor('the loss of the registry reported', () => lines(/^redis came back without/).length === 1);
    assert.ok(dev.connected, 'a connected device is kept');

    // Relay between instances and the live stream work again.
    const browser = await LiveTestClient.connect(`ws://127.0.0.1:${b.bridge.ports.http}/live`, token);
    browser.send({ type: 'subscribe', id: 's', feeds: ['telemetry/dev-1'] });
    await browser.nextMatching((m) => m.type === 'subscribed');
    await waitFor('the relay to B after the outage', async () => {
      await publishAcked(dev, 'devices/dev-1/telemetry', sample(7 + onB.length));
      return onB.length > 1;
    });
    const live = await browser.nextMatching((m) => m.type === 'telemetry');
    assert.equal(live['device'], 'dev-1');
    browser.close();
  });

  test('shut down while Redis is away: the instance closes without waiting for Redis', async () => {
    const c = await startTestBridge(clusterEnv);
    await r.stop();
    // The live stream's reader down too: its blocked XREAD is the command ioredis strands.
    await waitFor('C not ready, its stream reader down', async () => {
      const { status, body } = await readyz(c.bridge.ports.http);
      return status === 503 && /live-reader/.test(body.reason ?? '');
    });
    let closed = false;
    void c.close().then(() => {
      closed = true;
    });
    // Polled, not awaited: a close() that hangs leaves no handle and would end the run silently.
    await waitFor('close() to return', () => closed, { timeoutMs: 10_000 });
    // A and B are closed by after() while Redis is still away.
  });
});
