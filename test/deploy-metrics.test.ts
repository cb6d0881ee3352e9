/**
 * What an operator scrapes moves with the traffic: after a device publishes, `/metrics` shows
 * bridge_messages_total and bridge_influx_points_written_total grown by exactly what was sent and
 * stored (checked against a real influxd), the backlog back at zero, and /healthz, /readyz at 200.
 */
import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { type BridgeHandle, startBridge } from '../src/app.js';
import { FileRegistry } from '../src/auth/registry-file.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { loadSchemas } from '../src/schemas/registry.js';
import { type InfluxdServer, startInfluxd } from './support/influx.js';
import { tempDir } from './support/services.js';
import { waitEvent, waitFor } from './support/wait.js';

const DB = 'metrics';
const DEVICE = 'metrics-dev-1';
const MESSAGES = 20;
const SAMPLES_PER_MESSAGE = 3;

/** Contract §6. */
const CONTRACT_METRICS = [
  'bridge_connections',
  'bridge_messages_total',
  'bridge_rejected_total',
  'bridge_influx_points_written_total',
  'bridge_influx_write_seconds',
  'bridge_backlog_points',
  'bridge_live_clients',
  'bridge_e2e_latency_seconds',
];

/** Parses Prometheus text: `name{labels}` → value (labels kept as written). */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

let influx: InfluxdServer | undefined;
let bridge: BridgeHandle | undefined;
let client: MqttClient | undefined;
let skip: string | undefined;

async function scrape(): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${bridge!.ports.http}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return parseMetrics(await res.text());
}

describe('/metrics with traffic', () => {
  before(async () => {
    const started = await startInfluxd({ database: DB });
    if ('skip' in started) {
      skip = started.skip;
      return;
    }
    influx = started;
    const dir = tempDir('metrics');
    const secret = await (await FileRegistry.open(dir)).addDevice(DEVICE);
    bridge = await startBridge(
      loadConfig({
        BRIDGE_MQTT_PORT: '0',
        BRIDGE_MQTTS_PORT: '0',
        BRIDGE_HTTP_PORT: '0',
        BRIDGE_DATA_DIR: dir,
        INFLUX_URL: influx.url,
        INFLUX_API: 'v1',
        INFLUX_DATABASE: DB,
        INFLUX_FLUSH_INTERVAL_MS: '50',
        // Self-metrics would add points of their own to points_written: off, to count exactly.
        INFLUX_SELF_METRICS_MS: '0',
        LOG_LEVEL: 'warn',
      }),
      { log: createLogger('warn') },
    );
    client = mqtt.connect(`mqtt://127.0.0.1:${bridge.ports.mqtt}`, {
      clientId: DEVICE,
      username: DEVICE,
      password: secret,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    await waitEvent(client as unknown as EventEmitter, 'connect');
  });

  after(async () => {
    await client?.endAsync();
    await bridge?.close();
    await influx?.stop();
  });

  test('health endpoints answer 200; /metrics declares every metric of the contract', async (t) => {
    if (skip) return t.skip(skip);
    const text = await (await fetch(`http://127.0.0.1:${bridge!.ports.http}/metrics`)).text();
    for (const name of CONTRACT_METRICS) assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    for (const path of ['/healthz', '/readyz']) {
      const res = await fetch(`http://127.0.0.1:${bridge!.ports.http}${path}`);
      assert.equal(res.status, 200, path);
      await res.arrayBuffer();
    }
  });

  test('messages and stored points are counted as they flow', async (t) => {
    if (skip) return t.skip(skip);
    const before = await scrape();
    const type = loadSchemas(bridge!.config.schemas).type('telemetry.v1.Telemetry');
    const start = Date.now() - 60_000;
    for (let seq = 1; seq <= MESSAGES; seq++) {
      const samples = Array.from({ length: SAMPLES_PER_MESSAGE }, (_, i) => ({
        time_unix_ms: start + seq * 100 + i,
        values: { level: seq + i / 10 },
      }));
      const payload = Buffer.from(type.encode({ device_id: DEVICE, seq, samples }).finish());
      await client!.publishAsync(`devices/${DEVICE}/telemetry`, payload, { qos: 1 });
    }
    const stored = MESSAGES * SAMPLES_PER_MESSAGE;
    await waitFor('every point in influxd', async () => {
      const [row] = await influx!.rows(`SELECT count("level") AS n FROM "telemetry"`, DB);
      return Number(row?.['n'] ?? 0) === stored;
    });
    const afterWrite = await waitFor('the backlog to drain', async () => {
      const m = await scrape();
      return m.get('bridge_backlog_points') === 0 ? m : undefined;
    });
    const delta = (name: string) => (afterWrite.get(name) ?? 0) - (before.get(name) ?? 0);
    assert.equal(delta('bridge_messages_total{topic_kind="telemetry"}'), MESSAGES);
    assert.equal(delta('bridge_influx_points_written_total'), stored);
    assert.ok(delta('bridge_influx_write_seconds_count') >= 1, 'no write request timed');
    assert.equal(
      delta('bridge_e2e_latency_seconds_count'),
      stored,
      'one latency observation per fanned-out sample',
    );
    assert.equal(afterWrite.get('bridge_connections{listener="tcp"}'), 1);
    assert.equal(afterWrite.get('bridge_live_clients'), 0);
  });
});
