/**
 * Issue 6 (5a): InfluxDB 1.6 stopped for 30 s while 5 simulated devices publish QoS 1 at 20 msg/s each
 * to the bridge process, then restarted on the same port and data dir. The bridge keeps acknowledging
 * (the spool takes the data), the ledger adds up at every scrape, and once the database is back every
 * acknowledged sample is stored exactly once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { durabilityRig } from './support/durability-rig.js';
import { assertStoredExactlyOnce } from './support/durable-fleet.js';
import { waitFor } from './support/wait.js';

const DB = 'outage';
const OUTAGE_MS = 30_000;

const rig = durabilityRig({ name: 'outage', database: DB });

test('InfluxDB down for 30 s: the bridge keeps acknowledging, then every acknowledged sample is stored once', async (t) => {
  if (rig.skip) return t.skip(rig.skip);
  const b = await rig.spawnBridge({ INFLUX_FLUSH_INTERVAL_MS: '200' });
  const f = await rig.startFleet();
  await waitFor('every device acknowledged 20 messages', () => f.devices.every((d) => d.stats.acked >= 20), {
    timeoutMs: 20_000,
  });
  await waitFor('points written before the outage', async () => (await b.ledger()).written > 0);

  await rig.stopInflux(); // by its PID; the data dir is kept
  const down = await b.ledger();
  const ackedAtStop = f.samplesAcked();
  const outageStart = Date.now();
  let scrapes = 0;
  while (Date.now() - outageStart < OUTAGE_MS) {
    // Observation pacing over the required outage, not synchronisation: one scrape a second.
    await new Promise((r) => setTimeout(r, 1000));
    const l = await b.ledger();
    assert.equal(l.accounted, l.received, `ledger during the outage: ${JSON.stringify(l)}`);
    scrapes++;
  }
  const during = await b.ledger();
  assert.ok(scrapes >= 25, `ledger scraped ${scrapes} times`);
  assert.ok(during.written - down.written <= 50 * 5, 'no more than one batch in flight written while down');
  assert.ok(during.backlog > 1000, `the spool took the data: backlog ${during.backlog}`);
  const ackedDuring = f.samplesAcked() - ackedAtStop;
  // 5 devices × 20 samples/s × 30 s = 3000; the bridge must have gone on acknowledging nearly all.
  assert.ok(ackedDuring >= 2000, `samples acknowledged during the outage: ${ackedDuring}`);
  assert.equal((await b.readyz()).status, 200, 'a small backlog keeps the bridge ready');
  assert.ok(
    b.logs.some((l) => l['msg'] === 'InfluxDB write failed; retrying (the spool keeps the data)'),
    'the outage is logged',
  );

  const back = await rig.startInflux();
  // The writer's backoff is capped at 30 s: the drain starts within that.
  await waitFor(
    'the spool drained into the restarted InfluxDB',
    async () => (await b.ledger()).backlog === 0,
    {
      timeoutMs: 60_000,
      intervalMs: 250,
    },
  );
  await f.drain(20_000);
  await waitFor('the last samples written', async () => (await b.ledger()).backlog === 0, {
    timeoutMs: 20_000,
  });
  const stored = await assertStoredExactlyOnce(back, DB, f, { drained: true });
  const end = await b.ledger();
  assert.equal(end.accounted, end.received, `ledger at the end: ${JSON.stringify(end)}`);
  assert.equal(end.deadLettered, 0);
  assert.equal(end.rejected, 0);
  // Telemetry points plus the devices' status points: every point received was written.
  assert.ok(end.written >= stored, `written ${end.written} ≥ stored telemetry ${stored}`);
});
