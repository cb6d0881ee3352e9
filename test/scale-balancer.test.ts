/**
 * The load balancer for real (issue 16 §3): deploy/nginx-lb.conf — the file docker-compose.scale.yml
 * mounts — run by a real nginx with its stream module, with only addresses substituted, in front of
 * three bridge processes on one Redis and one InfluxDB 1.6. Devices connect through it over TCP and
 * over WebSocket (`/mqtt`, passed through as TCP) and publish QoS 1.
 *
 * - The balancer spreads the devices over the three bridges (least connections, no stickiness).
 * - The bridge holding the most devices is SIGKILLed: its devices reconnect through the balancer to
 *   the two others (a connection attempt to the dead one fails over to the next), and publish on.
 * - The dead bridge restarts on its data dir (its spool is its own) and delivers what it had
 *   acknowledged: every acknowledged reading is in InfluxDB exactly once.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Auth } from '../src/auth/open-auth.js';
import { type BridgeProcess, repoRoot, spawnBridge } from './support/bridge-process.js';
import { startClusterServices } from './support/cluster.js';
import { assertStoredExactlyOnce, type DurableFleet, startFleet } from './support/durable-fleet.js';
import type { InfluxdServer } from './support/influx.js';
import { deriveLbConf, type RunningNginx, startNginx, streamModule } from './support/nginx.js';
import { freePort, tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const DB = 'balancer';
const PER_TRANSPORT = 6;

const stream = streamModule();
const services = stream.skip ? { skip: stream.skip } : await startClusterServices({ database: DB });
const skip = 'skip' in services ? services.skip : undefined;

let db: InfluxdServer;
let auth: Auth;
let nginx: RunningNginx | undefined;
const bridges: BridgeProcess[] = [];
const fleets: DurableFleet[] = [];
const fleetDir = tempDir('lb-fleet');
const lb = { mqtt: 0, http: 0 };

/** MQTT connections a bridge holds now, every listener. */
const connections = (b: BridgeProcess) => b.metric('bridge_connections');

describe('three bridges behind deploy/nginx-lb.conf', { skip }, () => {
  before(async () => {
    if ('skip' in services) return;
    db = services.influx;
    auth = services.auth;
    const env = services.env({ INFLUX_FLUSH_INTERVAL_MS: '200', BRIDGE_DEVICE_RATE: '0' });
    for (let i = 0; i < 3; i++) bridges.push(await spawnBridge({ env, readyTimeoutMs: 60_000 }));
    lb.mqtt = await freePort();
    lb.http = await freePort();
    const conf = deriveLbConf(readFileSync(join(repoRoot(), 'deploy', 'nginx-lb.conf'), 'utf8'), {
      mqttPort: lb.mqtt,
      httpPort: lb.http,
      bridges: bridges.map((b) => b.ports),
      ...(stream.path ? { streamModule: stream.path } : {}),
    });
    const started = await startNginx(conf, lb.mqtt);
    if ('skip' in started) throw new Error(started.skip);
    nginx = started;
  });

  after(async () => {
    for (const f of fleets) await f.stop();
    await nginx?.stop();
    for (const b of bridges) if (b.alive) await b.terminate(10_000);
    if (!('skip' in services)) await services.stop();
    for (const b of bridges) rmSync(b.dataDir, { recursive: true, force: true });
    rmSync(fleetDir, { recursive: true, force: true });
  });

  test('devices over TCP and WebSocket through the balancer; a bridge SIGKILLed: its devices move to the others, nothing acknowledged lost', async () => {
    const overTcp = await startFleet({
      dataDir: fleetDir,
      registry: auth.registry,
      url: `mqtt://127.0.0.1:${lb.mqtt}`,
      prefix: 'lb-tcp-',
      count: PER_TRANSPORT,
    });
    const overWs = await startFleet({
      dataDir: fleetDir,
      registry: auth.registry,
      url: `ws://127.0.0.1:${lb.http}/mqtt`,
      prefix: 'lb-ws-',
      count: PER_TRANSPORT,
    });
    fleets.push(overTcp, overWs);
    const devices = [...overTcp.devices, ...overWs.devices];
    const total = devices.length;
    await waitFor(
      'every device online through the balancer, and publishing',
      async () =>
        devices.every((d) => d.connState === 'online' && d.stats.acked >= 10) &&
        (await Promise.all(bridges.map(connections))).reduce((a, b) => a + b, 0) === total,
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const spread = await Promise.all(bridges.map(connections));
    assert.ok(
      spread.every((n) => n >= 1),
      `least connections spreads the devices over the three bridges: ${spread}`,
    );
    for (const listener of ['tcp', 'ws']) {
      const held = await Promise.all(bridges.map((b) => b.metric('bridge_connections', { listener })));
      assert.equal(
        held.reduce((a, b) => a + b, 0),
        PER_TRANSPORT,
        `${listener}: every device on some bridge`,
      );
    }

    const victimIndex = spread.indexOf(Math.max(...spread));
    const victim = bridges[victimIndex]!;
    const survivors = bridges.filter((b) => b !== victim);
    const reconnectsBefore = devices.reduce((n, d) => n + d.stats.reconnects, 0);
    const acked = new Map(devices.map((d) => [d.id, d.stats.acked]));
    await victim.kill();

    await waitFor(
      'the survivors to hold every device, each publishing again',
      async () =>
        devices.every((d) => d.connState === 'online' && d.stats.acked >= acked.get(d.id)! + 20) &&
        (await Promise.all(survivors.map(connections))).reduce((a, b) => a + b, 0) === total,
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const moved = devices.reduce((n, d) => n + d.stats.reconnects, 0) - reconnectsBefore;
    assert.ok(
      moved >= spread[victimIndex]!,
      `the victim's ${spread[victimIndex]} devices reconnected (${moved})`,
    );

    // The victim's spool is on its own disk: it comes back on it and delivers what it acknowledged.
    bridges[victimIndex] = await spawnBridge({
      env: victim.env,
      dataDir: victim.dataDir,
      ports: victim.ports,
      readyTimeoutMs: 60_000,
    });
    await Promise.all(fleets.map((f) => f.drain(30_000)));
    let stored = 0;
    await waitFor(
      'InfluxDB to hold every acknowledged sample exactly once',
      async () => {
        stored = 0;
        for (const f of fleets) stored += await assertStoredExactlyOnce(db, DB, f, { drained: true });
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    console.log(
      `balancer: spread ${spread.join('/')}; SIGKILLed the bridge with ${spread[victimIndex]}; ${moved} reconnects through nginx; ${stored} samples stored once`,
    );
  });
});
