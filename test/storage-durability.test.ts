/**
 * The spool's promises at the Storage boundary, with a real InfluxDB 1.6: the disk limit (E_SPOOL_FULL,
 * readiness) and recovery after SIGKILL of a process that was appending and writing.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readingToLines } from '../src/bridge/storage/line-protocol.js';
import { openStorage } from '../src/bridge/storage/open-storage.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import { projectRoot } from '../src/paths.js';
import { type InfluxdServer, ledger, startInfluxd } from './support/influx.js';
import { freePort, tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const T0 = Date.now() - 60_000;
const line = (device: string, seq: number) =>
  readingToLines({
    deviceId: device,
    seq,
    receivedAt: 0,
    samples: [{ time: T0 + seq, values: { seq }, labels: { pad: 'x'.repeat(200) } }],
  })[0] as string;

describe('storage durability', () => {
  let influx: InfluxdServer;
  let skip: string | undefined;
  const dirs: string[] = [];
  before(async () => {
    const started = await startInfluxd({ database: 'dur' });
    if ('skip' in started) skip = started.skip;
    else influx = started;
  });
  after(async () => {
    await influx?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('at the spool limit append rejects with E_SPOOL_FULL, readiness turns not ok first; both recover', async (t) => {
    if (skip) return t.skip(skip);
    const dir = tempDir('storage-full');
    dirs.push(dir);
    const port = await freePort();
    const config = loadConfig({
      BRIDGE_DATA_DIR: dir,
      INFLUX_URL: `http://127.0.0.1:${port}`,
      INFLUX_API: 'v1',
      INFLUX_DATABASE: 'full',
      INFLUX_FLUSH_INTERVAL_MS: '20',
      BRIDGE_SPOOL_MAX_BYTES: '65536',
      BRIDGE_SPOOL_READY_RATIO: '0.5',
    });
    const metrics = createMetrics({ defaultMetrics: false });
    const storage = await openStorage({
      config,
      log: createLogger('silent'),
      metrics,
      minRetryMs: 50,
      maxRetryMs: 200,
    });
    assert.ok(storage);
    let acked = 0;
    let notReadyAt: number | undefined;
    let error: { code?: string } | undefined;
    for (let seq = 1; seq <= 1000 && !error; seq++) {
      try {
        await storage.append([line('full-1', seq)]);
        acked = seq;
      } catch (err) {
        error = err as { code?: string };
      }
      if (notReadyAt === undefined && !storage.readiness().ok) notReadyAt = seq;
    }
    assert.equal(error?.code, 'E_SPOOL_FULL');
    assert.ok(
      notReadyAt !== undefined && notReadyAt < acked,
      `not ready at ${notReadyAt}, full after ${acked}`,
    );
    assert.match(storage.readiness().reason ?? '', /BRIDGE_SPOOL_MAX_BYTES/);
    assert.equal(storage.backlogPoints(), acked);
    assert.equal((await metrics.samplesRefused.get()).values[0]?.value, 1);
    // The database comes: the spool drains, readiness and appends come back.
    const late = await startInfluxd({ port, database: 'full' });
    assert.ok(!('skip' in late));
    try {
      await waitFor('drained', () => storage.backlogPoints() === 0, { timeoutMs: 20_000 });
      // Readiness counts the segment files still on disk: the confirmed ones are deleted just after
      // the backlog is counted down (once the cursor is durable), so it comes back a moment later.
      await waitFor('ready again', () => storage.readiness().ok);
      await storage.append([line('full-1', acked + 1)]);
      await waitFor('drained again', () => storage.backlogPoints() === 0);
      const rows = await late.rows('SELECT count(seq) FROM telemetry', 'full');
      assert.equal(rows[0]?.['count'], acked + 1);
      const l = await ledger(metrics.registry);
      assert.equal(l.accounted, l.received);
    } finally {
      await storage.close(1000);
      await late.stop();
    }
  });

  test('SIGKILL while appending and writing: every acknowledged line reaches the database after restart', async (t) => {
    if (skip) return t.skip(skip);
    const dir = tempDir('storage-kill');
    dirs.push(dir);
    const env = {
      BRIDGE_DATA_DIR: dir,
      INFLUX_URL: influx.url,
      INFLUX_API: 'v1',
      INFLUX_DATABASE: 'dur',
      INFLUX_FLUSH_INTERVAL_MS: '20',
      INFLUX_BATCH_SIZE: '50',
    };
    const script = join(dir, 'child.mts');
    // The sources, run through tsx: the same whether this test runs from test/ or dist/test/.
    const root = projectRoot();
    writeFileSync(
      script,
      `import { openStorage } from ${JSON.stringify(join(root, 'src/bridge/storage/open-storage.ts'))};
import { readingToLines } from ${JSON.stringify(join(root, 'src/bridge/storage/line-protocol.ts'))};
import { loadConfig } from ${JSON.stringify(join(root, 'src/config.ts'))};
import { createLogger } from ${JSON.stringify(join(root, 'src/log.ts'))};
import { createMetrics } from ${JSON.stringify(join(root, 'src/metrics.ts'))};
const storage = await openStorage({ config: loadConfig(process.env), log: createLogger('silent'), metrics: createMetrics() });
for (let seq = 1; seq <= 1_000_000; seq++) {
  await storage.append(readingToLines({ deviceId: 'kill-1', seq, receivedAt: 0,
    samples: [{ time: ${T0} + seq, values: { seq }, labels: {} }] }));
  process.stdout.write('acked ' + seq + '\\n');
}
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let acked = 0;
    child.stdout.on('data', (c: Buffer) => {
      const m = /acked (\d+)\n?$/.exec(c.toString().trimEnd());
      if (m) acked = Number(m[1]);
    });
    const exited = new Promise((r) => child.once('exit', r));
    // Kill at a moment some batches are confirmed and more are in the spool.
    await waitFor('the child to ack 3000 lines', () => acked >= 3000, { timeoutMs: 30_000 });
    child.kill('SIGKILL');
    await exited;
    const ackedAtKill = acked;
    const metrics = createMetrics({ defaultMetrics: false });
    const storage = await openStorage({ config: loadConfig(env), log: createLogger('silent'), metrics });
    assert.ok(storage);
    try {
      await waitFor('recovered backlog drained', () => storage.backlogPoints() === 0, { timeoutMs: 20_000 });
      const rows = await influx.rows("SELECT seq FROM telemetry WHERE device_id = 'kill-1'", 'dur');
      const seqs = new Set(rows.map((r) => r['seq']));
      const missing: number[] = [];
      for (let s = 1; s <= ackedAtKill; s++) if (!seqs.has(s)) missing.push(s);
      assert.deepEqual(missing.slice(0, 10), [], `${missing.length} acknowledged lines missing`);
      const l = await ledger(metrics.registry);
      assert.equal(l.accounted, l.received);
    } finally {
      await storage.close(1000);
    }
  });
});
