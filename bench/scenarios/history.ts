/**
 * History (issue 15 point 5), against the bridge as `npm start` runs it (pinned to core 0):
 *
 * - `history-query`: 24 h of one device at 1 Hz (86,400 readings), among a fleet reporting every
 *   10 s, written beforehand through the store's engine on a virtual clock ending now
 *   (bench/history-store.ts `fillDay`: hourly partitions as a day of running leaves them); the
 *   bridge starts on that data directory and is asked `GET /api/history?…&points=1000` for the day,
 *   once right after start (its code still cold: reported as `firstMs`) and then `queries` times.
 *   Target: ≤ 1,000 points, the median answer in ≤ 100 ms, measured by the client over loopback;
 *   the slowest answer and the first are reported beside it (on a busy machine the slowest is the
 *   one the scheduler delayed most).
 * - `history-resume`: browsers that were away 10 minutes (every device at 1 Hz meanwhile, far more
 *   than the 10,000 events the in-memory window holds) all resume at once through `/live` (raw
 *   WebSocket clients, the bench's browsers), each following one device: every browser must get
 *   exactly its missed readings, then `replayed`; the bridge's resident memory is sampled
 *   throughout. Target: all exact, no gap, and RSS growth within LIMITS.historyResumeKiBPerBrowser a
 *   browser (bench/lib/report.ts): a replay fills a browser's send buffer only up to the soft limit,
 *   the store answers a few reads at a time, so memory follows browsers, not readings missed.
 * - `history-ingest`: what writing the store costs the ingest path: the ingest scenario's load
 *   (QoS 1 over TCP, authenticated, spooled and written to InfluxDB 1.6) on two bridges running at
 *   once on the same core, one with its history store and one without (BRIDGE_HISTORY_RETENTION=0),
 *   each with its own load generator, for `rounds` rounds. Both are measured over the same seconds,
 *   so the load the rest of the machine puts on core 0 (which moves throughput by 2× from one
 *   minute to the next here) falls on both alike; each round gives one ratio, history off's CPU µs
 *   per message ÷ history on's, and the target reads their median: ≥ 0.9 (the throughput ratio with
 *   a whole core each). Alternating separate rounds, the way this was first measured, put 0.75–0.93
 *   on the same code as the machine's load moved between rounds.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { openTokenService } from '../../src/auth/tokens.js';
import { startInfluxd } from '../../test/support/influx.js';
import { freePort, tempDir } from '../../test/support/services.js';
import { deviceName, fillDay } from '../history-store.js';
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
import { LIMITS } from '../lib/report.js';
import { median, meter, ProcMonitor, round, summarize } from '../lib/stats.js';
import { pinPid, startBridgeSut } from '../lib/suts.js';
import { runOne } from './ingest.js';

const QUERY_POINTS = LIMITS.historyQueryPoints;

const DAY_MS = 86_400_000;

export const historyQuery: Scenario = {
  name: 'history-query',
  description: `24 h of one device at 1 Hz (86,400 readings) back from /api/history as ≤ ${QUERY_POINTS} points`,
  async run(ctx: BenchContext, options: ScenarioOptions = {}): Promise<ScenarioResult[]> {
    const others = ctx.quick ? 20 : 200;
    const queries = options.profileDir ? 5 : ctx.quick ? 10 : 20;
    const dataDir = tempDir('bench-history-query');
    try {
      ctx.log(`history-query: writing 24 h of 1 device at 1 Hz and ${others} every 10 s`);
      const start = Date.now() - DAY_MS;
      const { result: fill } = await fillDay({
        dir: join(dataDir, 'history'),
        devices: others + 1,
        otherPeriodS: 10,
        hours: 24,
        start,
      });
      const { token } = await (await openTokenService(dataDir)).create({ feeds: ['#'], ttlSeconds: 3600 });
      const sut = await startBridgeSut(ctx.pin, {
        ports: { mqtt: await freePort(), http: await freePort() },
        dataDir,
        cpuProfDir: profileDirFor(options, 'history-query', 'bridge'),
      });
      try {
        const to = start + DAY_MS;
        const url = `http://127.0.0.1:${sut.httpPort}/api/history?device=${deviceName(0)}&from=${to - DAY_MS}&to=${to}&points=${QUERY_POINTS}`;
        const ask = async () => {
          const t = performance.now();
          const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
          const body = (await res.json()) as { t?: number[]; series?: Record<string, { count: number[] }> };
          const ms = performance.now() - t;
          if (!res.ok || !body.t) throw new Error(`history-query: ${res.status} ${JSON.stringify(body)}`);
          const readings = Object.values(body.series ?? {})[0]?.count.reduce((a, n) => a + n, 0) ?? 0;
          return { ms, points: body.t.length, readings };
        };
        const end = meter(sut.pid);
        const first = await ask();
        const times: number[] = [];
        let points = first.points;
        for (let i = 0; i < queries; i++) {
          const a = await ask();
          times.push(a.ms);
          points = Math.max(points, a.points);
        }
        const measured = end();
        const sorted = [...times].sort((a, b) => a - b);
        const p = (q: number) =>
          round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0, 1);
        const max = round(Math.max(...times), 1);
        const m = meteredFields(measured, sut.cores, queries + 1, 'query');
        ctx.log(
          `history-query: first ${round(first.ms, 1)} ms, p50 ${p(0.5)} ms, max ${max} ms, ${points} points of ${first.readings} readings, ${m.cpuPer.micros} µs/query`,
        );
        return [
          {
            group: 'history-query',
            sut: 'bridge',
            baseline: 'bridge',
            primary: { name: 'p50 ms', value: p(0.5), unit: 'ms', better: 'lower' },
            params: {
              hours: 24,
              devices: others + 1,
              watchedHz: 1,
              othersEverySeconds: 10,
              queries,
              points: QUERY_POINTS,
            },
            latencyMs: { p50: p(0.5), p99: p(0.99), max, count: times.length },
            ...m,
            extra: {
              firstMs: round(first.ms, 1),
              pointsReturned: points,
              readingsInRange: first.readings,
              storeEvents: Number(fill['events']),
              storePartitions: Number(fill['partitions']),
            },
          },
        ];
      } finally {
        await sut.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
};

export const historyResume: Scenario = {
  name: 'history-resume',
  description:
    '1,000 /live browsers resuming at once after a 10-minute absence (1 Hz devices), from the store',
  async run(ctx: BenchContext, options: ScenarioOptions = {}): Promise<ScenarioResult[]> {
    const browsers = ctx.quick || options.profileDir ? 200 : 1000;
    const devices = 100;
    const missedEach = ctx.quick || options.profileDir ? 120 : 600; // 2 or 10 minutes at 1 Hz
    const dataDir = tempDir('bench-history-resume');
    const sut = await startBridgeSut(ctx.pin, {
      ports: { mqtt: await freePort(), http: await freePort() },
      dataDir,
      cpuProfDir: profileDirFor(options, 'history-resume', 'bridge'),
    });
    try {
      const { token } = await (await openTokenService(dataDir)).create({ feeds: ['#'], ttlSeconds: 3600 });
      const ids = Array.from({ length: devices }, (_, i) => `res-${i}`);
      const target = { host: '127.0.0.1', port: sut.mqttPort };
      const publishAll = async (total: number) => {
        const gen = await Generator.spawn(
          slices(ids, 2).map((slice) => ({
            task: 'rate' as const,
            transport: 'tcp' as const,
            target,
            devices: slice,
            rate: 2500,
            total: (total / devices) * slice.length,
          })),
        );
        gen.start();
        let acked = 0;
        const all = await until(
          async () => {
            acked = await gen.progress();
            return acked >= total;
          },
          120_000,
          200,
        );
        await gen.stop();
        await gen.close();
        if (!all) throw new Error(`history-resume: only ${acked} of ${total} readings acknowledged`);
      };
      // One reading a device, then the cursor the browsers hold when they leave: the store's newest.
      await publishAll(devices);
      const head = await fetch(
        `http://127.0.0.1:${sut.httpPort}/api/history?device=res-0&points=2&token=${encodeURIComponent(token)}`,
      );
      const since = ((await head.json()) as { cursor?: string }).cursor;
      if (!since) throw new Error('history-resume: no cursor from /api/history');
      ctx.log(
        `history-resume: ${browsers} browsers away while ${devices} devices send ${missedEach} readings each`,
      );
      await publishAll(devices * missedEach);
      const gen = await Generator.spawn(
        slices(
          Array.from({ length: browsers }, (_, i) => `telemetry/${ids[i % devices]}`),
          3,
        ).map((feeds) => ({
          task: 'resume' as const,
          target: { host: '127.0.0.1', port: sut.httpPort },
          token,
          feeds,
          since,
          expectedEach: missedEach,
        })),
      );
      await sleep(500); // the connections settle before the resume
      const monitor = new ProcMonitor(sut.pid, 50).begin();
      const rssBefore = monitor.last?.rssKiB ?? 0;
      const end = meter(sut.pid);
      const t0 = performance.now();
      gen.start();
      await until(async () => (await gen.progress()) >= browsers, 180_000, 50);
      const seconds = (performance.now() - t0) / 1000;
      const measured = end();
      const usage = monitor.end();
      const parts = await gen.stop();
      await gen.close();
      const sum = (k: 'received' | 'done' | 'gaps' | 'exact') => parts.reduce((n, r) => n + (r[k] ?? 0), 0);
      const received = sum('received');
      const latency = summarize(parts.flatMap((r) => (r.latency ? [r.latency] : [])));
      const growthMiB = round(usage.peakRssMiB - rssBefore / 1024, 1);
      const m = meteredFields(measured, sut.cores, received, 'delivery');
      ctx.log(
        `history-resume: ${sum('exact')}/${browsers} exact, ${sum('gaps')} gaps, ${received} readings in ${round(seconds, 2)} s, RSS ${round(rssBefore / 1024, 1)} → peak ${usage.peakRssMiB} MiB, ${m.cpuPer.micros} µs/delivery`,
      );
      return [
        {
          group: 'history-resume',
          sut: 'bridge',
          baseline: 'bridge',
          primary: { name: 'all resumed s', value: round(seconds, 2), unit: 's', better: 'lower' },
          params: { browsers, devices, missedEach, inMemoryWindow: 10_000 },
          throughput: { value: round(received / seconds, 0), unit: 'deliveries/s' },
          latencyMs: latency,
          ...m,
          extra: {
            received,
            expected: browsers * missedEach,
            exactBrowsers: sum('exact'),
            gaps: sum('gaps'),
            rssBeforeMiB: round(rssBefore / 1024, 1),
            rssGrowthMiB: growthMiB,
          },
        },
      ];
    } finally {
      await sut.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
};

const ON = 'bridge';
const OFF = 'bridge (history off)';

export const historyIngest: Scenario = {
  name: 'history-ingest',
  description:
    'QoS 1 ingest (spooled, InfluxDB 1.6) on two bridges at once on one core, history store on and off, paired rounds',
  async run(ctx: BenchContext, options: ScenarioOptions = {}): Promise<ScenarioResult[]> {
    const devices = ctx.quick ? 20 : 100;
    const seconds = options.profileDir ? 5 : ctx.quick ? 3 : 8;
    const rounds = options.profileDir ? 1 : ctx.quick ? 2 : 6;
    // Each bridge starts fresh; the first seconds compile its code (the history worker's too).
    const warmup = ctx.quick ? 1 : 3;
    const influx = await startInfluxd();
    if ('skip' in influx) throw new Error(influx.skip);
    if (!pinPid(influx.process.child.pid!, 1)) ctx.log('influxd not pinned');
    const dirs = new Map<boolean, string>([
      [true, tempDir('bench-history-ingest-on')],
      [false, tempDir('bench-history-ingest-off')],
    ]);
    const results = new Map<boolean, ScenarioResult[]>([
      [true, []],
      [false, []],
    ]);
    try {
      ctx.log(`history-ingest: provisioning ${devices} devices on each bridge`);
      const creds = new Map<boolean, { id: string; password: string }[]>();
      for (const [on, dir] of dirs) creds.set(on, await provisionDevices(dir, 'hist-', devices));
      for (let i = 0; i < rounds; i++) {
        // Both variants at once, on the same core, under the same load from elsewhere: a machine
        // growing busier or quieter weighs on both alike, within the round.
        const pair = await Promise.all(
          [true, false].map(async (on) => {
            const dataDir = dirs.get(on)!;
            const db = `bench_history_${on ? 'on' : 'off'}_${i}_${Date.now()}`;
            await influx.query(`CREATE DATABASE "${db}"`);
            // Every round with the store starts on an empty one, as every round without starts bare.
            rmSync(join(dataDir, 'history'), { recursive: true, force: true });
            const sut = await startBridgeSut(ctx.pin, {
              ports: { mqtt: await freePort(), http: await freePort() },
              dataDir,
              cpuProfDir: profileDirFor(options, 'history-ingest', on ? ON : OFF),
              env: {
                BRIDGE_AUTH: 'on',
                INFLUX_URL: influx.url,
                INFLUX_API: 'v1',
                INFLUX_DATABASE: db,
                ...(on ? {} : { BRIDGE_HISTORY_RETENTION: '0' }),
              },
            });
            return { on, sut, db };
          }),
        );
        try {
          const rows = await Promise.all(
            pair.map(({ on, sut, db }) =>
              runOne(ctx, sut, on ? ON : OFF, OFF, 'tcp', creds.get(on)!, seconds, { influx, db }, warmup),
            ),
          );
          for (const [k, { on }] of pair.entries()) results.get(on)!.push(rows[k]!);
        } finally {
          await Promise.all(pair.map(({ sut }) => sut.stop()));
        }
      }
    } finally {
      await influx.stop();
      for (const dir of dirs.values()) rmSync(dir, { recursive: true, force: true });
    }
    return pairedRows(results.get(true)!, results.get(false)!);
  },
};

/**
 * The two rows: each variant's median round by CPU per message, and on both the median of the
 * rounds' ratios (off's µs/msg ÷ on's, each round measured in the same seconds).
 */
function pairedRows(on: readonly ScenarioResult[], off: readonly ScenarioResult[]): ScenarioResult[] {
  const micros = (r: ScenarioResult) => r.cpuPer.micros ?? Number.NaN;
  const ratios = on.map((r, i) => round(micros(off[i]!) / micros(r), 3));
  const shared = {
    rounds: on.length,
    roundRatios: ratios.join(' '),
    medianRoundRatio: round(median(ratios), 3),
    roundsMicrosOn: on.map(micros).join(' '),
    roundsMicrosOff: off.map(micros).join(' '),
    roundsMsgPerSOn: on.map((r) => r.primary.value).join(' '),
    roundsMsgPerSOff: off.map((r) => r.primary.value).join(' '),
    allDbCountsEqualAcked: [...on, ...off].every((r) => r.extra['dbCountEqualsAcked'] === true),
  };
  const row = (rows: readonly ScenarioResult[]): ScenarioResult => {
    const mid = [...rows].sort((a, b) => micros(a) - micros(b))[(rows.length - 1) >> 1]!;
    return {
      ...mid,
      group: 'history-ingest',
      params: { ...mid.params, rounds: rows.length, concurrent: true },
      extra: { ...mid.extra, ...shared, medianMicrosPerMsg: round(median(rows.map(micros)), 2) },
    };
  };
  return [row(on), row(off)];
}
