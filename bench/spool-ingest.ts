/**
 * Issue 6 point 7: ingest rate and PUBACK latency with the durable spool ON (INFLUX_URL set: every
 * QoS 1 PUBACK waits for its samples to be fdatasync'ed in the spool, group commit) and OFF (no
 * INFLUX_URL: validation and live fan-out only, PUBACK at once), side by side, same load.
 *
 * Two loads, each over MQTT/TCP with authentication on, one-sample `Telemetry` messages:
 * - `saturated`: 50 devices (100 full), 8 QoS 1 messages in flight each (closed loop): the most the
 *   bridge acknowledges per second, and the latency at that rate.
 * - `light`: 10 devices, 1 message in flight each: the latency cost of a disk sync per acknowledgement
 *   when there is little to group.
 * With the spool on, the InfluxDB 1.6 database must end up with one point per PUBACK. A PUBACK waits only
 * for the disk, so the acked rate alone can outrun the InfluxDB writer; `drainSeconds` (load stopped →
 * every acked point in the DB; includes up to INFLUX_FLUSH_INTERVAL_MS for the last partial batch) and
 * `endToEndMsgPerS` (acked / (load + drain)) show whether the rate is sustainable.
 *
 *   node --import tsx bench/spool-ingest.ts [--quick]     # prints the ScenarioResult[] as JSON
 * or from the bench runner: `import { spoolIngest } from './spool-ingest.js'` (a Scenario).
 */
import { Console } from 'node:console';
import { rmSync } from 'node:fs';
import { type InfluxdServer, startInfluxd } from '../test/support/influx.js';
import { freePort, tempDir } from '../test/support/services.js';
import type { Transport } from './lib/conn.js';
import {
  type BenchContext,
  meteredFields,
  profileDirFor,
  provisionDevices,
  type Scenario,
  type ScenarioOptions,
  type ScenarioResult,
  sleep,
  until,
} from './lib/context.js';
import { Generator, slices } from './lib/generator.js';
import { meter, round, summarize } from './lib/stats.js';
import { pinning, startBridgeSut } from './lib/suts.js';

const WORKERS = 2;
const TRANSPORT: Transport = 'tcp';

interface Load {
  readonly name: 'saturated' | 'light';
  readonly devices: number;
  readonly window: number;
}

export const spoolIngest: Scenario = {
  name: 'spool-ingest',
  description: 'QoS 1 ingest rate and PUBACK latency with the durable spool on (InfluxDB 1.6) and off',
  async run(ctx: BenchContext, options: ScenarioOptions = {}): Promise<ScenarioResult[]> {
    const seconds = options.profileDir ? 5 : ctx.quick ? 3 : 10;
    const loads: Load[] = [
      { name: 'saturated', devices: ctx.quick ? 20 : 100, window: 8 },
      { name: 'light', devices: 10, window: 1 },
    ];
    const influx = await startInfluxd();
    if ('skip' in influx) throw new Error(influx.skip);
    const dataDir = tempDir('bench-spool-ingest');
    const results: ScenarioResult[] = [];
    try {
      const most = Math.max(...loads.map((l) => l.devices));
      ctx.log(`spool-ingest: provisioning ${most} devices`);
      const creds = await provisionDevices(dataDir, 'spool-', most);
      for (const load of loads) {
        for (const spool of [true, false]) {
          results.push(
            await runOne(ctx, influx, dataDir, creds.slice(0, load.devices), load, spool, seconds, options),
          );
        }
      }
    } finally {
      await influx.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
    return results;
  },
};

async function runOne(
  ctx: BenchContext,
  influx: InfluxdServer,
  dataDir: string,
  creds: { id: string; password: string }[],
  load: Load,
  spool: boolean,
  seconds: number,
  options: ScenarioOptions,
): Promise<ScenarioResult> {
  const db = `spool_${load.name}_${Date.now()}`;
  if (spool) await influx.query(`CREATE DATABASE "${db}"`);
  const ports = { mqtt: await freePort(), http: await freePort() };
  const group = `spool-ingest-${load.name}`;
  const name = spool ? 'bridge+spool' : 'bridge (spool off)';
  const sut = await startBridgeSut(ctx.pin, {
    ports,
    dataDir,
    cpuProfDir: profileDirFor(options, group, name),
    env: {
      BRIDGE_AUTH: 'on',
      ...(spool ? { INFLUX_URL: influx.url, INFLUX_API: 'v1', INFLUX_DATABASE: db } : {}),
    },
  });
  try {
    const gen = await Generator.spawn(
      slices(creds, Math.min(WORKERS, creds.length)).map((devices) => ({
        task: 'ingest' as const,
        transport: TRANSPORT,
        target: { host: '127.0.0.1', port: ports.mqtt, path: sut.wsPath },
        devices,
        window: load.window,
        baseTimeMs: Date.now() - 10 * 60_000,
        spreadAddresses: true,
      })),
    );
    const end = meter(sut.pid);
    const t0 = performance.now();
    gen.start();
    await sleep(seconds * 1000);
    const parts = await gen.stop();
    const wall = (performance.now() - t0) / 1000;
    await gen.close();
    const acked = parts.reduce((n, p) => n + (p.acked ?? 0), 0);
    const sent = parts.reduce((n, p) => n + (p.sent ?? 0), 0);
    const extra: ScenarioResult['extra'] = { sent, acked, spool };
    if (spool) {
      let count = 0;
      const drain0 = performance.now();
      const landed = await until(
        async () => {
          const rows = await influx.rows('SELECT count(temperature_c) FROM telemetry', db);
          count = Number(rows[0]?.['count'] ?? 0);
          return count >= acked;
        },
        60_000,
        250,
      );
      const drainSeconds = (performance.now() - drain0) / 1000;
      extra['drainSeconds'] = round(drainSeconds, 2);
      extra['endToEndMsgPerS'] = round(acked / (wall + drainSeconds), 0);
      extra['pointsInDb'] = count;
      extra['dbCountEqualsAcked'] = count === acked;
      if (!landed) ctx.log(`spool-ingest: only ${count} of ${acked} acknowledged points reached InfluxDB`);
    }
    // The window ends once storage caught up, so CPU per message includes writing to InfluxDB.
    const measured = end();
    const m = meteredFields(measured, sut.cores, acked, 'msg');
    const latency = summarize(parts.flatMap((p) => (p.latency ? [p.latency] : [])));
    const rate = round(acked / wall, 0);
    const label = spool ? 'spool on' : 'spool off';
    ctx.log(
      `spool-ingest ${load.name} ${label}: ${rate} msg/s acked, PUBACK p50 ${latency.p50} p99 ${latency.p99} ms, ${m.cpuPer.micros} µs/msg, bridge CPU ${measured.usage.cpuPercent}%`,
    );
    return {
      group,
      sut: name,
      baseline: 'bridge (spool off)',
      primary:
        load.name === 'saturated'
          ? { name: 'acked msg/s', value: rate, unit: 'msg/s', better: 'higher' }
          : { name: 'PUBACK p50', value: latency.p50, unit: 'ms', better: 'lower' },
      params: {
        transport: TRANSPORT,
        devices: creds.length,
        window: load.window,
        seconds,
        qos: 1,
        spool,
      },
      throughput: { value: rate, unit: 'msg/s' },
      latencyMs: latency,
      ...m,
      extra,
    };
  } finally {
    await sut.stop();
  }
}

/** Side by side: one line per load, spool on vs off. */
export function sideBySide(results: readonly ScenarioResult[]): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (const group of new Set(results.map((r) => r.group))) {
    const on = results.find((r) => r.group === group && r.params['spool'] === true);
    const off = results.find((r) => r.group === group && r.params['spool'] === false);
    rows.push({
      load: group,
      'msg/s spool on': on?.throughput?.value,
      'msg/s spool off': off?.throughput?.value,
      'PUBACK p50 ms on': on?.latencyMs?.p50,
      'PUBACK p50 ms off': off?.latencyMs?.p50,
      'PUBACK p99 ms on': on?.latencyMs?.p99,
      'PUBACK p99 ms off': off?.latencyMs?.p99,
      'DB count = acked': on?.extra['dbCountEqualsAcked'],
      'drain s': on?.extra['drainSeconds'],
      'end-to-end msg/s': on?.extra['endToEndMsgPerS'],
    });
  }
  return rows;
}

if (process.argv[1]?.match(/spool-ingest\.[jt]s$/)) {
  const ctx: BenchContext = {
    quick: process.argv.includes('--quick'),
    pin: pinning(),
    log: (m) => process.stderr.write(`${m}\n`),
  };
  ctx.log(ctx.pin.note);
  const results = await spoolIngest.run(ctx);
  new Console(process.stderr).table(sideBySide(results)); // stdout carries only the JSON
  process.stdout.write(`${JSON.stringify({ scenario: spoolIngest.name, results }, null, 1)}\n`);
}
