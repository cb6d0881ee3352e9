/**
 * Issue 6 (5b): the bridge process killed with SIGKILL at five random moments while 5 simulated devices
 * publish QoS 1 at 20 msg/s each, and restarted each time on the same ports and data dir. The devices
 * reconnect by themselves (backoff with jitter) and re-send what was not acknowledged; each new
 * process recovers the spool and writes what the database had not confirmed. In the end every
 * acknowledged sample is in InfluxDB 1.6 exactly once, and each process's ledger added up.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { durabilityRig } from './support/durability-rig.js';
import { assertStoredExactlyOnce } from './support/durable-fleet.js';
import { waitFor } from './support/wait.js';

const DB = 'sigkill';
const KILLS = 5;

const rig = durabilityRig({ name: 'kill', database: DB });

test('SIGKILL at five random moments: after restarts every acknowledged sample is stored exactly once', async (t) => {
  if (rig.skip) return t.skip(rig.skip);
  // Batches leave every half second: a kill nearly always finds unconfirmed points in the spool.
  const env = { INFLUX_FLUSH_INTERVAL_MS: '500' };
  let b = await rig.spawnBridge(env);
  const ports = b.ports;
  const f = await rig.startFleet();
  let recovered = 0;
  const moments: number[] = [];
  for (let kill = 1; kill <= KILLS; kill++) {
    const since = f.messagesAcked();
    await waitFor(
      `round ${kill}: every device online and 50 more messages acknowledged`,
      () => f.devices.every((d) => d.connState === 'online') && f.messagesAcked() >= since + 50,
      { timeoutMs: 30_000 },
    );
    // The random moment: 0–1.5 s into steady traffic (writes, appends, reconnect re-sends in flight).
    const at = Math.round(Math.random() * 1500);
    moments.push(at);
    await new Promise((r) => setTimeout(r, at));
    const l = await b.ledger();
    assert.equal(l.accounted, l.received, `round ${kill}: ledger before the kill: ${JSON.stringify(l)}`);
    const exit = await b.kill();
    assert.equal(exit.signal, 'SIGKILL');
    b = await rig.spawnBridge(env, ports);
    const r = await b.ledger();
    assert.equal(r.accounted, r.received, `round ${kill}: ledger after recovery: ${JSON.stringify(r)}`);
    recovered += r.recovered;
  }
  t.diagnostic(
    `kill moments (ms into steady traffic): ${moments.join(', ')}; points recovered: ${recovered}`,
  );
  assert.ok(recovered > 0, 'at least one kill left unconfirmed points that a restart recovered');

  await waitFor('every device back online', () => f.devices.every((d) => d.connState === 'online'), {
    timeoutMs: 30_000,
  });
  await f.drain(30_000);
  const last = b;
  await waitFor('the backlog written', async () => (await last.ledger()).backlog === 0, {
    timeoutMs: 30_000,
  });
  for (const d of f.devices)
    assert.ok(d.stats.reconnects >= KILLS, `${d.id} reconnected ${d.stats.reconnects} times`);
  await assertStoredExactlyOnce(rig.influx!, DB, f, { drained: true });
  const end = await last.ledger();
  assert.equal(end.accounted, end.received, `ledger at the end: ${JSON.stringify(end)}`);
  assert.equal(end.deadLettered + end.rejected, 0);
});
