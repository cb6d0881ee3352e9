/**
 * Scale-out (issue 9): three bridge instances on loopback sharing one real Redis and one real
 * InfluxDB 1.6. Instance A is a child process (so it can be SIGKILLed); B and C run in-process.
 * Each has its own data dir (its own spool); devices, users and the token key are the cluster's, in
 * Redis (provisioned before the instances start, as `telebridge devices add` does with REDIS_URL).
 *
 * Proves: a device on A reaches a browser on B and an MQTT subscriber on C; a browser moved from B
 * to C with its cursor gets no gap and no duplicate; a persistent session (clean: false, QoS 1) moved
 * from A to B gets what was queued while it was away; each reading is written once, by the instance
 * that accepted it; A killed, its devices move to B and C, and after A's restart (its spool is local)
 * the database holds every acknowledged sample exactly once.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import {
  connectMqtt,
  encodeTelemetry,
  publishAcked,
  startTestBridge,
  Telemetry,
  type TestBridge,
} from './support/bridge.js';
import { type BridgeProcess, spawnBridge } from './support/bridge-process.js';
import { type ClusterServices, startClusterServices } from './support/cluster.js';
import { LiveTestClient } from './support/live-client.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const DB = 'scale';
const T0 = Date.now() - 10 * 60_000;
const DEVICES = ['dev-1', 'dev-2', 'dev-3', 'dev-4', 'dev-5'];

const services = await startClusterServices({ database: DB });
const skip = 'skip' in services ? services.skip : undefined;

let cluster: ClusterServices;
let a: BridgeProcess;
let b: TestBridge;
let c: TestBridge;
const secrets = new Map<string, string>();
let subscriberSecret = '';
let token = '';
const dirs: string[] = [];
const clients: MqttClient[] = [];

const env = () => cluster.env({ BRIDGE_DEVICE_RATE: '0' });

const connect = (url: string, options: IClientOptions) =>
  connectMqtt(url, { connectTimeout: 5000, ...options }, clients);

const device = (id: string, url: string) =>
  connect(url, { clientId: id, username: id, password: secrets.get(id)! });
const sample = (id: string, seq: number) =>
  encodeTelemetry(id, seq, [{ time_unix_ms: T0 + seq, values: { v: seq } }]);
const decodeSeq = (payload: Buffer) =>
  Number((Telemetry.decode(payload) as unknown as { seq: number | Long }).seq);
type Long = { toNumber(): number };

/** Points of one device in InfluxDB: value → how many times it is stored. */
async function stored(id: string): Promise<Map<number, number>> {
  const rows = await cluster.influx.rows(`SELECT v FROM telemetry WHERE device_id = '${id}'`, DB);
  const out = new Map<number, number>();
  for (const row of rows) out.set(row['v'] as number, (out.get(row['v'] as number) ?? 0) + 1);
  return out;
}

async function pointsWritten(): Promise<number> {
  return (
    (await a.metric('bridge_influx_points_written_total')) +
    (await b.metric('bridge_influx_points_written_total')) +
    (await c.metric('bridge_influx_points_written_total'))
  );
}

describe('three instances on one Redis', { skip }, () => {
  before(async () => {
    if ('skip' in services) return;
    cluster = services;
    const dataA = tempDir('scale-a');
    const dataB = tempDir('scale-b');
    const dataC = tempDir('scale-c');
    dirs.push(dataA, dataB, dataC);
    const { auth } = cluster;
    for (const id of DEVICES) secrets.set(id, await auth.registry.addDevice(id));
    subscriberSecret = await auth.registry.addUser('backend', {
      publish: [],
      subscribe: ['devices/+/telemetry'],
    });
    token = (await auth.tokens.create({ feeds: ['telemetry/+'] })).token;
    a = await spawnBridge({ env: env(), dataDir: dataA, readyTimeoutMs: 60_000 });
    b = await startTestBridge(env(), { dataDir: dataB });
    c = await startTestBridge(env(), { dataDir: dataC });
  });

  after(async () => {
    for (const client of clients) client.end(true);
    if (a?.alive) await a.terminate();
    await b?.close();
    await c?.close();
    if (!('skip' in services)) await services.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('a device on A reaches a browser on B and an MQTT subscriber on C; stored once, by A', async () => {
    const browser = await LiveTestClient.connect(`ws://127.0.0.1:${b.bridge.ports.http}/live`, token);
    browser.send({ type: 'subscribe', id: 's1', feeds: ['telemetry/dev-1'] });
    assert.equal((await browser.next()).type, 'subscribed');
    const backend = await connect(c.mqttUrl('tcp'), {
      clientId: 'backend-1',
      username: 'backend',
      password: subscriberSecret,
    });
    const got: number[] = [];
    backend.on('message', (_topic, payload) => got.push(decodeSeq(payload)));
    await backend.subscribeAsync('devices/dev-1/telemetry', { qos: 1 });

    const written = await pointsWritten();
    const dev = await device('dev-1', a.mqttUrl);
    await publishAcked(dev, 'devices/dev-1/telemetry', sample('dev-1', 1));

    const live = await browser.nextMatching((m) => m.type === 'telemetry');
    assert.equal(live['device'], 'dev-1');
    assert.equal(live['seq'], 1);
    assert.match(String(live['cursor']), /^\d+-\d+$/);
    await waitFor('the subscriber on C', () => got.length === 1);
    assert.deepEqual(got, [1]);
    await waitFor('the point in InfluxDB', async () => (await stored('dev-1')).get(1) === 1);
    // Written by A only: B and C relayed it without storing it.
    await waitFor('A to count it', async () => (await a.metric('bridge_influx_points_written_total')) >= 1);
    assert.equal(await pointsWritten(), written + 1);
    assert.equal(await b.metric('bridge_influx_points_written_total'), 0);
    assert.equal(await c.metric('bridge_influx_points_written_total'), 0);
    browser.close();
    dev.end(true);
    backend.end(true);
  });

  test('QoS 0 fan-out of messages relayed from A and B: each subscriber on C, TCP and WebSocket, gets each once, intact', async () => {
    // C encodes each relayed message once for its subscribers (src/broker/encoded-publish.ts), keyed
    // by the origin's brokerId and counter: messages of two origins, interleaved, must not mix.
    const got: Record<'tcp' | 'ws', string[]> = { tcp: [], ws: [] };
    const subscribers: MqttClient[] = [];
    for (const transport of ['tcp', 'ws'] as const) {
      const sub = await connect(c.mqttUrl(transport), {
        clientId: `fan-${transport}`,
        username: 'backend',
        password: subscriberSecret,
      });
      sub.on('message', (topic, payload, packet) => {
        assert.equal(packet.qos, 0);
        got[transport].push(`${topic.split('/')[1]}:${decodeSeq(payload)}`);
      });
      await sub.subscribeAsync('devices/+/telemetry', { qos: 0 });
      subscribers.push(sub);
    }
    const onA = await device('dev-1', a.mqttUrl);
    const onB = await device('dev-2', b.mqttUrl('tcp'));
    const expected: string[] = [];
    for (let seq = 100; seq < 130; seq++) {
      await Promise.all([
        publishAcked(onA, 'devices/dev-1/telemetry', sample('dev-1', seq)),
        publishAcked(onB, 'devices/dev-2/telemetry', sample('dev-2', seq)),
      ]);
      expected.push(`dev-1:${seq}`, `dev-2:${seq}`);
    }
    for (const transport of ['tcp', 'ws'] as const) {
      await waitFor(
        `every message at the ${transport} subscriber`,
        () => got[transport].length >= expected.length,
      );
      assert.deepEqual([...got[transport]].sort(), [...expected].sort(), transport);
    }
    for (const client of [onA, onB, ...subscribers]) client.end(true);
  });

  test('a browser moved from B to C with its cursor: no gap, no duplicate', async () => {
    const dev = await device('dev-1', a.mqttUrl);
    // Another browser on C: it sees an event once C's stream reader has read it.
    const watchC = await LiveTestClient.connect(`ws://127.0.0.1:${c.bridge.ports.http}/live`, token);
    watchC.send({ type: 'subscribe', id: 'w', feeds: ['telemetry/dev-1'] });
    assert.equal((await watchC.next()).type, 'subscribed');
    const onB = await LiveTestClient.connect(`ws://127.0.0.1:${b.bridge.ports.http}/live`, token);
    onB.send({ type: 'subscribe', id: 's1', feeds: ['telemetry/dev-1'] });
    // Subscribed before the publishes: else B may have read them all already and answer with a
    // snapshot of seq 14 instead of the live events this test follows.
    assert.equal((await onB.next()).type, 'subscribed');
    for (let seq = 10; seq < 15; seq++)
      await publishAcked(dev, 'devices/dev-1/telemetry', sample('dev-1', seq));
    let last: Record<string, unknown> | undefined;
    while (last?.['seq'] !== 14) last = await onB.nextMatching((m) => m.type === 'telemetry');
    onB.close();
    await onB.closed;
    // While the browser is away, more readings (some on B's and C's own devices path: through A).
    for (let seq = 15; seq < 20; seq++)
      await publishAcked(dev, 'devices/dev-1/telemetry', sample('dev-1', seq));
    // The PUBACK does not wait for the stream, and each instance reads it on its own: the move is
    // made once C has read up to 19 (as it has when a real browser reconnects, after its back-off).
    // Before that, C rightly answers a cursor it has not read yet with a gap, or replays fewer.
    let seenOnC: unknown;
    while (seenOnC !== 19) seenOnC = (await watchC.nextMatching((m) => m.type === 'telemetry'))['seq'];
    watchC.close();

    const onC = await LiveTestClient.connect(`ws://127.0.0.1:${c.bridge.ports.http}/live`, token);
    onC.send({ type: 'subscribe', id: 's2', feeds: ['telemetry/dev-1'], since: last['cursor'] });
    assert.equal((await onC.next()).type, 'subscribed');
    const replayed: unknown[] = [];
    for (;;) {
      const m = await onC.next();
      assert.notEqual(m.type, 'gap', 'no gap');
      if (m.type === 'replayed') {
        assert.equal(m['count'], 5);
        break;
      }
      replayed.push(m['seq']);
    }
    assert.deepEqual(replayed, [15, 16, 17, 18, 19]);
    // Live again on C, and nothing replayed twice.
    await publishAcked(dev, 'devices/dev-1/telemetry', sample('dev-1', 20));
    assert.equal((await onC.nextMatching((m) => m.type === 'telemetry'))['seq'], 20);
    assert.deepEqual(onC.drain(), []);
    onC.close();
    dev.end(true);
  });

  test('a persistent session moved from A to B gets the QoS 1 messages queued while it was away', async () => {
    const opts = {
      clientId: 'backend-persistent',
      username: 'backend',
      password: subscriberSecret,
      clean: false,
    };
    const first = await connect(a.mqttUrl, opts);
    await first.subscribeAsync('devices/dev-2/telemetry', { qos: 1 });
    first.end(true);
    await waitFor('the session to be offline', async () => !first.connected);

    const dev = await device('dev-2', c.mqttUrl('tcp'));
    for (let seq = 1; seq <= 3; seq++)
      await publishAcked(dev, 'devices/dev-2/telemetry', sample('dev-2', seq));

    const got: number[] = [];
    const second = mqtt.connect(b.mqttUrl('tcp'), { protocolVersion: 4, reconnectPeriod: 0, ...opts });
    clients.push(second);
    second.on('message', (_topic, payload, packet) => {
      assert.equal(packet.qos, 1);
      got.push(decodeSeq(payload));
    });
    const [connack] = (await new Promise((resolve) => second.once('connect', (p) => resolve([p])))) as [
      { sessionPresent: boolean },
    ];
    assert.equal(connack.sessionPresent, true);
    await waitFor('the queued messages', () => got.length >= 3);
    assert.deepEqual(got, [1, 2, 3]);
    // And the moved session keeps receiving live.
    await publishAcked(dev, 'devices/dev-2/telemetry', sample('dev-2', 4));
    await waitFor('the live message', () => got.length === 4);
    second.end(true);
    dev.end(true);
  });

  test('A killed: its devices move to B and C; every acknowledged sample stored exactly once', async () => {
    const movers = ['dev-3', 'dev-4', 'dev-5'];
    const targets = [b.mqttUrl('tcp'), c.mqttUrl('tcp')];
    const perDevice = 40;
    const acked = new Map<string, Set<number>>(movers.map((id) => [id, new Set()]));
    let killed = false;

    // A device as firmware does it: publish QoS 1, wait for PUBACK; when the connection drops,
    // connect to another instance and send the unacknowledged message again.
    const run = async (id: string, index: number) => {
      let client = await device(id, a.mqttUrl);
      for (let seq = 1; seq <= perDevice; seq++) {
        for (let attempt = 0; ; attempt++) {
          try {
            const current = client;
            let onClose = () => {};
            await Promise.race([
              publishAcked(current, `devices/${id}/telemetry`, sample(id, seq)),
              new Promise((_, reject) => {
                onClose = () => reject(new Error('closed'));
                current.once('close', onClose);
              }),
            ]).finally(() => current.removeListener('close', onClose));
            acked.get(id)!.add(seq);
            break;
          } catch {
            assert.ok(attempt < 20, `${id} could not reconnect`);
            client.end(true);
            await waitFor(`${id} to reconnect`, async () => {
              try {
                client = await device(id, targets[(index + attempt) % targets.length]!);
                return true;
              } catch {
                return false;
              }
            });
          }
        }
      }
      client.end(true);
    };
    const runs = movers.map((id, i) => run(id, i));
    await waitFor('some acknowledged on A', () => [...acked.values()].every((s) => s.size >= 10));
    await a.kill();
    killed = true;
    await Promise.all(runs);
    assert.ok(killed);
    for (const id of movers) assert.equal(acked.get(id)!.size, perDevice);

    // A's spool is local: restarting A on its data dir delivers what it acknowledged before dying.
    a = await spawnBridge({ env: a.env, dataDir: a.dataDir, ports: a.ports, readyTimeoutMs: 60_000 });
    for (const id of movers) {
      await waitFor(
        `every acknowledged sample of ${id} in InfluxDB`,
        async () => (await stored(id)).size === perDevice,
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      const points = await stored(id);
      for (let seq = 1; seq <= perDevice; seq++) assert.equal(points.get(seq), 1, `${id} seq ${seq} once`);
    }
  });
});
