/**
 * Issue 6 (point 4, SIGTERM): the bridge process, while 5 simulated devices publish QoS 1, gets SIGTERM.
 * It stops accepting at once (MQTT and HTTP ports refuse connections), flushes what it acknowledged
 * to InfluxDB within BRIDGE_SHUTDOWN_GRACE_MS and exits 0. When InfluxDB cannot take the data within
 * the grace period it still exits 0 at the deadline, and the unconfirmed points stay in the spool for
 * the next start, which writes them. Every acknowledged sample ends in InfluxDB exactly once.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { durabilityRig } from './support/durability-rig.js';
import { assertStoredExactlyOnce } from './support/durable-fleet.js';
import { waitFor } from './support/wait.js';

const DB = 'sigterm';
const GRACE_MS = 4000;
const LEFT_IN_SPOOL = 'unconfirmed points stay in the spool for the next start';

const rig = durabilityRig({ name: 'term', database: DB, faultProxy: true });

/** True when a TCP connection to the port is refused (nobody listens). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

test('SIGTERM: stops accepting, flushes within the grace period, exits 0; past it the spool keeps the rest', async (t) => {
  if (rig.skip) return t.skip(rig.skip);
  const p = rig.proxy!;
  const env = { INFLUX_FLUSH_INTERVAL_MS: '200', BRIDGE_SHUTDOWN_GRACE_MS: String(GRACE_MS) };
  let b = await rig.spawnBridge(env);
  const ports = b.ports;
  const f = await rig.startFleet();
  await waitFor('every device acknowledged 20 messages', () => f.devices.every((d) => d.stats.acked >= 20), {
    timeoutMs: 20_000,
  });

  // 1. A backlog that InfluxDB will take during the shutdown.
  p.setMode({ kind: 'status', status: 429, headers: { 'retry-after': '1' } });
  const b1 = b;
  await waitFor('a backlog of 100 points', async () => (await b1.ledger()).backlog >= 100, {
    timeoutMs: 20_000,
    intervalMs: 100,
  });
  const termAt = Date.now();
  const exit1 = b.terminate();
  await waitFor('the MQTT port to refuse connections', () => refused(ports.mqtt), { timeoutMs: 5000 });
  await waitFor('the HTTP port to refuse connections', () => refused(ports.http), { timeoutMs: 5000 });
  assert.ok(b.alive, 'still running: flushing the spool');
  const ackedAtStop = new Map([...f.acked].map(([id, s]) => [id, new Set(s)]));
  p.setMode({ kind: 'pass' });
  const e1 = await exit1;
  const took1 = Date.now() - termAt;
  assert.equal(e1.code, 0, `exit code 0 (${b.output()})`);
  assert.ok(took1 < GRACE_MS + 1000, `flushed and exited in ${took1} ms (grace ${GRACE_MS} ms)`);
  assert.ok(b.logs.some((l) => l['msg'] === 'telebridge stopped'));
  assert.ok(!b.logs.some((l) => l['msg'] === LEFT_IN_SPOOL), 'the spool was flushed');
  // Every sample acknowledged before SIGTERM (and during it) is in the database once.
  await assertStoredExactlyOnce(rig.influx!, DB, f, { drained: false });
  for (const [id, s] of ackedAtStop) assert.ok(s.size > 0, `${id} had acknowledged samples`);

  // 2. A restart finds an empty spool; then InfluxDB fails through the whole grace period.
  b = await rig.spawnBridge(env, ports);
  assert.equal((await b.ledger()).recovered, 0, 'nothing left in the spool by the flushed shutdown');
  const b2 = b;
  const since = f.messagesAcked();
  await waitFor('devices back and acknowledged', () => f.messagesAcked() >= since + 50, {
    timeoutMs: 20_000,
  });
  p.setMode({ kind: 'status', status: 500 });
  await waitFor('a backlog of 100 points', async () => (await b2.ledger()).backlog >= 100, {
    timeoutMs: 20_000,
    intervalMs: 100,
  });
  const term2At = Date.now();
  const e2 = await b.terminate();
  const took2 = Date.now() - term2At;
  assert.equal(e2.code, 0, `exit code 0 after the grace period (${b.output()})`);
  assert.ok(
    took2 >= GRACE_MS - 200 && took2 < GRACE_MS + 2000,
    `waited the grace period, no longer: ${took2} ms (grace ${GRACE_MS} ms)`,
  );
  const left = b.logs.find((l) => l['msg'] === LEFT_IN_SPOOL);
  assert.ok(left && Number(left['points']) > 0, 'the unconfirmed points are kept and said so');

  // 3. The next start recovers them and writes them; devices deliver what they kept meanwhile.
  p.setMode({ kind: 'pass' });
  b = await rig.spawnBridge(env, ports);
  const start3 = await b.ledger();
  assert.equal(start3.recovered, Number(left?.['points']), 'the next start recovers exactly what was left');
  await waitFor('every device back online', () => f.devices.every((d) => d.connState === 'online'), {
    timeoutMs: 20_000,
  });
  await f.drain(30_000);
  const b3 = b;
  await waitFor('the backlog written', async () => (await b3.ledger()).backlog === 0, { timeoutMs: 30_000 });
  await assertStoredExactlyOnce(rig.influx!, DB, f, { drained: true });
  const end = await b.ledger();
  assert.equal(end.accounted, end.received, `ledger at the end: ${JSON.stringify(end)}`);
});
