/**
 * Storage against a real VictoriaMetrics through the v2 `/api/v2/write` API (VM flattens
 * measurement + field into `telemetry_<field>` series; tags become labels).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { readingToLines } from '../src/bridge/storage/line-protocol.js';
import { openStorage } from '../src/bridge/storage/open-storage.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import { ledger, startVictoria, type VictoriaServer } from './support/influx.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

describe('VictoriaMetrics through the v2 API', () => {
  let vm: VictoriaServer;
  let skip: string | undefined;
  const dirs: string[] = [];
  before(async () => {
    const started = await startVictoria();
    if ('skip' in started) skip = started.skip;
    else vm = started;
  });
  after(async () => {
    await vm?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('every point, field and tag arrives through /api/v2/write (gzip on)', async (t) => {
    if (skip) return t.skip(skip);
    const dir = tempDir('storage-v2');
    dirs.push(dir);
    const config = loadConfig({
      BRIDGE_DATA_DIR: dir,
      INFLUX_URL: vm.url,
      INFLUX_API: 'v2',
      INFLUX_BUCKET: 'telemetry',
      INFLUX_ORG: 'org',
      INFLUX_TOKEN: 'unused-by-vm',
      INFLUX_FLUSH_INTERVAL_MS: '20',
      INFLUX_BATCH_SIZE: '250',
      INFLUX_GZIP_THRESHOLD: '0',
    });
    const metrics = createMetrics({ defaultMetrics: false });
    const storage = await openStorage({ config, log: createLogger('silent'), metrics });
    assert.ok(storage);
    const t0 = Date.now() - 60_000;
    for (let d = 0; d < 10; d++) {
      for (let seq = 1; seq <= 100; seq++) {
        const lines = readingToLines({
          deviceId: `vm-${d}`,
          seq,
          receivedAt: Date.now(),
          samples: [
            { time: t0 + seq * 10, values: { temperature_c: seq / 4, humidity: d }, labels: { site: 'a b' } },
          ],
        });
        await storage.append(lines);
      }
    }
    await waitFor('backlog drained', () => storage.backlogPoints() === 0, { timeoutMs: 20_000 });
    const series = await waitFor(
      'all samples exported',
      async () => {
        const s = await vm.exportSeries('telemetry_.*');
        return s.reduce((n, x) => n + x.values.length, 0) === 2000 ? s : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    assert.equal(series.length, 20);
    const temp5 = series.find(
      (s) => s.metric['__name__'] === 'telemetry_temperature_c' && s.metric['device_id'] === 'vm-5',
    );
    assert.ok(temp5);
    assert.deepEqual(temp5.metric, { __name__: 'telemetry_temperature_c', device_id: 'vm-5', site: 'a b' });
    assert.deepEqual(
      temp5.timestamps,
      Array.from({ length: 100 }, (_, i) => t0 + (i + 1) * 10),
    );
    assert.deepEqual(
      temp5.values,
      Array.from({ length: 100 }, (_, i) => (i + 1) / 4),
    );
    const l = await ledger(metrics.registry);
    assert.deepEqual([l.received, l.accounted, l.written], [1000, 1000, 1000]);
    await storage.close(1000);
  });
});
