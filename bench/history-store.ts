/**
 * History store benchmark (src/bridge/history/): what the store costs the ingest path, how fast it
 * answers, and what memory it holds.
 *
 * 1. Append cost: `HistoryStore.append` on the main thread (the worker running), paced at `RATE`
 *    events/s for `APPEND_EVENTS` events shaped like the simulator's (3 values, a device of 1,000):
 *    main-thread µs per append, the worker's busy µs per event (its event-loop utilisation), the
 *    process CPU per event (all threads, file writes included), compared with the bridge's CPU per
 *    ingested message from bench/results/latest.json (ingest-tcp); event-loop delay meanwhile.
 * 2. A day of history: `DEVICES` devices over `HOURS` hours of (virtual) time: device 0 at 1 Hz,
 *    the others once every `OTHER_PERIOD_S` seconds (staggered) — by default 1,000 devices, 1 Hz
 *    and 0.1 Hz: 86,400 + 8.6 M events, ≈ 100 events/s, a fleet reporting every 10 s with one
 *    device watched closely. Written through the engine with a virtual clock, so partitions are
 *    sealed hourly as they would be in a day of running.
 * 3. Reopen (worker) and range queries: 24 h of device 0 downsampled to ≤ 1,000 points (target ≤
 *    100 ms), 6 h to ≤ 1,000, 1 h raw, 24 h of a 0.1 Hz device; first query after open and the
 *    median and max of `QUERIES` repeats. The files were just written, so they are in the page
 *    cache (no root here to drop it): these are warm-cache figures.
 * 4. Resume: `RESUMERS` readers at once, each paging (256 a page) through the last
 *    `RESUME_MINUTES` minutes of one device's feeds, and `WIDE_RESUMERS` through every feed;
 *    time, events, peak RSS, main event-loop delay.
 * 5. Recovery: reopening after a clean close and after a crash (the open partition rebuilt).
 *
 *   npm run build && node dist/bench/history-store.js
 *   # DEVICES=1000 OTHER_PERIOD_S=10 HOURS=24 APPEND_EVENTS=1000000 RATE=100000 QUERIES=20 RESUMERS=1000
 *
 * `fillDay` also prepares the store of `npm run bench`'s history-query scenario (bench/scenarios/
 * history.ts), which asks a running bridge the same 24 h question over `/api/history`.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { BatchEncoder, type HistoryInput } from '../src/bridge/history/codec.js';
import type { BucketSeries } from '../src/bridge/history/downsample.js';
import { HistoryEngine } from '../src/bridge/history/engine.js';
import type { HistoryKey } from '../src/bridge/history/key.js';
import { HistoryStore } from '../src/bridge/history/store.js';
import { projectRoot } from '../src/paths.js';
import { tempDir } from '../test/support/services.js';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const DEVICES = env('DEVICES', 1000);
const OTHER_PERIOD_S = env('OTHER_PERIOD_S', 10);
const HOURS = env('HOURS', 24);
const APPEND_EVENTS = env('APPEND_EVENTS', 1_000_000);
const RATE = env('RATE', 100_000);
const QUERIES = env('QUERIES', 20);
const RESUMERS = env('RESUMERS', 1000);
const WIDE_RESUMERS = env('WIDE_RESUMERS', 10);
const RESUME_MINUTES = env('RESUME_MINUTES', 10);
const TARGET_QUERY_MS = 100;
const TARGET_COST_PERCENT = 10;

const T0 = Date.UTC(2026, 10, 26);
const DAY = HOURS * 3_600_000;
export const deviceName = (i: number) => `dev-${String(i).padStart(4, '0')}`;
const MiB = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

function telemetry(device: string, major: number, time: number): HistoryInput {
  const values = {
    temperature_c: 20 + ((major * 7) % 100) / 10,
    humidity: 40 + (major % 13),
    pressure_hpa: 1013.2 - (major % 5) / 10,
  };
  return { kind: 'telemetry', device, key: { major, minor: 0 }, time, seq: major, values, labels: {} };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;
}

/** The bridge's CPU per ingested message, µs (bench/results/latest.json, ingest-tcp). */
function bridgeMicrosPerMessage(): { micros: number; source: string } {
  try {
    const latest = JSON.parse(readFileSync(join(projectRoot(), 'bench/results/latest.json'), 'utf8')) as {
      date: string;
      results: { group: string; sut: string; extra?: { sutCpuMicrosPerMsg?: number } }[];
    };
    const row = latest.results.find((r) => r.group === 'ingest-tcp' && r.sut === 'bridge');
    const micros = row?.extra?.sutCpuMicrosPerMsg;
    if (micros) return { micros, source: `bench/results/latest.json (${latest.date}), ingest-tcp` };
  } catch {}
  return { micros: 20, source: 'assumed (no bench/results/latest.json)' };
}

/** CPU time of each thread of this process, ms (Linux /proc; clock ticks of 10 ms). */
function threadCpuMs(): Map<string, number> {
  const out = new Map<string, number>();
  if (!existsSync('/proc/self/task')) return out;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const text = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      out.set(tid, (Number(fields[11]) + Number(fields[12])) * 10);
    } catch {}
  }
  return out;
}

async function appendCost(dir: string): Promise<Record<string, number | string>> {
  // The worker's thread is the one that appears with the store (libuv's pool exists already).
  await stat(join(dir, '..'));
  const before = new Set(threadCpuMs().keys());
  const store = await HistoryStore.open({
    dir,
    keys: { type: 'local' },
    retentionMs: DAY,
    maxBytes: 8 * 2 ** 30,
  });
  const workerTids = [...threadCpuMs().keys()].filter((tid) => !before.has(tid));
  const mainTid = String(process.pid);
  // Events' fields built before timing, as the broker hands them over.
  const templates = Array.from({ length: 1000 }, (_, i) => telemetry(deviceName(i), i, T0 + i));
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const elu0 = store.workerUtilization();
  const threads0 = threadCpuMs();
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  let appendMs = 0;
  const chunk = 1000;
  const tickMs = (chunk / RATE) * 1000;
  let next = performance.now();
  let k = store.info.nextPosition!;
  for (let done = 0; done < APPEND_EVENTS; done += chunk) {
    const start = performance.now();
    for (let i = 0; i < chunk; i++) {
      const t = templates[i]!;
      store.append({
        kind: 'telemetry',
        device: t.device,
        key: { major: k++, minor: 0 },
        time: t.time,
        seq: t.seq!,
        values: t.values!,
        labels: t.labels!,
      });
    }
    appendMs += performance.now() - start;
    next += tickMs;
    const wait = next - performance.now();
    await new Promise((r) => (wait > 0 ? setTimeout(r, wait) : setImmediate(r)));
  }
  while ((await store.stats()).inFlightBytes > 0) await new Promise((r) => setTimeout(r, 5));
  const wallS = (performance.now() - wall0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const threads = threadCpuMs();
  const elu = store.workerUtilization(elu0);
  loop.disable();
  const stats = await store.stats();
  await store.close();
  const bridge = bridgeMicrosPerMessage();
  const perEvent = (ms: number) => (ms * 1000) / APPEND_EVENTS;
  const threadMicros = (tids: string[]) =>
    perEvent(tids.reduce((sum, tid) => sum + (threads.get(tid) ?? 0) - (threads0.get(tid) ?? 0), 0));
  const appendMicros = perEvent(appendMs);
  const processMicros = (cpu.user + cpu.system) / APPEND_EVENTS;
  const perThread = threads.size > 0;
  const mainMicros = perThread ? threadMicros([mainTid]) : appendMicros;
  return {
    events: APPEND_EVENTS,
    'achieved events/s': Math.round(APPEND_EVENTS / wallS),
    dropped: stats.dropped,
    'append() µs (main thread, wall time inside the calls)': round(appendMicros, 3),
    'main thread CPU µs/event (appends, hand-over, GC, timers)': perThread ? round(mainMicros, 3) : 'n/a',
    'worker thread CPU µs/event': perThread ? round(threadMicros(workerTids), 3) : 'n/a',
    'worker event-loop busy µs/event': round(perEvent(elu.active), 3),
    'process CPU µs/event (every thread, file writes included)': round(processMicros, 3),
    'bridge CPU µs/message': bridge.micros,
    'bridge figure from': bridge.source,
    'main thread cost vs bridge %': round((100 * mainMicros) / bridge.micros, 1),
    'all threads cost vs bridge %': round((100 * processMicros) / bridge.micros, 1),
    'ingest throughput lost, main thread only %': round((100 * mainMicros) / (bridge.micros + mainMicros), 1),
    'ingest throughput lost, all threads on one core %': round(
      (100 * processMicros) / (bridge.micros + processMicros),
      1,
    ),
    'event-loop delay p99 ms': round(loop.percentile(99) / 1e6),
    'event-loop delay max ms': round(loop.max / 1e6),
    'load average at start': loadavg()
      .map((x) => round(x, 1))
      .join(' '),
  };
}

export interface FillOptions {
  readonly dir: string;
  /** Devices: device 0 at 1 Hz, the others every `otherPeriodS` seconds. */
  readonly devices: number;
  readonly otherPeriodS: number;
  readonly hours: number;
  /** When the (virtual) day starts, Unix ms. */
  readonly start: number;
}

/** Writes `hours` of history through the engine on a virtual clock (partitions sealed as in real time). */
export async function fillDay(
  o: FillOptions,
): Promise<{ result: Record<string, number | string>; lastKey: HistoryKey }> {
  const { dir, devices: DEVICES, otherPeriodS: OTHER_PERIOD_S, hours: HOURS, start: T0 } = o;
  const DAY = HOURS * 3_600_000;
  let now = T0;
  const clock = () => now;
  const { engine, info } = await HistoryEngine.open({
    dir,
    keys: { type: 'local' },
    retentionMs: DAY,
    maxBytes: 16 * 2 ** 30,
    now: clock,
  });
  const encoder = new BatchEncoder(256 << 10, clock);
  encoder.setPrevious(info.resumeKey);
  const flush = () => {
    const record = encoder.finish();
    if (record) engine.ingest(record);
  };
  let k = info.nextPosition! - 1;
  let events = 0;
  let peakRss = 0;
  const wall0 = performance.now();
  const seconds = HOURS * 3600;
  for (let s = 0; s < seconds; s++) {
    now = T0 + s * 1000;
    const add = (device: string) => {
      const e = telemetry(device, ++k, now + (k % 997));
      if (!encoder.add(e)) {
        flush();
        encoder.add(e);
      }
      events++;
    };
    add(deviceName(0));
    for (let i = 1 + (s % OTHER_PERIOD_S); i < DEVICES; i += OTHER_PERIOD_S) add(deviceName(i));
    if (s % 1 === 0) flush(); // one batch a second of traffic (the store flushes every 100 ms)
    if (s % 60 === 59) await engine.maintain();
    if (s % 600 === 599) {
      await engine.flushed();
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }
  }
  flush();
  await engine.flushed();
  const stats = engine.stats();
  await engine.close({ major: k, minor: 0 });
  const wallS = (performance.now() - wall0) / 1000;
  return {
    lastKey: { major: k, minor: 0 },
    result: {
      devices: DEVICES,
      hours: HOURS,
      'device 0': '1 Hz',
      others: `every ${OTHER_PERIOD_S} s`,
      events,
      'fill s (engine, in process, incl. building events)': round(wallS, 1),
      partitions: stats.partitions,
      'journal MiB': MiB(stats.journalBytes),
      'series MiB': MiB(stats.seriesBytes),
      'bytes/event': round((stats.journalBytes + stats.seriesBytes) / events, 1),
      'peak RSS MiB (fill)': MiB(peakRss),
    },
  };
}

async function timeQuery(store: HistoryStore, q: Parameters<HistoryStore['range']>[0]) {
  const t = performance.now();
  const r = await store.range(q);
  return { ms: performance.now() - t, r };
}

async function queries(store: HistoryStore, end: number): Promise<Record<string, number | string>[]> {
  const cases: [string, Parameters<HistoryStore['range']>[0]][] = [
    [
      `24 h of ${deviceName(0)} (1 Hz) → ≤ 1000 points`,
      { device: deviceName(0), from: end - DAY, to: end, points: 1000 },
    ],
    [
      `6 h of ${deviceName(0)} → ≤ 1000 points`,
      { device: deviceName(0), from: end - 6 * 3_600_000, to: end, points: 1000 },
    ],
    [`1 h of ${deviceName(0)} raw`, { device: deviceName(0), from: end - 3_600_000, to: end }],
    [
      `24 h of ${deviceName(1)} (0.1 Hz) → ≤ 1000 points`,
      { device: deviceName(1), from: end - DAY, to: end, points: 1000 },
    ],
  ];
  const out: Record<string, number | string>[] = [];
  for (const [name, q] of cases) {
    const first = await timeQuery(store, q);
    const times: number[] = [];
    for (let i = 0; i < QUERIES; i++) times.push((await timeQuery(store, q)).ms);
    times.sort((a, b) => a - b);
    const series = Object.values(first.r.series)[0] as BucketSeries | undefined;
    const rows = series && 'count' in series ? series.count.reduce((a, b) => a + b, 0) : first.r.t.length;
    out.push({
      query: name,
      'readings in range': rows,
      points: first.r.t.length,
      'step ms': first.r.step ?? 'raw',
      'first ms': round(first.ms, 1),
      'p50 ms': round(percentile(times, 50), 1),
      'max ms': round(times.at(-1) ?? 0, 1),
    });
  }
  return out;
}

async function resume(store: HistoryStore, end: number): Promise<Record<string, number | string>[]> {
  const from = end - RESUME_MINUTES * 60_000;
  // The cursor a browser that left RESUME_MINUTES ago would hold: the event just before that time.
  const first = await store.after({ arrivedFrom: from, limit: 1 });
  if (first === 'gap' || !first.events[0]) throw new Error('no event to resume from');
  const since: HistoryKey = { major: first.events[0].key.major - 1, minor: 0 };
  const run = async (
    readers: number,
    feedsOf: (i: number) => { kind: undefined; device: string | undefined }[],
  ) => {
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    const elu0 = store.workerUtilization();
    const t = performance.now();
    let events = 0;
    let pages = 0;
    let gaps = 0;
    await Promise.all(
      Array.from({ length: readers }, async (_, i) => {
        let cursor = since;
        for (;;) {
          const page = await store.after({ key: cursor, limit: 256, feeds: feedsOf(i) });
          pages++;
          if (page === 'gap') {
            gaps++;
            return;
          }
          events += page.events.length;
          if (page.end) return;
          cursor = page.last!;
        }
      }),
    );
    const ms = performance.now() - t;
    clearInterval(sampler);
    loop.disable();
    const elu = store.workerUtilization(elu0);
    return {
      readers,
      feeds: feedsOf(0)[0]?.device === undefined ? 'every feed (#)' : 'one device each',
      'since (min ago)': RESUME_MINUTES,
      events,
      pages,
      gaps,
      'total s': round(ms / 1000, 2),
      'worker busy s': round(elu.active / 1000, 2),
      'peak RSS growth MiB': MiB(peak - rss0),
      'main event-loop delay max ms': round(loop.max / 1e6),
    };
  };
  return [
    await run(RESUMERS, (i) => [{ kind: undefined, device: deviceName(i % DEVICES) }]),
    await run(WIDE_RESUMERS, () => [{ kind: undefined, device: undefined }]),
  ];
}

/**
 * Options to reopen the filled store with. Its events arrived in virtual time (days ago by the real
 * clock), so retention is stretched: nothing may expire while it is measured.
 */
function reopenOptions(dir: string) {
  return { dir, keys: { type: 'local' as const }, retentionMs: 1000 * DAY, maxBytes: 16 * 2 ** 30 };
}

function table(rows: Record<string, number | string>[]): string {
  const keys = Object.keys(rows[0] ?? {});
  return [
    `| ${keys.join(' | ')} |`,
    `| ${keys.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${keys.map((k) => String(r[k])).join(' | ')} |`),
  ].join('\n');
}

function keyValues(r: Record<string, number | string>): string {
  return table(Object.entries(r).map(([k, v]) => ({ measure: k, value: v })));
}

async function main(): Promise<void> {
  const root = tempDir('bench-history');
  try {
    console.log(`## History store benchmark (${new Date().toISOString()})\n`);
    console.log('### 1. Append cost on the ingest path\n');
    const cost = await appendCost(join(root, 'append'));
    console.log(keyValues(cost), '\n');
    const lostMain = Number(cost['ingest throughput lost, main thread only %']);
    const lostAll = Number(cost['ingest throughput lost, all threads on one core %']);
    console.log(
      `Target: store writes cost ≤ ${TARGET_COST_PERCENT} % of ingest throughput: main thread ${lostMain} % (**${lostMain <= TARGET_COST_PERCENT ? 'met' : 'missed'}**; what the ingest path pays when the worker has a core of its own); every thread on one core ${lostAll} % (**${lostAll <= TARGET_COST_PERCENT ? 'met' : 'missed'}**; the pinned benchmark's case).\n`,
    );

    console.log(`### 2. ${HOURS} h of history\n`);
    const dir = join(root, 'day');
    const { result: fill } = await fillDay({
      dir,
      devices: DEVICES,
      otherPeriodS: OTHER_PERIOD_S,
      hours: HOURS,
      start: T0,
    });
    console.log(keyValues(fill), '\n');

    const end = T0 + DAY;
    const open0 = performance.now();
    const store = await HistoryStore.open(reopenOptions(dir));
    const openMs = performance.now() - open0;
    console.log('### 3. Range queries (worker; warm page cache)\n');
    const q = await queries(store, end);
    console.log(table(q), '\n');
    const day = q[0]!;
    const met = Number(day['max ms']) <= TARGET_QUERY_MS && Number(day['points']) <= 1000;
    console.log(
      `Target: 24 h at 1 Hz → ≤ 1000 points in ≤ ${TARGET_QUERY_MS} ms: **${met ? 'met' : 'missed'}** (max ${day['max ms']} ms, first ${day['first ms']} ms).\n`,
    );
    console.log('### 4. Resuming readers\n');
    console.log(table(await resume(store, end)), '\n');
    const rss = process.memoryUsage();
    console.log(`RSS after queries: ${MiB(rss.rss)} MiB (heap ${MiB(rss.heapUsed)} MiB).\n`);
    await store.close();

    console.log('### 5. Recovery\n');
    const reopen0 = performance.now();
    const again = await HistoryStore.open(reopenOptions(dir));
    const cleanMs = performance.now() - reopen0;
    await again.close();
    // A crash: an engine takes 300,000 events (written, never sealed) and is dropped unclosed.
    const crashed = await HistoryEngine.open(reopenOptions(dir));
    const enc = new BatchEncoder(256 << 10);
    enc.setPrevious(crashed.info.resumeKey);
    for (let i = 0; i < 300_000; i++) {
      const e = telemetry(deviceName(i % DEVICES), crashed.info.nextPosition! + i, end + i);
      if (!enc.add(e)) {
        crashed.engine.ingest(enc.finish()!);
        enc.add(e);
      }
    }
    crashed.engine.ingest(enc.finish()!);
    await crashed.engine.flushed();
    const crash0 = performance.now();
    const afterCrash = await HistoryStore.open(reopenOptions(dir));
    const crashMs = performance.now() - crash0;
    await afterCrash.close();
    console.log(
      keyValues({
        'open after the fill (clean close) ms': round(openMs, 1),
        'open after a clean close ms': round(cleanMs, 1),
        'open after a crash (300,000 events of the open partition rebuilt) ms': round(crashMs, 1),
      }),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

// A script when run directly; a library for bench/scenarios/history.ts.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
