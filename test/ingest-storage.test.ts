/**
 * The ingest path end to end against real storage: devices over MQTT/wss and MQTT/TCP → validation →
 * InfluxDB 1.6 through the v1 API, and VictoriaMetrics through the v2 API (`/api/v2/write`); and
 * storage that is down at start-up and comes back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { encodeTelemetry, publishAcked, startTestBridge, type TestBridge } from './support/bridge.js';
import { type InfluxdServer, startInfluxd, startVictoria, type VictoriaServer } from './support/influx.js';
import { freePort } from './support/services.js';
import { waitFor } from './support/wait.js';

const DEVICES = 10;
const MESSAGES = 100;
const T0 = Date.now() - 3_600_000;

/** Sample time of a device's message: unique per (device, seq), in the past hour. */
const timeOf = (device: number, seq: number) => T0 + seq * 1000 + device;

/** Each of DEVICES devices publishes MESSAGES messages (seq from `firstSeq`), awaiting each PUBACK. */
async function publishFleet(tb: TestBridge, secrets: string[], transport: 'tcp' | 'wss', firstSeq: number) {
  await Promise.all(
    secrets.map(async (secret, d) => {
      const id = `dev-${d}`;
      const client: MqttClient = await tb.connect(transport, {
        clientId: id,
        username: id,
        password: secret,
      });
      for (let seq = firstSeq; seq < firstSeq + MESSAGES; seq++) {
        const payload = encodeTelemetry(id, seq, [
          {
            time_unix_ms: timeOf(d, seq),
            values: { temperature_c: 20 + d + seq / 1000, humidity_pct: 40 + seq / 10 },
            labels: { site: 'lab', transport },
          },
        ]);
        await publishAcked(client, `devices/${id}/telemetry`, payload);
      }
      client.end();
    }),
  );
}

/** Provisions the devices, publishes the fleet over wss then TCP; returns the points expected. */
async function ingestFleet(tb: TestBridge): Promise<number> {
  const secrets = await Promise.all(Array.from({ length: DEVICES }, (_, d) => tb.addDevice(`dev-${d}`)));
  await publishFleet(tb, secrets, 'wss', 0);
  await publishFleet(tb, secrets, 'tcp', MESSAGES);
  return DEVICES * MESSAGES * 2;
}

describe('ingest into InfluxDB 1.6 through the v1 API', () => {
  let influx: InfluxdServer | undefined;
  let tb: TestBridge | undefined;
  let skip: string | undefined;

  before(async () => {
    const started = await startInfluxd({ database: 'telebridge' });
    if ('skip' in started) {
      skip = started.skip;
      return;
    }
    influx = started;
    tb = await startTestBridge(
      { INFLUX_URL: influx.url, INFLUX_API: 'v1', INFLUX_DATABASE: 'telebridge' },
      { tls: true },
    );
  });
  after(async () => {
    await tb?.close();
    await influx?.stop();
  });

  test('10 devices × 100 messages over wss and over TCP: exact points, fields and tags', async (t) => {
    if (skip) return t.skip(skip);
    const expected = await ingestFleet(tb!);
    // Confirmed by InfluxDB (counted once the writer has its answer; the points can be queryable a
    // moment before that, so waiting on the query alone races the counter below).
    await waitFor(
      'every point confirmed',
      async () => (await tb!.metric('bridge_influx_points_written_total')) === expected,
      { timeoutMs: 30_000 },
    );
    const total = await influx!.rows('SELECT count(temperature_c) AS n FROM telemetry', 'telebridge');
    assert.equal(total[0]?.['n'], expected);
    const perDevice = await influx!.query(
      'SELECT count(temperature_c) AS t, count(humidity_pct) AS h FROM telemetry GROUP BY device_id, transport',
      'telebridge',
    );
    const series = perDevice.results[0]?.series ?? [];
    assert.equal(series.length, DEVICES * 2, 'one series per device and transport');
    for (const s of series) assert.deepEqual(s.values[0]?.slice(1), [MESSAGES, MESSAGES]);

    const tagKeys = await influx!.rows('SHOW TAG KEYS FROM telemetry', 'telebridge');
    assert.deepEqual(tagKeys.map((r) => r['tagKey']).sort(), ['device_id', 'site', 'transport']);
    const fieldKeys = await influx!.rows('SHOW FIELD KEYS FROM telemetry', 'telebridge');
    assert.deepEqual(fieldKeys.map((r) => `${r['fieldKey']}:${r['fieldType']}`).sort(), [
      'humidity_pct:float',
      'temperature_c:float',
    ]);
    const one = await influx!.rows(
      `SELECT temperature_c, humidity_pct FROM telemetry WHERE device_id = 'dev-3' AND time = ${timeOf(3, 42)}ms`,
      'telebridge',
    );
    assert.equal(one.length, 1);
    assert.equal(one[0]?.['temperature_c'], 20 + 3 + 42 / 1000);
    assert.equal(one[0]?.['humidity_pct'], 40 + 42 / 10);
    assert.equal(await tb!.metric('bridge_influx_points_written_total'), expected);
    assert.equal(await tb!.metric('bridge_messages_total', { topic_kind: 'telemetry' }), expected);
  });

  test('the same sample written twice lands once', async (t) => {
    if (skip) return t.skip(skip);
    const secret = await tb!.addDevice('dup-1');
    const client = await tb!.connect('tcp', { clientId: 'dup-1', username: 'dup-1', password: secret });
    const payload = encodeTelemetry('dup-1', 1, [{ time_unix_ms: T0, values: { v: 1 } }]);
    await publishAcked(client, 'devices/dup-1/telemetry', payload);
    await publishAcked(client, 'devices/dup-1/telemetry', payload);
    client.end();
    await waitFor(
      'both writes confirmed',
      async () => (await tb!.bridge.metrics.backlog.get()).values[0]?.value === 0,
    );
    const rows = await influx!.rows(
      `SELECT count(v) AS n FROM telemetry WHERE device_id = 'dup-1'`,
      'telebridge',
    );
    assert.equal(rows[0]?.['n'], 1);
  });
});

describe('ingest into a server that serves /api/v2/write (VictoriaMetrics) through the v2 API', () => {
  let vm: VictoriaServer | undefined;
  let tb: TestBridge | undefined;
  let skip: string | undefined;

  before(async () => {
    const started = await startVictoria();
    if ('skip' in started) {
      skip = started.skip;
      return;
    }
    vm = started;
    tb = await startTestBridge(
      {
        INFLUX_URL: vm.url,
        INFLUX_API: 'v2',
        INFLUX_BUCKET: 'telebridge',
        INFLUX_ORG: 'acme',
        INFLUX_TOKEN: 't0ken',
      },
      { tls: true },
    );
  });
  after(async () => {
    await tb?.close();
    await vm?.stop();
  });

  test('10 devices × 100 messages over wss and over TCP: every point, tag and value', async (t) => {
    if (skip) return t.skip(skip);
    const expected = await ingestFleet(tb!);
    await waitFor(
      'every point confirmed',
      async () => (await tb!.metric('bridge_influx_points_written_total')) === expected,
      {
        timeoutMs: 30_000,
      },
    );
    const series = await waitFor(
      'every point exported',
      async () => {
        const s = await vm!.exportSeries('telemetry_temperature_c');
        return s.reduce((n, x) => n + x.timestamps.length, 0) === expected ? s : undefined;
      },
      { timeoutMs: 30_000 },
    );
    assert.equal(series.length, DEVICES * 2);
    for (const s of series) {
      assert.equal(s.metric['site'], 'lab');
      assert.match(s.metric['device_id'] ?? '', /^dev-\d$/);
      assert.equal(s.timestamps.length, MESSAGES);
    }
    const humidity = await vm!.exportSeries('telemetry_humidity_pct');
    assert.equal(
      humidity.reduce((n, x) => n + x.timestamps.length, 0),
      expected,
    );
    const dev3 = series.find((s) => s.metric['device_id'] === 'dev-3' && s.metric['transport'] === 'wss')!;
    const at = dev3.timestamps.indexOf(timeOf(3, 42));
    assert.ok(at >= 0, 'the sample time is kept to the millisecond');
    assert.equal(dev3.values[at], 20 + 3 + 42 / 1000);
  });
});

describe('storage down at start-up', () => {
  test('readings are acknowledged and spooled, and drain once InfluxDB comes up', async (t) => {
    const port = await freePort();
    const tb = await startTestBridge({
      INFLUX_URL: `http://127.0.0.1:${port}`,
      INFLUX_API: 'v1',
      INFLUX_DATABASE: 'late',
      INFLUX_TIMEOUT_MS: '1000',
    });
    let influx: InfluxdServer | undefined;
    try {
      const secret = await tb.addDevice('late-1');
      const client = await tb.connect('tcp', { clientId: 'late-1', username: 'late-1', password: secret });
      for (let seq = 0; seq < 50; seq++) {
        await publishAcked(
          client,
          'devices/late-1/telemetry',
          encodeTelemetry('late-1', seq, [{ time_unix_ms: T0 + seq, values: { v: seq } }]),
        );
      }
      client.end();
      assert.equal(await tb.metric('bridge_backlog_points'), 50, 'all 50 wait in the spool');
      assert.equal(await tb.metric('bridge_influx_points_written_total'), 0);
      const started = await startInfluxd({ database: 'late', port });
      if ('skip' in started) return t.skip(started.skip);
      influx = started;
      await waitFor(
        '50 points in InfluxDB',
        async () => (await influx!.rows('SELECT count(v) AS n FROM telemetry', 'late'))[0]?.['n'] === 50,
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      await waitFor('an empty backlog', async () => (await tb.metric('bridge_backlog_points')) === 0);
    } finally {
      await tb.close();
      await influx?.stop();
    }
  });
});
