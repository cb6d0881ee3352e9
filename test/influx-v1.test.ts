/**
 * Storage against a real InfluxDB 1.6 through the v1 `/write` API: exact read-back with InfluxQL,
 * the database down at start, 500 and 429 + Retry-After through a fault proxy, dead letters.
 * The tests append lines as the pipeline would (and count them as received, as it would).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Reading } from '../src/bridge/reading.js';
import { readingToLines, statusToLine } from '../src/bridge/storage/line-protocol.js';
import { openStorage } from '../src/bridge/storage/open-storage.js';
import type { Storage } from '../src/bridge/storage/storage.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createMetrics, type Metrics } from '../src/metrics.js';
import { captureLog, type InfluxdServer, ledger, startFaultProxy, startInfluxd } from './support/influx.js';
import { freePort, tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const T0 = Date.now() - 60_000;
const reading = (deviceId: string, seq: number, labels: Record<string, string> = {}): Reading => ({
  deviceId,
  seq,
  receivedAt: Date.now(),
  samples: [{ time: T0 + seq, values: { temperature_c: 20 + seq / 10, humidity: seq }, labels }],
});

interface Harness {
  storage: Storage;
  metrics: Metrics;
  logs: Record<string, unknown>[];
  dataDir: string;
  append(lines: string[]): Promise<void>;
}

const dirs: string[] = [];
async function open(
  url: string,
  database: string,
  env: Record<string, string> = {},
  dataDir?: string,
): Promise<Harness> {
  const dir = dataDir ?? tempDir('storage-v1');
  dirs.push(dir);
  const config = loadConfig({
    BRIDGE_DATA_DIR: dir,
    INFLUX_URL: url,
    INFLUX_API: 'v1',
    INFLUX_DATABASE: database,
    INFLUX_FLUSH_INTERVAL_MS: '20',
    INFLUX_TIMEOUT_MS: '2000',
    ...env,
  });
  const metrics = createMetrics({ defaultMetrics: false });
  const { stream, lines } = captureLog();
  const storage = await openStorage({
    config,
    log: createLogger('info', stream),
    metrics,
    minRetryMs: 50,
    maxRetryMs: 400,
  });
  assert.ok(storage);
  return {
    storage,
    metrics,
    logs: lines,
    dataDir: dir,
    async append(l) {
      await storage.append(l);
    },
  };
}

const count = async (influx: InfluxdServer, db: string, where = '') => {
  const rows = await influx.rows(`SELECT count(temperature_c) FROM telemetry ${where}`, db);
  return Number(rows[0]?.['count'] ?? 0);
};

describe('InfluxDB 1.6 through the v1 API', () => {
  let influx: InfluxdServer;
  let skip: string | undefined;
  before(async () => {
    const started = await startInfluxd({ database: 'tb' });
    if ('skip' in started) skip = started.skip;
    else influx = started;
  });
  after(async () => {
    await influx?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('points, fields and tags read back exactly with InfluxQL', async (t) => {
    if (skip) return t.skip(skip);
    await influx.query('CREATE DATABASE "exact"');
    const h = await open(influx.url, 'exact');
    const nasty = 'a b,c=d"e\\f\ng';
    for (let seq = 1; seq <= 50; seq++) {
      await h.append(readingToLines(reading(`dev-${seq % 5}`, seq, { room: `r ${seq % 2}`, note: nasty })));
    }
    await h.append([
      statusToLine({ deviceId: 'dev-1', state: 'online', firmware: '1.2.0 "beta"', time: T0 }),
    ]);
    // Every line written (the status line may go in a later batch than the 50 telemetry points).
    await waitFor('backlog 0', () => h.storage.backlogPoints() === 0, { timeoutMs: 15_000 });
    assert.equal(await count(influx, 'exact'), 50);
    const rows = await influx.rows(
      "SELECT * FROM telemetry WHERE device_id = 'dev-3' ORDER BY time",
      'exact',
    );
    assert.equal(rows.length, 10);
    assert.deepEqual(rows[0], {
      time: T0 + 3,
      device_id: 'dev-3',
      humidity: 3,
      note: 'a b,c=d"e\\f g',
      room: 'r 1',
      temperature_c: 20.3,
    });
    const tagKeys = await influx.query('SHOW TAG KEYS FROM telemetry', 'exact');
    assert.deepEqual(tagKeys.results[0]?.series?.[0]?.values.flat().sort(), ['device_id', 'note', 'room']);
    const status = await influx.rows('SELECT * FROM device_status', 'exact');
    assert.deepEqual(status, [{ time: T0, device_id: 'dev-1', online: true, firmware: '1.2.0 "beta"' }]);
    const l = await ledger(h.metrics.registry);
    assert.equal(l.received, 51);
    assert.equal(l.accounted, l.received);
    await h.storage.close(1000);
  });

  test('the database down at start, then up: the backlog drains, every point arrives', async (t) => {
    if (skip) return t.skip(skip);
    const port = await freePort();
    const h = await open(`http://127.0.0.1:${port}`, 'late');
    for (let seq = 1; seq <= 200; seq++) await h.append(readingToLines(reading('late-1', seq)));
    await waitFor('a failed write', async () => (await h.metrics.writeFailures.get()).values.length > 0);
    assert.equal(h.storage.backlogPoints(), 200);
    assert.equal(h.storage.readiness().ok, true, 'a small backlog keeps the bridge ready');
    const late = await startInfluxd({ port, database: 'late' });
    assert.ok(!('skip' in late));
    try {
      await waitFor('backlog drained', () => h.storage.backlogPoints() === 0, { timeoutMs: 20_000 });
      assert.equal(await count(late, 'late'), 200);
      const errors = h.logs.filter((l) => l['level'] === 50 && String(l['msg']).includes('write failed'));
      assert.ok(errors.length >= 1 && errors.length <= 2, `one line per burst, got ${errors.length}`);
      const l = await ledger(h.metrics.registry);
      assert.deepEqual([l.accounted, l.written], [200, 200]);
    } finally {
      await h.storage.close(1000);
      await late.stop();
    }
  });

  test('500 then 429 with Retry-After: nothing lost, Retry-After honoured, one log line per burst', async (t) => {
    if (skip) return t.skip(skip);
    await influx.query('CREATE DATABASE "faults"');
    const proxy = await startFaultProxy(influx.url);
    const h = await open(proxy.url, 'faults', { INFLUX_BATCH_SIZE: '100' });
    try {
      proxy.setMode({ kind: 'status', status: 500, times: 4 });
      for (let seq = 1; seq <= 150; seq++) await h.append(readingToLines(reading('f-1', seq)));
      await waitFor('the 500s to pass', () => proxy.requests.filter((r) => r.status === 500).length === 4);
      proxy.setMode({ kind: 'status', status: 429, headers: { 'retry-after': '1' }, times: 1 });
      for (let seq = 151; seq <= 300; seq++) await h.append(readingToLines(reading('f-1', seq)));
      await waitFor('backlog drained', () => h.storage.backlogPoints() === 0, { timeoutMs: 20_000 });
      assert.equal(await count(influx, 'faults'), 300);
      const i429 = proxy.requests.findIndex((r) => r.status === 429);
      const after429 = proxy.requests[i429 + 1];
      assert.ok(i429 >= 0 && after429);
      const waited = after429.at - (proxy.requests[i429]?.at ?? 0);
      assert.ok(waited >= 950, `retried ${waited} ms after a 429 with Retry-After: 1`);
      const errors = h.logs.filter((l) => l['level'] === 50);
      assert.ok(errors.length <= 2, `one log line per burst, got ${errors.length}`);
      const failures = await h.metrics.writeFailures.get();
      assert.equal(failures.values.find((v) => v.labels['class'] === 'retry')?.value, 5);
    } finally {
      await h.storage.close(1000);
      await proxy.close();
    }
  });

  test('lines the database refuses are dead-lettered with its reason; the rest is written', async (t) => {
    if (skip) return t.skip(skip);
    await influx.query('CREATE DATABASE "bad"');
    const h = await open(influx.url, 'bad');
    const good = Array.from({ length: 40 }, (_, i) => readingToLines(reading('b-1', i + 1))[0] as string);
    // A string into a float field (type conflict → partial write) and an unparsable line.
    const conflict = `telemetry,device_id=b-1 temperature_c="hot" ${T0 + 1000}`;
    const garbage = 'telemetry,device_id=b-1 this is not line protocol';
    await h.append(good.slice(0, 10));
    await waitFor('first points', async () => (await count(influx, 'bad')) === 10);
    await h.append([...good.slice(10, 20), conflict, ...good.slice(20, 30), garbage, ...good.slice(30)]);
    await waitFor('backlog drained', () => h.storage.backlogPoints() === 0, { timeoutMs: 20_000 });
    assert.equal(await count(influx, 'bad'), 40);
    const dead = readFileSync(join(h.dataDir, 'dead-letter.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: string; reason: string });
    assert.deepEqual(
      dead.map((d) => d.line),
      [conflict, garbage],
    );
    assert.match(dead[0]?.reason ?? '', /HTTP 400.*field type conflict/);
    assert.match(dead[1]?.reason ?? '', /HTTP 400/);
    assert.equal((await h.metrics.deadLettered.get()).values[0]?.value, 2);
    // Not blocked: later lines flow.
    await h.append(readingToLines(reading('b-1', 100)));
    await waitFor('later point', async () => (await count(influx, 'bad')) === 41);
    const l = await ledger(h.metrics.registry);
    assert.equal(l.accounted, l.received);
    await h.storage.close(1000);
    assert.ok(existsSync(join(h.dataDir, 'spool')));
  });

  test('413 splits the batch and a hung server times out and is retried: nothing lost', async (t) => {
    if (skip) return t.skip(skip);
    await influx.query('CREATE DATABASE "split"');
    const proxy = await startFaultProxy(influx.url);
    const h = await open(proxy.url, 'split', { INFLUX_BATCH_SIZE: '100', INFLUX_TIMEOUT_MS: '300' });
    try {
      proxy.setMode({ kind: 'hang', times: 1 });
      for (let seq = 1; seq <= 100; seq++) await h.append(readingToLines(reading('s-1', seq)));
      await waitFor('the hung request', () => proxy.requests.some((r) => r.status === 0));
      proxy.setMode({ kind: 'status', status: 413, times: 1 });
      await waitFor('backlog drained', () => h.storage.backlogPoints() === 0, { timeoutMs: 20_000 });
      assert.equal(await count(influx, 'split'), 100);
      const after413 = proxy.requests.slice(proxy.requests.findIndex((r) => r.status === 413) + 1);
      assert.ok(after413.length >= 2, 'the refused batch went again in halves');
      assert.ok(
        after413.every((r) => r.status === 204),
        JSON.stringify(after413.map((r) => r.status)),
      );
      assert.equal((await h.metrics.deadLettered.get()).values[0]?.value ?? 0, 0);
    } finally {
      await h.storage.close(1000);
      await proxy.close();
    }
  });

  test('close(grace) drains to the database; with the database gone it gives up at the grace and keeps the rest', async (t) => {
    if (skip) return t.skip(skip);
    await influx.query('CREATE DATABASE "grace"');
    const proxy = await startFaultProxy(influx.url);
    const h = await open(proxy.url, 'grace', { INFLUX_FLUSH_INTERVAL_MS: '5000' });
    for (let seq = 1; seq <= 100; seq++) await h.append(readingToLines(reading('g-1', seq)));
    await h.storage.close(5000);
    assert.equal(h.storage.backlogPoints(), 0);
    assert.equal(await count(influx, 'grace'), 100);
    // Down: close returns about at the grace, lines stay on disk for the next start.
    const h2 = await open(proxy.url, 'grace', {}, h.dataDir);
    proxy.setMode({ kind: 'status', status: 503 });
    for (let seq = 101; seq <= 150; seq++) await h2.append(readingToLines(reading('g-1', seq)));
    const t0 = Date.now();
    await h2.storage.close(300);
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 3000, `close took ${took} ms`);
    assert.equal(h2.storage.backlogPoints(), 50);
    proxy.setMode({ kind: 'pass' });
    const h3 = await open(proxy.url, 'grace', {}, h.dataDir);
    await waitFor('recovered lines written', async () => (await count(influx, 'grace')) === 150);
    await h3.storage.close(1000);
    await proxy.close();
  });
});
