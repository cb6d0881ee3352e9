/**
 * Ingest: N devices publish one-sample `Telemetry` at QoS 1, each keeping `window` messages in
 * flight (closed loop: the system's own pace), over TCP and over WebSocket. The bridge runs its whole
 * path: authentication, validation, spool (fdatasync), InfluxDB 1.6 writer; after the run the count
 * of points in the database must equal the count of PUBACKs. Baselines under the same load: plain
 * Aedes (the target: bridge ≥ 1.0×) and Mosquitto, which only acknowledge.
 */
import { rmSync } from 'node:fs';
import { type InfluxdServer, startInfluxd } from '../../test/support/influx.js';
import { freePort, tempDir } from '../../test/support/services.js';
import type { Transport } from '../lib/conn.js';
import {
  type BenchContext,
  provisionDevices,
  type Scenario,
  type ScenarioOptions,
  type ScenarioResult,
  sleep,
  until,
} from '../lib/context.js';
import { Generator, slices } from '../lib/generator.js';
import { generatorCpu, ProcMonitor, round, summarize } from '../lib/stats.js';
import { pinPid, type Sut, startAedesSut, startBridgeSut, startMosquittoSut } from '../lib/suts.js';

const WINDOW = 8;
const WORKERS = 2;

export const ingest: Scenario = {
  name: 'ingest',
  description:
    'QoS 1 telemetry, validated + spooled + written to InfluxDB 1.6; PUBACK latency; DB count = acked',
  async run(ctx: BenchContext, options: ScenarioOptions = {}): Promise<ScenarioResult[]> {
    const devices = ctx.quick ? 50 : 100;
    const seconds = options.profileDir ? 5 : ctx.quick ? 4 : 10;
    const influx = await startInfluxd();
    if ('skip' in influx) throw new Error(influx.skip);
    if (!pinPid(influx.process.child.pid!, 1)) ctx.log('influxd not pinned');
    const dataDir = tempDir('bench-ingest');
    const results: ScenarioResult[] = [];
    try {
      ctx.log(`ingest: provisioning ${devices} devices`);
      const creds = await provisionDevices(dataDir, 'ing-', devices);
      const transports: Transport[] = ['tcp', 'ws'];
      const suts = options.profileDir ? (['bridge'] as const) : (['bridge', 'aedes', 'mosquitto'] as const);
      for (const transport of transports) {
        for (const name of suts) {
          const db = `bench_${transport}_${Date.now()}`;
          if (name === 'bridge') await influx.query(`CREATE DATABASE "${db}"`);
          const ports = { mqtt: await freePort(), http: await freePort() };
          const sut: Sut =
            name === 'bridge'
              ? await startBridgeSut(ctx.pin, {
                  ports,
                  dataDir,
                  ...(options.profileDir ? { cpuProfDir: options.profileDir } : {}),
                  env: {
                    BRIDGE_AUTH: 'on',
                    INFLUX_URL: influx.url,
                    INFLUX_API: 'v1',
                    INFLUX_DATABASE: db,
                  },
                })
              : name === 'aedes'
                ? await startAedesSut(ctx.pin, ports)
                : await startMosquittoSut(ctx.pin, ports);
          try {
            results.push(
              await runOne(
                ctx,
                sut,
                transport,
                creds,
                seconds,
                name === 'bridge' ? { influx, db } : undefined,
              ),
            );
          } finally {
            await sut.stop();
          }
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
  sut: Sut,
  transport: Transport,
  creds: { id: string; password: string }[],
  seconds: number,
  storage: { influx: InfluxdServer; db: string } | undefined,
): Promise<ScenarioResult> {
  const target = {
    host: '127.0.0.1',
    port: transport === 'tcp' ? sut.mqttPort : sut.httpPort,
    path: sut.wsPath,
  };
  const baseTimeMs = Date.now() - 10 * 60_000;
  const gen = await Generator.spawn(
    slices(creds, WORKERS).map((devices) => ({
      task: 'ingest' as const,
      transport,
      target,
      devices: storage ? devices : devices.map((d) => ({ id: d.id })),
      window: WINDOW,
      baseTimeMs,
      spreadAddresses: true,
    })),
  );
  const mon = new ProcMonitor(sut.pid).begin();
  const genCpu = generatorCpu();
  const t0 = performance.now();
  gen.start();
  await sleep(seconds * 1000);
  const parts = await gen.stop();
  const wall = (performance.now() - t0) / 1000;
  const gcpu = genCpu();
  const acked = parts.reduce((n, p) => n + (p.acked ?? 0), 0);
  const sent = parts.reduce((n, p) => n + (p.sent ?? 0), 0);
  const extra: ScenarioResult['extra'] = { sent, acked, unacked: sent - acked };
  if (storage) {
    // Points landed: wait until the database holds every acknowledged reading.
    let count = 0;
    const landed = await until(
      async () => {
        const rows = await storage.influx.rows('SELECT count(temperature_c) FROM telemetry', storage.db);
        count = Number(rows[0]?.['count'] ?? 0);
        return count >= acked;
      },
      60_000,
      250,
    );
    const landedSeconds = (performance.now() - t0) / 1000;
    extra['pointsInDb'] = count;
    extra['dbCountEqualsAcked'] = count === acked;
    extra['pointsLandedPerSecond'] = round(count / landedSeconds, 0);
    if (!landed)
      ctx.log(`ingest ${transport}: only ${count} of ${acked} acknowledged points reached InfluxDB`);
  }
  const usage = mon.end();
  extra['sutCpuMicrosPerMsg'] = round((usage.cpuSeconds / Math.max(acked, 1)) * 1e6, 1);
  await gen.close();
  const latency = summarize(parts.flatMap((p) => (p.latency ? [p.latency] : [])));
  const rate = round(acked / wall, 0);
  ctx.log(
    `ingest ${transport} ${sut.name}: ${rate} msg/s acked, PUBACK p50 ${latency.p50} p99 ${latency.p99} ms, SUT CPU ${usage.cpuPercent}%, generator ${gcpu.cpuPercent}%`,
  );
  return {
    group: `ingest-${transport}`,
    sut: sut.name,
    baseline: 'aedes',
    primary: { name: 'acked msg/s', value: rate, unit: 'msg/s', better: 'higher' },
    params: {
      transport,
      devices: creds.length,
      window: WINDOW,
      seconds,
      qos: 1,
      auth: storage !== undefined,
    },
    throughput: { value: rate, unit: 'msg/s' },
    latencyMs: latency,
    sutUsage: usage,
    generatorCpuPercent: gcpu.cpuPercent,
    extra,
  };
}
