/**
 * Ingest: N devices publish one-sample `Telemetry` at QoS 1, each keeping `window` messages in
 * flight (closed loop: the system's own pace), over TCP and over WebSocket. The bridge runs its whole
 * path: authentication, validation, spool (fdatasync), InfluxDB 1.6 writer; after the run the count
 * of points in the database must equal the count of PUBACKs. Baselines under the same load: plain
 * Aedes (the target: bridge ≥ 0.7×, issue 14) and Mosquitto, which only acknowledge.
 *
 * Cores: the bridge, plain Aedes and Mosquitto each get core 0 (the comparison); a second bridge row,
 * `bridge (2 cores)`, gets cores 0 and 1 and is compared with the one-core bridge: what a second
 * core buys. Core 1 is where the load generator and InfluxDB run in every row (InfluxDB must not
 * take the SUT's core; the generator needs about half of core 1 at the bridge's rate), so in the
 * two-core row the bridge shares that core with them.
 *
 * The measured window runs from the first PUBLISH until every acknowledged point is in InfluxDB
 * (bridge) or the load stopped (baselines), so the bridge's CPU per message includes storage.
 */
import { rmSync } from 'node:fs';
import { type InfluxdServer, startInfluxd } from '../../test/support/influx.js';
import { freePort, tempDir } from '../../test/support/services.js';
import type { Transport } from '../lib/conn.js';
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
} from '../lib/context.js';
import { Generator, slices } from '../lib/generator.js';
import { meter, round, summarize } from '../lib/stats.js';
import {
  type Cores,
  pinPid,
  type Sut,
  startAedesSut,
  startBridgeSut,
  startMosquittoSut,
} from '../lib/suts.js';

/** The systems of one transport's group, in order; `bridge2` is the bridge on two cores. */
type Row = 'bridge' | 'bridge2' | 'aedes' | 'mosquitto';
const ROW_NAME: Record<Row, string> = {
  bridge: 'bridge',
  bridge2: 'bridge (2 cores)',
  aedes: 'aedes',
  mosquitto: 'mosquitto',
};

const WINDOW = 8;
const WORKERS = 2;

export const ingest: Scenario = {
  name: 'ingest',
  description:
    'QoS 1 telemetry, validated + spooled + written to InfluxDB 1.6; PUBACK latency; DB count = acked',
  async run(ctx: BenchContext, options: ScenarioOptions = {}): Promise<ScenarioResult[]> {
    const devices = ctx.quick ? 20 : 100;
    const seconds = options.profileDir ? 5 : ctx.quick ? 3 : 10;
    const influx = await startInfluxd();
    if ('skip' in influx) throw new Error(influx.skip);
    if (!pinPid(influx.process.child.pid!, 1)) ctx.log('influxd not pinned');
    const dataDir = tempDir('bench-ingest');
    const results: ScenarioResult[] = [];
    try {
      ctx.log(`ingest: provisioning ${devices} devices`);
      const creds = await provisionDevices(dataDir, 'ing-', devices);
      const transports: Transport[] = ['tcp', 'ws'];
      const rows: Row[] = options.profileDir
        ? ['bridge', 'bridge2']
        : ['bridge', 'bridge2', 'aedes', 'mosquitto'];
      for (const transport of transports) {
        for (const row of rows) {
          const isBridge = row === 'bridge' || row === 'bridge2';
          const db = `bench_${transport}_${row}_${Date.now()}`;
          if (isBridge) await influx.query(`CREATE DATABASE "${db}"`);
          const ports = { mqtt: await freePort(), http: await freePort() };
          const cores: Cores = row === 'bridge2' ? 2 : 1;
          const sut: Sut = isBridge
            ? await startBridgeSut(ctx.pin, {
                ports,
                dataDir,
                cores,
                cpuProfDir: profileDirFor(options, `ingest-${transport}`, ROW_NAME[row]),
                env: {
                  BRIDGE_AUTH: 'on',
                  INFLUX_URL: influx.url,
                  INFLUX_API: 'v1',
                  INFLUX_DATABASE: db,
                },
              })
            : row === 'aedes'
              ? await startAedesSut(ctx.pin, ports)
              : await startMosquittoSut(ctx.pin, ports);
          try {
            results.push(
              await runOne(
                ctx,
                sut,
                ROW_NAME[row],
                row === 'bridge2' ? 'bridge' : 'aedes',
                transport,
                creds,
                seconds,
                isBridge ? { influx, db } : undefined,
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

/**
 * One row: closed-loop QoS 1 load on `sut` for `seconds`; with `storage`, the window lasts until every
 * acknowledged point is in InfluxDB (also the history scenario's store-on/off rounds).
 */
export async function runOne(
  ctx: BenchContext,
  sut: Sut,
  name: string,
  baseline: string,
  transport: Transport,
  creds: { id: string; password: string }[],
  seconds: number,
  storage: { influx: InfluxdServer; db: string } | undefined,
  /** Load before the measured window (code compiled, buffers grown): not counted. */
  warmupSeconds = 0,
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
  gen.start();
  let warmupAcked = 0;
  if (warmupSeconds > 0) {
    await sleep(warmupSeconds * 1000);
    gen.arm();
    warmupAcked = await gen.progress();
  }
  const end = meter(sut.pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const parts = await gen.stop();
  const wall = (performance.now() - t0) / 1000;
  // Acknowledged in the measured window; the database must hold every one, warm-up's included.
  const ackedInAll = parts.reduce((n, p) => n + (p.acked ?? 0), 0);
  const acked = ackedInAll - warmupAcked;
  const sent = parts.reduce((n, p) => n + (p.sent ?? 0), 0);
  const extra: ScenarioResult['extra'] = {
    sent,
    acked,
    unacked: sent - ackedInAll,
    ...(warmupSeconds > 0 ? { warmupSeconds, warmupAcked } : {}),
  };
  if (storage) {
    // Points landed: wait until the database holds every acknowledged reading.
    let count = 0;
    const landed = await until(
      async () => {
        const rows = await storage.influx.rows('SELECT count(temperature_c) FROM telemetry', storage.db);
        count = Number(rows[0]?.['count'] ?? 0);
        return count >= ackedInAll;
      },
      60_000,
      250,
    );
    const landedSeconds = (performance.now() - t0) / 1000;
    extra['pointsInDb'] = count;
    extra['dbCountEqualsAcked'] = count === ackedInAll;
    extra['pointsLandedPerSecond'] = round((count - warmupAcked) / landedSeconds, 0);
    if (!landed)
      ctx.log(`ingest ${transport}: only ${count} of ${ackedInAll} acknowledged points reached InfluxDB`);
  }
  const measured = end();
  await gen.close();
  const latency = summarize(parts.flatMap((p) => (p.latency ? [p.latency] : [])));
  const rate = round(acked / wall, 0);
  const m = meteredFields(measured, sut.cores, acked, 'msg');
  ctx.log(
    `ingest ${transport} ${name} (cores ${sut.cores}): ${rate} msg/s acked, PUBACK p50 ${latency.p50} p99 ${latency.p99} ms, ${m.cpuPer.micros} µs/msg, SUT CPU ${measured.usage.cpuPercent}%, peak RSS ${measured.usage.peakRssMiB} MiB, generator ${measured.generatorCpuPercent}%, other ${measured.otherCpuPercent}%`,
  );
  return {
    group: `ingest-${transport}`,
    sut: name,
    baseline,
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
    ...m,
    extra,
  };
}
