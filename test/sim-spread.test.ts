/**
 * A restart with 500 simulated devices: the reconnections spread over the backoff window (full
 * jitter) instead of arriving as one herd. Connect times are recorded on the broker side (Aedes
 * 'client' events of the new bridge).
 *
 * BRIDGE_AUTH=off here on purpose: with authentication on, logins from one address are checked one at
 * a time (scrypt ~40 ms each), which would spread the connects by itself and hide what is measured.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { Fleet } from '../firmware-sim/fleet.js';
import { fleetIds } from '../firmware-sim/provision.js';
import { startTestBridge, type TestBridge } from './support/bridge.js';
import { freePort, tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const DEVICES = 500;
const BASE_MS = 2000;

let tb: TestBridge | undefined;
let fleet: Fleet | undefined;
const dataDir = tempDir('sim-spread');

after(async () => {
  fleet?.stop();
  await tb?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Most connects within any `widthMs` window. */
function busiest(times: readonly number[], widthMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi]! - sorted[lo]! >= widthMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

test('after a restart, 500 devices reconnect spread over the backoff window', async () => {
  const env = {
    BRIDGE_MQTT_PORT: String(await freePort()),
    BRIDGE_HTTP_PORT: String(await freePort()),
    BRIDGE_AUTH: 'off',
  };
  tb = await startTestBridge(env, { dataDir });
  fleet = new Fleet({
    devices: fleetIds('spread-', DEVICES).map((id) => ({ id })),
    shared: {
      url: tb.mqttUrl('tcp'),
      intervalMs: 60_000, // keeps CPU low: this test is about connections
      backoff: { baseMs: BASE_MS, capMs: 4 * BASE_MS, stableMs: 1000 },
    },
    connectWindowMs: 2000,
    drainMs: 0,
  });
  const done = fleet.run();
  await waitFor('all devices online', () => fleet!.progress().totals.online === DEVICES, {
    timeoutMs: 30_000,
  });

  await tb.close();
  tb = undefined;
  const connects: number[] = [];
  tb = await startTestBridge(env, { dataDir });
  const restartedAt = Date.now();
  const aedes = tb.bridge.broker.aedes;
  aedes.on('client', () => connects.push(Date.now()));
  // Devices that got in between the listener opening and this line: counted at this instant, which
  // can only make the spread look worse, never better.
  for (let i = 0; i < aedes.connectedClients; i++) connects.push(restartedAt);
  await waitFor(`${DEVICES} reconnects`, () => connects.length >= DEVICES, { timeoutMs: 30_000 }).catch(
    (err: Error) => {
      const t = fleet!.progress().totals;
      throw new Error(
        `${err.message}: ${connects.length} seen by the broker; devices: online ${t.online}, ` +
          `connects ${t.connects}, failures ${t.connectFailures} (auth ${t.authFailures}), disconnects ${t.disconnects}`,
      );
    },
  );

  const span = Math.max(...connects) - Math.min(...connects);
  const peak = busiest(connects, 100);
  const firstDelay = Math.min(...connects) - restartedAt;
  console.log(
    `reconnect spread: ${connects.length} connects over ${span} ms; busiest 100 ms: ${peak} ` +
      `(${((peak / connects.length) * 100).toFixed(1)} %); first ${firstDelay} ms after restart`,
  );
  assert.ok(peak < 0.2 * DEVICES, `busiest 100 ms holds ${peak} of ${DEVICES} reconnects (must be < 20 %)`);
  assert.ok(
    span >= BASE_MS / 2,
    `reconnects span ${span} ms, at least half the first backoff window (${BASE_MS} ms)`,
  );
  await waitFor('every device online again', () => fleet!.progress().totals.online === DEVICES);

  fleet.stop();
  const summary = await done;
  fleet = undefined;
  assert.equal(summary.devices, DEVICES);
  assert.ok(summary.reconnects >= DEVICES, 'every device counted its reconnect');
});
