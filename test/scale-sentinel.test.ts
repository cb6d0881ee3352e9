/**
 * Redis Sentinel under a cluster (issue 16 §2): a real redis-server primary, a replica and three
 * redis-sentinel processes on loopback; two bridges configured with REDIS_SENTINELS (every Redis
 * connection of theirs — relay, sessions, live stream, registry — goes through the sentinels) and
 * one InfluxDB 1.6. Devices publish QoS 1 to both bridges (TCP to A, WebSocket to B); a browser on
 * each bridge follows every device. The primary is SIGKILLed mid-stream and the sentinels promote the
 * replica:
 *
 * - every acknowledged reading is stored exactly once (storage never waits on Redis);
 * - both browsers continue, and never with a silent hole: per device, each telemetry counter follows
 *   on from the previous one unless the server said `gap` (then snapshots) in between;
 * - /readyz tells the truth: 503 naming Redis while the connections are down, 200 once they are on
 *   the new primary — and then devices on A reach the browser on B again.
 *
 * Then a planned failover (`SENTINEL FAILOVER`, the killed server back as a replica first): every
 * connection of both bridges moves to the new primary (none is left on the demoted one, which would
 * answer writes with READONLY), and the same three guarantees hold.
 *
 * The timings (kill → not ready → promoted → ready) are printed for docs/scaling.md.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Auth } from '../src/auth/open-auth.js';
import { startTestBridge, type TestBridge } from './support/bridge.js';
import { startClusterServices } from './support/cluster.js';
import { assertStoredExactlyOnce, type DurableFleet, startFleet } from './support/durable-fleet.js';
import type { InfluxdServer } from './support/influx.js';
import { LiveTestClient } from './support/live-client.js';
import { checkContinuity } from './support/live-continuity.js';
import type { SentinelGroup } from './support/redis.js';
import { waitFor } from './support/wait.js';

const DB = 'sentinel';

const services = await startClusterServices({ database: DB, sentinel: true });
const skip = 'skip' in services ? services.skip : undefined;

let sentinels: SentinelGroup;
let db: InfluxdServer;
let auth: Auth;
let a: TestBridge;
let b: TestBridge;
const fleets: DurableFleet[] = [];
const browsers: LiveTestClient[] = [];
/** The primary the first test killed (restarted by the second). */
let killedPort = 0;

/** /readyz of a bridge, polled every 100 ms: each change with its time. */
function watchReadiness(bridge: TestBridge): {
  changes: { at: number; status: number; reason?: string }[];
  stop(): void;
} {
  const changes: { at: number; status: number; reason?: string }[] = [];
  let stopped = false;
  const poll = async () => {
    while (!stopped) {
      const res = await fetch(`http://127.0.0.1:${bridge.bridge.ports.http}/readyz`, {
        signal: AbortSignal.timeout(2000),
      }).catch(() => undefined);
      if (res) {
        const body = (await res.json()) as { reason?: string };
        if (changes.at(-1)?.status !== res.status)
          changes.push({
            at: Date.now(),
            status: res.status,
            ...(body.reason ? { reason: body.reason } : {}),
          });
      }
      await new Promise((resolve) => setTimeout(resolve, 100)); // the polling period, not a synchronisation
    }
  };
  void poll();
  return {
    changes,
    stop: () => {
      stopped = true;
    },
  };
}

/** Devices on both bridges: 3 over TCP to A, 3 over WebSocket to B, provisioned in the cluster's registry. */
async function startTraffic(
  prefix: string,
): Promise<{ fleets: DurableFleet[]; devices: DurableFleet['devices'][number][] }> {
  const onA = await startFleet({
    dataDir: a.dataDir,
    registry: auth.registry,
    url: a.mqttUrl('tcp'),
    prefix: `${prefix}a-`,
    count: 3,
  });
  const onB = await startFleet({
    dataDir: b.dataDir,
    registry: auth.registry,
    url: b.mqttUrl('ws'),
    prefix: `${prefix}b-`,
    count: 3,
  });
  fleets.push(onA, onB);
  return { fleets: [onA, onB], devices: [...onA.devices, ...onB.devices] };
}

/** The highest counter a browser saw per device. */
const seenBy = (browser: LiveTestClient) => checkContinuity(browser.received).last;

/** Both browsers see each device's samples beyond `mark` (its samples taken at some moment) + 20. */
async function bothBrowsersSeeBeyond(
  what: string,
  devices: readonly { id: string }[],
  mark: Map<string, number>,
) {
  await waitFor(
    what,
    () =>
      browsers.every((w) => devices.every((d) => (seenBy(w).get(d.id) ?? 0) > (mark.get(d.id) ?? 0) + 20)),
    { timeoutMs: 60_000, intervalMs: 100 },
  );
}

/**
 * Stops sampling and checks the end state: every acknowledged sample stored exactly once, both
 * browsers saw each device's last sample, and no silent hole in what they saw.
 * @returns samples stored, and what each browser saw
 */
async function settle(traffic: { fleets: DurableFleet[]; devices: DurableFleet['devices'][number][] }) {
  await Promise.all(traffic.fleets.map((f) => f.drain(30_000)));
  let stored = 0;
  await waitFor(
    'InfluxDB to hold every acknowledged sample exactly once',
    async () => {
      stored = 0;
      for (const f of traffic.fleets) stored += await assertStoredExactlyOnce(db, DB, f, { drained: true });
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 250 },
  );
  await waitFor('both browsers to see every last sample', () =>
    browsers.every((w) => traffic.devices.every((d) => seenBy(w).get(d.id) === d.stats.samples)),
  );
  const continuity = browsers.map((w) => checkContinuity(w.received));
  for (const [i, c] of continuity.entries())
    assert.deepEqual(c.holes, [], `browser ${'AB'[i]}: no silent hole`);
  return {
    stored,
    seen: continuity.map((c) => `${c.telemetry} telemetry, ${c.gaps} gap, ${c.repeats} repeats`).join(' | '),
  };
}

/** Connections named `telebridge-*` on a server of the group. */
async function bridgeConnections(port: number): Promise<number> {
  const list = String(await sentinels.call(port, 'CLIENT', 'LIST'));
  return list.split('\n').filter((l) => / name=telebridge-/.test(l)).length;
}

describe('Sentinel failovers under two bridges', { skip }, () => {
  before(async () => {
    if ('skip' in services) return;
    sentinels = services.sentinels!;
    db = services.influx;
    auth = services.auth;
    const env = services.env({ BRIDGE_DEVICE_RATE: '0' });
    a = await startTestBridge(env);
    b = await startTestBridge(env);
    const { token } = await auth.tokens.create({ feeds: ['telemetry/+'] });
    for (const bridge of [a, b]) {
      const browser = await LiveTestClient.connect(`ws://127.0.0.1:${bridge.bridge.ports.http}/live`, token);
      browser.send({ type: 'subscribe', id: 'all', feeds: ['telemetry/+'] });
      browsers.push(browser);
    }
  });

  after(async () => {
    for (const f of fleets) await f.stop();
    for (const w of browsers) w.close();
    await a?.close();
    await b?.close();
    if (!('skip' in services)) await services.stop();
  });

  test('the primary SIGKILLed mid-stream: stored exactly once, browsers continue without a silent hole, /readyz truthful', async () => {
    const traffic = await startTraffic('kill-');
    await bothBrowsersSeeBeyond('both browsers to see every device', traffic.devices, new Map());
    const readiness = [watchReadiness(a), watchReadiness(b)];

    killedPort = await sentinels.primaryPort();
    const killedAt = Date.now();
    await sentinels.server(killedPort).kill();
    const promoted = await waitFor(
      'the sentinels to promote the replica',
      async () => ((await sentinels.primaryPort()) !== killedPort ? Date.now() : 0),
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    const readyAgain = await waitFor(
      'both bridges not ready, then ready again',
      () => {
        const back = readiness.map((r) => {
          const down = r.changes.findIndex((c) => c.status === 503 && c.at >= killedAt);
          const up = r.changes.findIndex((c, i) => i > down && c.status === 200);
          return down >= 0 && up >= 0 ? r.changes[up]!.at : 0;
        });
        return back.every((t) => t > 0) ? Math.max(...back) : 0;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    for (const r of readiness) {
      const down = r.changes.find((c) => c.status === 503 && c.at >= killedAt)!;
      assert.match(down.reason ?? '', /redis unavailable/, '/readyz names Redis');
    }
    // Traffic after the switch, across instances: devices on A reach the browser on B again.
    const mark = new Map(traffic.devices.map((d) => [d.id, d.stats.samples]));
    await bothBrowsersSeeBeyond(
      'readings taken after the switch to reach both browsers',
      traffic.devices,
      mark,
    );
    for (const r of readiness) r.stop();

    const { stored, seen } = await settle(traffic);
    for (const bridge of [a, b]) {
      const res = await fetch(`http://127.0.0.1:${bridge.bridge.ports.http}/readyz`);
      assert.equal(res.status, 200, 'the last word of /readyz: ready, on the new primary');
    }
    const firstDown = Math.min(
      ...readiness.map((r) => r.changes.find((c) => c.status === 503 && c.at >= killedAt)!.at),
    );
    console.log(
      `sentinel failover (SIGKILL): not ready after ${firstDown - killedAt} ms, replica promoted after ${promoted - killedAt} ms, ` +
        `both bridges ready after ${readyAgain - killedAt} ms; ${stored} samples stored once; browsers: ${seen}`,
    );
  });

  test('a planned failover (SENTINEL FAILOVER): every connection moves to the new primary; the same guarantees', async () => {
    const current = await sentinels.primaryPort();
    // The killed server comes back (empty) and the sentinels make it a replica of the new primary.
    await sentinels.server(killedPort).start();
    await waitFor(
      'the restarted server to be an in-sync replica the sentinels rely on',
      async () => {
        const info = String(await sentinels.call(killedPort, 'INFO', 'replication'));
        if (!info.includes('role:slave') || !info.includes('master_link_status:up')) return false;
        const replicas = (await sentinels.call(
          sentinels.sentinelPorts[0]!,
          'SENTINEL',
          'REPLICAS',
          'telebridge-test',
        )) as string[][];
        return replicas.some(
          (r) => r[r.indexOf('port') + 1] === String(killedPort) && r[r.indexOf('flags') + 1] === 'slave',
        );
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const traffic = await startTraffic('planned-');
    const before = new Map(traffic.devices.map((d) => [d.id, d.stats.samples]));
    await bothBrowsersSeeBeyond('both browsers to see the new devices', traffic.devices, before);
    const asked = Date.now();
    await sentinels.failover();
    const promoted = await waitFor(
      'the sentinels to switch',
      async () => ((await sentinels.primaryPort()) === killedPort ? Date.now() : 0),
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    // Truth: ready means on the primary — every connection of both bridges left the demoted one.
    const moved = await waitFor(
      'every bridge connection on the new primary, none on the old',
      async () =>
        (await bridgeConnections(current)) === 0 && (await bridgeConnections(killedPort)) >= 14
          ? Date.now()
          : 0,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    await waitFor('both bridges ready', async () => {
      for (const bridge of [a, b]) {
        const res = await fetch(`http://127.0.0.1:${bridge.bridge.ports.http}/readyz`);
        if (res.status !== 200) return false;
      }
      return true;
    });
    const mark = new Map(traffic.devices.map((d) => [d.id, d.stats.samples]));
    await bothBrowsersSeeBeyond(
      'readings taken after the switch to reach both browsers',
      traffic.devices,
      mark,
    );
    const { stored, seen } = await settle(traffic);
    console.log(
      `sentinel failover (planned): switched after ${promoted - asked} ms, every connection on the new primary after ${moved - asked} ms; ` +
        `${stored} samples stored once; browsers (both tests): ${seen}`,
    );
  });
});
