/**
 * Issue 6 (5b): the bridge process killed with SIGKILL at five random moments while 5 simulated devices
 * publish QoS 1 at 20 msg/s each, and restarted each time on the same ports and data dir. The devices
 * reconnect by themselves (backoff with jitter) and re-send what was not acknowledged; each new
 * process recovers the spool and writes what the database had not confirmed. In the end every
 * acknowledged sample is in InfluxDB 1.6 exactly once, and each process's ledger added up.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { type BridgeProcess, spawnBridge } from './support/bridge-process.js';
import { assertStoredExactlyOnce, type DurableFleet, startFleet } from './support/durable-fleet.js';
import { type InfluxdServer, startInfluxd } from './support/influx.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const DB = 'sigkill';
const KILLS = 5;

const dataDir = tempDir('dur-sigkill');
let influx: InfluxdServer | undefined;
let skip: string | undefined;
let bridge: BridgeProcess | undefined;
let fleet: DurableFleet | undefined;

before(async () => {
  const started = await startInfluxd({ database: DB });
  if ('skip' in started) skip = started.skip;
  else influx = started;
});

after(async () => {
  await fleet?.stop();
  await bridge?.terminate(5000);
  await influx?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

test('SIGKILL at five random moments: after restarts every acknowledged sample is stored exactly once', async (t) => {
  if (skip || !influx) return t.skip(skip);
  const db = influx;
  const env = {
    INFLUX_URL: db.url,
    INFLUX_API: 'v1',
    INFLUX_DATABASE: DB,
    // Batches leave every half second: a kill nearly always finds unconfirmed points in the spool.
    INFLUX_FLUSH_INTERVAL_MS: '500',
  };
  let b = await spawnBridge({ dataDir, env });
  bridge = b;
  const ports = b.ports;
  const f = await startFleet({ dataDir, url: b.mqttUrl, prefix: 'kill-' });
  fleet = f;
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
    b = await spawnBridge({ dataDir, env, ports });
    bridge = b;
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
  await assertStoredExactlyOnce(db, DB, f, { drained: true });
  const end = await last.ledger();
  assert.equal(end.accounted, end.received, `ledger at the end: ${JSON.stringify(end)}`);
  assert.equal(end.deadLettered + end.rejected, 0);
});
