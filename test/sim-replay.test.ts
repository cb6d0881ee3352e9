/**
 * Simulated devices against the real bridge and InfluxDB 1.6: the bridge is stopped for a few seconds
 * and a new one started on the same ports and data directory; every device replays its offline buffer,
 * and InfluxDB holds every sample exactly once, with its original timestamp, and no gap in seq.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { WireSample } from '../firmware-sim/codec.js';
import { SimDevice } from '../firmware-sim/device.js';
import { fleetIds, provisionFleet } from '../firmware-sim/provision.js';
import { startTestBridge, type TestBridge } from './support/bridge.js';
import { type InfluxdServer, startInfluxd } from './support/influx.js';
import { freePort, tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const DEVICES = 6;
const INTERVAL_MS = 50;

let influx: InfluxdServer | undefined;
let skip: string | undefined;
let tb: TestBridge | undefined;
const devices: SimDevice[] = [];
const dataDir = tempDir('sim-replay');

before(async () => {
  const started = await startInfluxd({ database: 'telebridge' });
  if ('skip' in started) skip = started.skip;
  else influx = started;
});

after(async () => {
  await Promise.all(devices.map((d) => d.stop()));
  await tb?.close();
  await influx?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

test('after a bridge outage every device replays its buffer; storage holds every sample once, no seq gap', async (t) => {
  if (skip || !influx) return t.skip(skip);
  const env = {
    BRIDGE_MQTT_PORT: String(await freePort()),
    BRIDGE_HTTP_PORT: String(await freePort()),
    INFLUX_URL: influx.url,
    INFLUX_API: 'v1',
    INFLUX_DATABASE: 'telebridge',
  };
  // Provisioned through the simulator's own path: registry in the data dir, secrets in a fleet file.
  const creds = await provisionFleet({
    dataDir,
    ids: fleetIds('replay-', DEVICES),
    fleetFile: join(dataDir, 'sim-fleet.json'),
  });
  tb = await startTestBridge(env, { dataDir });
  const urls = [tb.mqttUrl('tcp'), tb.mqttUrl('ws')]; // half over TCP, half over WebSocket

  const acked = new Map<string, { seqs: number[]; samples: WireSample[] }>();
  for (const [i, c] of creds.entries()) {
    const device = new SimDevice({
      id: c.id,
      secret: c.secret!,
      url: urls[i % 2]!,
      intervalMs: INTERVAL_MS,
      batchSize: 25,
      backoff: { baseMs: 200, capMs: 800, stableMs: 2000 },
    });
    const record = { seqs: [] as number[], samples: [] as WireSample[] };
    acked.set(c.id, record);
    device.on('acked', (seq: number, samples: WireSample[]) => {
      record.seqs.push(seq);
      record.samples.push(...samples);
    });
    devices.push(device);
  }
  await Promise.all(devices.map((d) => d.start()));
  await waitFor('every device acknowledged 10 messages', () => devices.every((d) => d.stats.acked >= 10), {
    timeoutMs: 20_000,
  });

  // Outage: the bridge goes away; devices keep sampling into their rings.
  await tb.close();
  tb = undefined;
  await waitFor(
    'every device buffered ≥ 60 samples (3 s) offline',
    () => devices.every((d) => d.stats.buffered >= 60),
    {
      timeoutMs: 20_000,
    },
  );
  tb = await startTestBridge(env, { dataDir });
  await waitFor(
    'every device reconnected',
    () => devices.every((d) => d.stats.reconnects >= 1 && d.connState === 'online'),
    {
      timeoutMs: 20_000,
    },
  );
  // Stop sampling and let the buffers drain: everything taken must be acknowledged.
  const drained = await Promise.all(devices.map((d) => d.drain(20_000)));
  assert.ok(drained.every(Boolean), 'every buffer drained');

  for (const d of devices) {
    const r = acked.get(d.id)!;
    const seqs = [...r.seqs].sort((a, b) => a - b);
    assert.deepEqual(
      seqs,
      Array.from({ length: seqs.length }, (_, i) => i + 1),
      `${d.id}: acked seqs 1..n, no gap`,
    );
    assert.equal(r.samples.length, d.stats.samples, `${d.id}: every sample taken was acknowledged`);
    assert.equal(d.stats.dropped, 0);
    assert.equal(d.stats.rejected, 0, `${d.id}: no rejection`);
    assert.ok(
      d.stats.acked < d.stats.samples,
      `${d.id}: the backlog went out in batches (${d.stats.acked} messages for ${d.stats.samples} samples)`,
    );
  }

  // Storage: every sample exactly once, with the device's timestamp.
  for (const d of devices) {
    const expected = [...acked.get(d.id)!.samples].sort((a, b) => a.time_unix_ms - b.time_unix_ms);
    const rows = await waitFor(
      `${d.id}: ${expected.length} points in InfluxDB`,
      async () => {
        const rows = await influx!.rows(
          `SELECT "counter", "temperature_c" FROM "telemetry" WHERE "device_id" = '${d.id}' ORDER BY time ASC`,
          'telebridge',
        );
        return rows.length >= expected.length ? rows : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    assert.equal(rows.length, expected.length, `${d.id}: no extra point`);
    const counters = rows.map((r) => r['counter']);
    assert.deepEqual(
      counters,
      Array.from({ length: expected.length }, (_, i) => i + 1),
      `${d.id}: counters 1..n once each, in time order`,
    );
    assert.deepEqual(
      rows.map((r) => r['time']),
      expected.map((s) => s.time_unix_ms),
      `${d.id}: original timestamps`,
    );
  }
});
