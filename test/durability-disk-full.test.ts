/**
 * Issue 6 (5d): the spool's disk limit reached. The bridge process runs with a small
 * BRIDGE_SPOOL_MAX_BYTES while InfluxDB is down and 5 simulated devices publish QoS 1 at 20 msg/s each:
 * near the limit /readyz turns 503 (while QoS 1 is still acknowledged), at it QoS 1 is no longer
 * acknowledged (the devices keep their data), nothing is dropped, and the spool never passes its
 * limit. When the database comes, the spool drains and the devices deliver what they kept: every
 * acknowledged sample is stored exactly once and the ledger adds up.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { durabilityRig } from './support/durability-rig.js';
import { assertStoredExactlyOnce } from './support/durable-fleet.js';
import { waitFor } from './support/wait.js';

const DB = 'full';
const MAX_BYTES = 65_536; // the smallest limit config allows: ~5 s of this fleet's traffic

const rig = durabilityRig({ name: 'full', database: DB, influxAtStart: false });

test('spool disk limit: 503 near it, no PUBACK at it, nothing dropped; the database returns and all is delivered once', async (t) => {
  if (rig.skip) return t.skip(rig.skip);
  // InfluxDB comes later, on the port the bridge is given now.
  const b = await rig.spawnBridge({
    INFLUX_FLUSH_INTERVAL_MS: '200',
    BRIDGE_SPOOL_MAX_BYTES: String(MAX_BYTES),
    BRIDGE_SPOOL_READY_RATIO: '0.5',
  });
  assert.equal((await b.readyz()).status, 200, 'an empty spool is ready even with InfluxDB down');
  const f = await rig.startFleet();

  // Near the limit: not ready, still acknowledging.
  const notReady = await waitFor(
    '/readyz to turn 503',
    async () => {
      const r = await b.readyz();
      return r.status === 503 ? r : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  assert.match(notReady.body.reason ?? '', /BRIDGE_SPOOL_MAX_BYTES/);
  const at503 = await b.ledger();
  assert.equal(at503.refused, 0, 'readiness turns before the limit refuses anything');
  const ackedAt503 = f.messagesAcked();
  await waitFor('QoS 1 still acknowledged past the readiness mark', () => f.messagesAcked() > ackedAt503 + 5);

  // At the limit: refused, not acknowledged; the devices keep their data.
  await waitFor('the spool to refuse points', async () => (await b.ledger()).refused > 0, {
    timeoutMs: 30_000,
    intervalMs: 100,
  });
  const first = await b.ledger();
  // Let PUBACKs already on their way arrive before taking the baseline.
  const full = await waitFor(
    'a few more refusals',
    async () => {
      const l = await b.ledger();
      return l.refused >= first.refused + 5 ? l : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  const ackedAtFull = f.messagesAcked();
  const disconnectsAtFull = f.devices.reduce((n, d) => n + d.stats.disconnects, 0);
  await waitFor(
    '20 more points refused (devices reconnect and try again) and 2 s of samples kept on the devices',
    async () => (await b.ledger()).refused >= full.refused + 20 && f.buffered() >= 200,
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  const later = await b.ledger();
  assert.equal(later.accounted, later.received, `ledger at the limit: ${JSON.stringify(later)}`);
  // A record smaller than the last free bytes may still fit; beyond that nothing is acknowledged.
  assert.ok(
    f.messagesAcked() - ackedAtFull <= 3,
    `messages acknowledged at the limit: ${f.messagesAcked() - ackedAtFull}`,
  );
  assert.ok(
    f.devices.reduce((n, d) => n + d.stats.disconnects, 0) > disconnectsAtFull,
    'the bridge closes connections instead of acknowledging',
  );
  assert.ok(later.backlog - full.backlog <= 3, 'the backlog stopped growing');
  const spoolBytes = await b.metric('bridge_spool_bytes');
  assert.ok(spoolBytes <= MAX_BYTES, `spool ${spoolBytes} bytes within its limit ${MAX_BYTES}`);
  assert.equal(
    f.devices.reduce((n, d) => n + d.stats.dropped, 0),
    0,
    'devices hold their data (none dropped)',
  );
  assert.equal((await b.readyz()).status, 503);

  // The database comes: the spool drains, readiness returns, devices deliver what they kept.
  const started = await rig.startInflux();
  await waitFor('/readyz back to 200', async () => (await b.readyz()).status === 200, {
    timeoutMs: 40_000,
    intervalMs: 200,
  });
  await f.drain(40_000);
  await waitFor('the spool drained', async () => (await b.ledger()).backlog === 0, { timeoutMs: 30_000 });
  await assertStoredExactlyOnce(started, DB, f, { drained: true });
  const end = await b.ledger();
  assert.equal(end.accounted, end.received, `ledger at the end: ${JSON.stringify(end)}`);
  assert.equal(end.deadLettered + end.rejected, 0, 'nothing dropped');
  for (const d of f.devices) assert.equal(d.stats.dropped, 0, `${d.id}: nothing dropped on the device`);
});
