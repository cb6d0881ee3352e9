/**
 * Contract §3 against a real bridge and InfluxDB: every rejection reason, topic rights, credentials,
 * the WebSocket subprotocol, service users and BRIDGE_AUTH=off.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import WebSocket from 'ws';
import {
  DeviceStatus,
  decodeRejection,
  encodeTelemetry,
  publishAcked,
  startTestBridge,
  subackCodes,
  type TestBridge,
  type TestSample,
} from './support/bridge.js';
import { type InfluxdServer, startInfluxd } from './support/influx.js';
import { waitEvent, waitFor } from './support/wait.js';

const NOW = Date.now();
const many = (n: number, f: (i: number) => [string, string | number]) =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => f(i)));

/** One bad payload per reason (the rate limit is exercised separately). */
const CASES: { reason: string; payload: (id: string) => Buffer }[] = [
  {
    reason: 'too_large',
    payload: (id) =>
      encodeTelemetry(id, 1, [
        { values: { v: 1 }, labels: { pad: 'x'.repeat(200) } },
        ...Array.from({ length: 100 }, () => ({ values: { v: 1 }, labels: { pad: 'x'.repeat(250) } })),
      ]),
  },
  { reason: 'decode_error', payload: () => Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]) },
  { reason: 'device_mismatch', payload: () => encodeTelemetry('someone-else', 2, [{ values: { v: 1 } }]) },
  {
    reason: 'bad_time',
    payload: (id) => encodeTelemetry(id, 3, [{ time_unix_ms: NOW - 40 * 86_400_000, values: { v: 1 } }]),
  },
  {
    reason: 'bad_time',
    payload: (id) => encodeTelemetry(id, 4, [{ time_unix_ms: NOW + 3_600_000, values: { v: 1 } }]),
  },
  { reason: 'bad_name', payload: (id) => encodeTelemetry(id, 5, [{ values: { '1bad': 1 } }]) },
  {
    reason: 'bad_name',
    payload: (id) => encodeTelemetry(id, 6, [{ values: { v: 1 }, labels: { 'bad label': 'x' } }]),
  },
  { reason: 'bad_value', payload: (id) => encodeTelemetry(id, 7, [{ values: { v: Number.NaN } }]) },
  {
    reason: 'bad_value',
    payload: (id) => encodeTelemetry(id, 8, [{ values: { v: Number.POSITIVE_INFINITY } }]),
  },
  {
    reason: 'bad_value',
    payload: (id) => encodeTelemetry(id, 9, [{ values: { v: 1 }, labels: { l: 'x'.repeat(257) } }]),
  },
  {
    reason: 'too_many_samples',
    payload: (id) =>
      encodeTelemetry(
        id,
        10,
        Array.from({ length: 1001 }, (): TestSample => ({ values: { v: 1 } })),
      ),
  },
  { reason: 'too_many_samples', payload: (id) => encodeTelemetry(id, 11, []) },
  {
    reason: 'too_many_values',
    payload: (id) =>
      encodeTelemetry(id, 12, [{ values: many(201, (i) => [`v${i}`, i]) as Record<string, number> }]),
  },
  { reason: 'too_many_values', payload: (id) => encodeTelemetry(id, 13, [{ values: {} }]) },
  {
    reason: 'too_many_labels',
    payload: (id) =>
      encodeTelemetry(id, 14, [
        { values: { v: 1 }, labels: many(33, (i) => [`l${i}`, 'x']) as Record<string, string> },
      ]),
  },
];

describe('contract §3 rules', () => {
  let influx: InfluxdServer | undefined;
  let tb: TestBridge;
  let skip: string | undefined;

  before(async () => {
    const started = await startInfluxd({ database: 'rules' });
    if ('skip' in started) skip = started.skip;
    else influx = started;
    tb = await startTestBridge({
      ...(influx ? { INFLUX_URL: influx.url, INFLUX_API: 'v1', INFLUX_DATABASE: 'rules' } : {}),
      BRIDGE_MAX_PAYLOAD_BYTES: '20000',
      BRIDGE_MAX_PACKET_BYTES: '65536',
      BRIDGE_DEVICE_RATE: '20',
      BRIDGE_DEVICE_BURST: '40',
    });
  });
  after(async () => {
    await tb?.close();
    await influx?.stop();
  });

  test('each rejection reason: a Rejection on devices/D/errors, its counter, a PUBACK, and no point', async (t) => {
    if (skip) return t.skip(skip);
    const id = 'bad-1';
    const secret = await tb.addDevice(id);
    const client = await tb.connect('tcp', { clientId: id, username: id, password: secret });
    const rejections: { reason: string; seq: number; detail: string }[] = [];
    client.on('message', (_topic, payload) => rejections.push(decodeRejection(payload)));
    await client.subscribeAsync(`devices/${id}/errors`, { qos: 1 });
    for (const [i, c] of CASES.entries()) {
      const before = await tb.metric('bridge_rejected_total', { reason: c.reason });
      await publishAcked(client, `devices/${id}/telemetry`, c.payload(id)); // acknowledged, so it never loops
      await waitFor(`rejection #${i} (${c.reason})`, () => rejections.length === i + 1);
      assert.equal(rejections[i]?.reason, c.reason, `case ${i}: ${rejections[i]?.detail}`);
      assert.ok(rejections[i]?.detail, 'a human-readable detail');
      assert.equal(await tb.metric('bridge_rejected_total', { reason: c.reason }), before + 1);
    }
    assert.equal(rejections[3]?.seq, 3, 'the rejection names the message seq');
    // A good message afterwards is the marker: once it is stored, nothing else of this device is.
    await publishAcked(client, `devices/${id}/telemetry`, encodeTelemetry(id, 100, [{ values: { ok: 1 } }]));
    await waitFor(
      'the marker point',
      async () =>
        (await influx!.rows(`SELECT count(ok) AS n FROM telemetry WHERE device_id = '${id}'`, 'rules'))[0]?.[
          'n'
        ] === 1,
    );
    const all = await influx!.rows(`SELECT * FROM telemetry WHERE device_id = '${id}'`, 'rules');
    assert.equal(all.length, 1, 'no rejected message was stored');
    client.end();
  });

  test('rejected messages are not relayed to subscribers', async () => {
    const id = 'bad-2';
    const secret = await tb.addDevice(id);
    const watcherSecret = await tb.addUser('watcher', { publish: [], subscribe: ['devices/+/telemetry'] });
    const watcher = await tb.connect('tcp', {
      clientId: 'watcher-1',
      username: 'watcher',
      password: watcherSecret,
    });
    const seen: number[] = [];
    watcher.on('message', (_t, payload) => seen.push(payload.length));
    await watcher.subscribeAsync('devices/+/telemetry', { qos: 1 });
    const device = await tb.connect('ws', { clientId: id, username: id, password: secret });
    await publishAcked(
      device,
      `devices/${id}/telemetry`,
      encodeTelemetry(id, 1, [{ values: { v: Number.NaN } }]),
    );
    const good = encodeTelemetry(id, 2, [{ values: { v: 1 } }]);
    await publishAcked(device, `devices/${id}/telemetry`, good);
    await waitFor('the good message relayed', () => seen.length >= 1);
    assert.deepEqual(seen, [good.length], 'only the good message reached the subscriber');
    device.end();
    watcher.end();
  });

  test('a device over its rate gets rate_limited rejections at QoS 0, none at QoS 1', async () => {
    const id = 'flood-1';
    const secret = await tb.addDevice(id);
    const client = await tb.connect('tcp', { clientId: id, username: id, password: secret });
    const reasons: string[] = [];
    client.on('message', (_topic, payload) => reasons.push(decodeRejection(payload).reason));
    await client.subscribeAsync(`devices/${id}/errors`, { qos: 1 });
    const payload = encodeTelemetry(id, 1, [{ values: { v: 1 } }]);
    const before = await tb.metric('bridge_rejected_total', { reason: 'rate_limited' });
    // 80 at once: the burst of 40 passes, the rest is over the rate (fewer than 100 in a row: no ban).
    for (let i = 0; i < 80; i++) client.publish(`devices/${id}/telemetry`, payload, { qos: 0 });
    await waitFor('rate_limited rejections', () => reasons.filter((r) => r === 'rate_limited').length >= 20);
    const limited = (await tb.metric('bridge_rejected_total', { reason: 'rate_limited' })) - before;
    assert.ok(limited >= 20, `${limited} rate_limited`);
    // QoS 1 over the rate is acknowledged at the rate (20/s), never rejected.
    await Promise.all(
      Array.from({ length: 10 }, () => publishAcked(client, `devices/${id}/telemetry`, payload)),
    );
    assert.equal(await tb.metric('bridge_rejected_total', { reason: 'rate_limited' }), before + limited);
    client.end();
  });

  test('a publish outside the device topics closes its connection; a subscribe outside gets 0x80', async () => {
    const a = await tb.addDevice('own-a');
    await tb.addDevice('own-b');
    const client = await tb.connect('tcp', { clientId: 'own-a', username: 'own-a', password: a });
    const granted = await subackCodes(client, [
      'devices/own-b/commands',
      'devices/own-a/commands',
      'devices/#',
    ]);
    assert.deepEqual(granted, [128, 0, 128]);
    const closed = waitEvent(client, 'close');
    client.publish('devices/own-b/telemetry', encodeTelemetry('own-b', 1, [{ values: { v: 1 } }]), {
      qos: 1,
    });
    await closed;
    const again = await tb.connect('tcp', { clientId: 'own-a', username: 'own-a', password: a });
    const closed2 = waitEvent(again, 'close');
    again.publish('elsewhere/x', Buffer.from('x'), { qos: 0 });
    await closed2;
  });

  test('wrong or missing credentials get CONNACK 4 or 5; the client id must be the device id', async () => {
    const secret = await tb.addDevice('cred-1');
    const code = async (opts: Parameters<TestBridge['connect']>[1]) => {
      try {
        await tb.connect('tcp', opts);
        return 0;
      } catch (err) {
        return (err as { code?: number }).code;
      }
    };
    assert.equal(await code({ clientId: 'cred-1', username: 'cred-1', password: 'wrong' }), 4);
    assert.equal(await code({ clientId: 'cred-1', username: 'cred-1' }), 4);
    assert.equal(await code({ clientId: 'cred-1' }), 4);
    assert.equal(await code({ clientId: 'nobody', username: 'nobody', password: secret }), 4);
    assert.equal(await code({ clientId: 'other', username: 'cred-1', password: secret }), 2);
    assert.equal(await code({ clientId: 'cred-1', username: 'cred-1', password: secret }), 0);
  });

  test('a WebSocket upgrade on /mqtt without the mqtt subprotocol is refused', async () => {
    const url = `ws://127.0.0.1:${tb.bridge.ports.http}/mqtt`;
    const refusal = (protocols: string[]) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(url, protocols);
        ws.on('error', () => {});
        ws.once('open', () => reject(new Error('upgraded')));
        ws.once('unexpected-response', (req, res) => {
          resolve(res.statusCode ?? 0);
          req.destroy();
        });
      });
    assert.equal(await refusal([]), 400);
    assert.equal(await refusal(['chat']), 400);
    const ok = new WebSocket(url, ['mqttv3.1']);
    await once(ok, 'open');
    assert.equal(ok.protocol, 'mqttv3.1');
    ok.terminate();
  });

  test('a service user is confined to its filters; unmapped topics are relayed', async () => {
    const secret = await tb.addUser('backend', {
      publish: ['plant/#'],
      subscribe: ['plant/#', 'devices/+/status'],
    });
    const sub = await tb.connect('ws', { clientId: 'backend-sub', username: 'backend', password: secret });
    const granted = await subackCodes(sub, ['plant/#', 'devices/+/status', 'devices/+/telemetry']);
    assert.deepEqual(granted, [0, 0, 128]);
    const got = new Promise<string>((resolve) => sub.once('message', (_t, p) => resolve(p.toString())));
    const pub = await tb.connect('tcp', { clientId: 'backend-pub', username: 'backend', password: secret });
    await publishAcked(pub, 'plant/line1/speed', Buffer.from('42'));
    assert.equal(await got, '42');
    const closed = waitEvent(pub, 'close');
    pub.publish('devices/x/telemetry', Buffer.from('nope'), { qos: 1 });
    await closed;
    sub.end();
  });

  test('retained status with an OFFLINE will: stored as device_status', async (t) => {
    if (skip) return t.skip(skip);
    const id = 'stat-1';
    const secret = await tb.addDevice(id);
    const offline = Buffer.from(DeviceStatus.encode({ state: 2, firmware: '1.2.0' }).finish());
    const client: MqttClient = await tb.connect('tcp', {
      clientId: id,
      username: id,
      password: secret,
      will: { topic: `devices/${id}/status`, payload: offline, qos: 1, retain: true },
    });
    await publishAcked(
      client,
      `devices/${id}/status`,
      Buffer.from(DeviceStatus.encode({ state: 1, firmware: '1.2.0' }).finish()),
      true,
    );
    client.stream.destroy(); // an unclean drop: the will is published
    await waitFor('online then offline stored', async () => {
      const rows = await influx!.rows(
        `SELECT online, firmware FROM device_status WHERE device_id = '${id}'`,
        'rules',
      );
      return rows.length === 2 && rows.map((r) => r['online']).join() === 'true,false';
    });
  });
});

describe('BRIDGE_AUTH=off', () => {
  let tb: TestBridge;
  before(async () => {
    tb = await startTestBridge({ BRIDGE_AUTH: 'off' });
  });
  after(() => tb.close());

  test('any client uses any topic, and mapped topics are still validated', async () => {
    const client = await tb.connect('tcp', { clientId: 'anyone' });
    const rejection = new Promise<string>((resolve) =>
      client.on('message', (topic, p) => topic.endsWith('/errors') && resolve(decodeRejection(p).reason)),
    );
    await client.subscribeAsync(['devices/+/errors', 'free/#']);
    await publishAcked(client, 'free/form', Buffer.from('hello'));
    await publishAcked(client, 'devices/zz/telemetry', Buffer.from([0xff, 0xff]));
    assert.equal(await rejection, 'decode_error');
    client.end();
  });
});
