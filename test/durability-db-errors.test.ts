/**
 * Issue 6 (5c): InfluxDB answering 500, then 429 with `Retry-After`, for a while (a fault proxy in front
 * of a real InfluxDB 1.6), while 5 simulated devices publish QoS 1 at 20 msg/s each to the bridge
 * process. The bridge keeps acknowledging, retries the same batch (honouring Retry-After), the ledger
 * adds up throughout, and afterwards every acknowledged sample is stored exactly once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { durabilityRig } from './support/durability-rig.js';
import { assertStoredExactlyOnce } from './support/durable-fleet.js';
import { waitFor } from './support/wait.js';

const DB = 'errors';

const rig = durabilityRig({ name: 'errors', database: DB, faultProxy: true });

test('InfluxDB answering 500 then 429 Retry-After: nothing acknowledged is lost or doubled', async (t) => {
  if (rig.skip) return t.skip(rig.skip);
  const p = rig.proxy!;
  // Small, frequent batches: many confirmations for the steady-state ledger check to land between.
  const b = await rig.spawnBridge({ INFLUX_FLUSH_INTERVAL_MS: '20', INFLUX_BATCH_SIZE: '10' });
  const f = await rig.startFleet();
  await waitFor('every device acknowledged 20 messages', () => f.devices.every((d) => d.stats.acked >= 20), {
    timeoutMs: 20_000,
  });
  await waitFor('points written through the proxy', async () => (await b.ledger()).written > 0);

  const count = (status: number) => p.requests.filter((r) => r.status === status).length;
  const checkLedger = async (when: string) => {
    const l = await b.ledger();
    assert.equal(l.accounted, l.received, `ledger ${when}: ${JSON.stringify(l)}`);
    return l;
  };
  // "At every moment": back-to-back scrapes while batches are written and confirmed.
  const steadyEnd = Date.now() + 3000;
  let scrapes = 0;
  const writtenBefore = (await checkLedger('steady')).written;
  while (Date.now() < steadyEnd) {
    await checkLedger(`steady, scrape ${++scrapes}`);
  }
  assert.ok((await checkLedger('steady')).written >= writtenBefore + 100, 'batches written meanwhile');

  // 500s: the writer backs off and retries the same batch; devices are still acknowledged.
  p.setMode({ kind: 'status', status: 500, body: '{"error":"engine: cache maximum memory size exceeded"}' });
  const acked500 = f.samplesAcked();
  await waitFor(
    'three 500 answers',
    async () => {
      await checkLedger('while 500');
      return count(500) >= 3;
    },
    { timeoutMs: 20_000, intervalMs: 200 },
  );
  const at500 = await checkLedger('after the 500s');
  assert.ok(at500.backlog > 0, 'the spool holds what InfluxDB refused to take');
  assert.ok(f.samplesAcked() > acked500, 'devices are acknowledged while InfluxDB fails');

  // 429 with Retry-After: 1 → at least a second between attempts.
  p.setMode({ kind: 'status', status: 429, headers: { 'retry-after': '1' } });
  const first429 = p.requests.length;
  await waitFor(
    'three 429 answers',
    async () => {
      await checkLedger('while 429');
      return count(429) >= 3;
    },
    { timeoutMs: 20_000, intervalMs: 200 },
  );
  const tooMany = p.requests.slice(first429).filter((r) => r.status === 429);
  for (let i = 1; i < tooMany.length; i++) {
    const gap = (tooMany[i] as { at: number }).at - (tooMany[i - 1] as { at: number }).at;
    assert.ok(gap >= 900, `Retry-After: 1 honoured (attempts ${gap} ms apart)`);
  }
  assert.equal((await checkLedger('after the 429s')).written, at500.written, 'nothing written while failing');

  p.setMode({ kind: 'pass' });
  await waitFor('the spool drained', async () => (await b.ledger()).backlog === 0, {
    timeoutMs: 30_000,
    intervalMs: 200,
  });
  assert.ok(b.logs.some((l) => l['msg'] === 'InfluxDB writes succeed again'));
  await f.drain(20_000);
  await waitFor('the last samples written', async () => (await b.ledger()).backlog === 0);
  await assertStoredExactlyOnce(rig.influx!, DB, f, { drained: true });
  const end = await checkLedger('at the end');
  assert.equal(end.deadLettered + end.rejected, 0, 'a 5xx or 429 never dead-letters');
});
