/**
 * `npm run bench` / `npx telebridge bench` / `node dist/bench/run.js`: runs the scenarios on
 * loopback, each bounded in time, with every system under test pinned to core 0 and this process
 * (the load generator's threads) to core 1; writes bench/results/{<date>[-<label>].json and .md,
 * latest.json, latest.md, latest.svg}. Options and usage: bench/lib/args.ts (`--help`); method:
 * docs/benchmarks.md.
 *
 * Budget: full ≈ 15 min, `--quick` ≈ 3 min. After the measured runs, each scenario is run again
 * briefly with only the bridge, under `--cpu-prof` (default in a full run), and the report says what
 * dominates each of the bridge's figures. Results from a busy machine are kept as they are: the load
 * average at start and end and, per row, the CPU everything else used are in the report.
 * The spool engine benchmark (bench/spool.ts) runs in a full run of every scenario, or with `--spool`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../test/support/services.js';
import { BenchArgsError, type BenchOptions, parseBenchArgs, usage } from './lib/args.js';
import { type BenchContext, profileKey, type Scenario, type ScenarioResult } from './lib/context.js';
import { summarizeProfileTree } from './lib/profile.js';
import { evaluateTargets, machine, markdown, type Report, svgChart, withRatios } from './lib/report.js';
import { round } from './lib/stats.js';
import { nodeScript, pinning, versions } from './lib/suts.js';
import { scaleFanout } from './scale-fanout.js';
import { idle, storm } from './scenarios/connections.js';
import { historyIngest, historyQuery, historyResume } from './scenarios/history.js';
import { ingest } from './scenarios/ingest.js';
import { liveFanout } from './scenarios/live-fanout.js';
import { mqttFanout } from './scenarios/mqtt-fanout.js';
import { spoolIngest } from './spool-ingest.js';

export type { BenchOptions };

/** Issue 9: `/live` fan-out with one instance and with three on Redis (bench/scale-fanout.ts). */
const liveFanoutScale: Scenario = {
  name: 'live-fanout-scale',
  description: '/live fan-out across instances on Redis: device-to-browser latency with 1 and 3 bridges',
  run: (ctx, options) => scaleFanout(ctx, [1, 3], options),
};

export const SCENARIOS: readonly Scenario[] = [
  ingest,
  spoolIngest,
  mqttFanout,
  liveFanout,
  liveFanoutScale,
  idle,
  storm,
  historyIngest,
  historyQuery,
  historyResume,
];

/** bench/results of the repository, from the source tree or from dist/. */
function defaultOutDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const repo = here.includes('/dist/') ? join(here, '..', '..') : join(here, '..');
  return join(repo, 'bench', 'results');
}

export async function runBench(options: BenchOptions = {}): Promise<Report> {
  const started = performance.now();
  const load0 = loadavg();
  const pin = pinning();
  const quick = options.quick === true;
  const log = (m: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}`);
  const ctx: BenchContext = { quick, pin, log };
  const wanted = options.scenarios?.length ? options.scenarios : SCENARIOS.map((s) => s.name);
  const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.name === w));
  if (unknown.length)
    throw new BenchArgsError(
      `unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`,
    );
  const everything = wanted.length === SCENARIOS.length;
  log(
    `${quick ? 'quick' : 'full'} run: ${wanted.join(', ')}; ${pin.note}; load average ${loadavg()
      .map((x) => round(x, 2))
      .join(' ')}`,
  );

  const results: ScenarioResult[] = [];
  const notes: string[] = [];
  if (!pin.taskset)
    notes.push(`No CPU pinning: ${pin.note}; the system under test and the load generator share cores.`);
  notes.push(
    'Loopback on a shared 2-core machine (other work running: see the load averages and the "other CPU" column, the CPU everything but the SUT and the generator used during each row, InfluxDB included); numbers are kept as measured, ratios in the same run are the figure to read.',
    "SUT CPU µs per unit = the system's own CPU time (utime + stime of every thread, /proc/<pid>/stat) over the measured window ÷ messages acknowledged, deliveries received or connections made in it. Peak RSS = the kernel's high-water mark (VmHWM) of the SUT process, started fresh for each row.",
    'The bridge runs with BRIDGE_DEVICE_RATE=0 and, except in ingest and spool-ingest, BRIDGE_AUTH=off; ingest authenticates every device and writes to a real InfluxDB 1.6 (pinned with the generator to core 1).',
    'generator CPU = the load generator process (all its threads) as % of one core: near 100 % means the generator, not the system, limited the run.',
  );
  const ran: Scenario[] = [];
  for (const s of SCENARIOS.filter((x) => wanted.includes(x.name))) {
    log(`scenario ${s.name}: ${s.description}`);
    const t0 = performance.now();
    try {
      results.push(...(await s.run(ctx)));
      ran.push(s);
    } catch (err) {
      log(`scenario ${s.name} failed: ${(err as Error).stack ?? err}`);
      notes.push(`Scenario ${s.name} failed: ${(err as Error).message}`);
    }
    log(
      `scenario ${s.name} took ${Math.round((performance.now() - t0) / 1000)} s; load average ${loadavg()
        .map((x) => round(x, 2))
        .join(' ')}`,
    );
  }

  const targets = evaluateTargets(results);
  const profiles: Report['profiles'] = [];
  if (options.profile ?? !quick) {
    for (const s of ran) {
      const dir = tempDir(`bench-prof-${s.name}`);
      log(`profiling the bridge in ${s.name}`);
      const t0 = performance.now();
      try {
        const rows = await s.run({ ...ctx, log: () => {} }, { profileDir: dir });
        const summaries = summarizeProfileTree(dir);
        for (const r of rows) {
          const summary = summaries.get(profileKey(r.group, r.sut));
          if (summary) profiles.push({ group: r.group, sut: r.sut, summary });
        }
      } catch (err) {
        notes.push(`Profiling ${s.name} failed: ${(err as Error).message}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      log(`profile of ${s.name} took ${Math.round((performance.now() - t0) / 1000)} s`);
    }
  }

  const extras: Record<string, unknown> = {};
  if (options.spool ?? (!quick && everything)) extras['spool'] = runSpoolBenches(log);

  const report: Report = {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    ...(options.label ? { label: options.label } : {}),
    scenarios: [...wanted],
    durationSeconds: round((performance.now() - started) / 1000, 0),
    machine: { ...machine(load0), loadAverageAtEnd: loadavg().map((x) => round(x, 2)) },
    versions: versions(),
    pinning: pin.note,
    notes,
    results: withRatios(results),
    targets,
    profiles,
    extras,
  };
  const out = options.outDir ?? defaultOutDir();
  mkdirSync(out, { recursive: true });
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const md = markdown(report);
  // Every run keeps its own JSON and table, named by date (and label); latest.* is the last run.
  const stem = `${report.date.replace(/[:.]/g, '-')}${options.label ? `-${slug(options.label)}` : ''}`;
  writeFileSync(join(out, `${stem}.json`), json);
  writeFileSync(join(out, `${stem}.md`), md);
  writeFileSync(join(out, 'latest.json'), json);
  writeFileSync(join(out, 'latest.md'), md);
  writeFileSync(join(out, 'latest.svg'), svgChart(report));
  console.log(`\n${md}`);
  log(`results in ${out} (${report.durationSeconds} s)`);
  return report;
}

/** A label as part of a file name: `baseline before issue 14` → `baseline-before-issue-14`. */
export function slug(label: string): string {
  return label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

/** Runs the spool engine benchmark (bench/spool.ts) as it is, and keeps its output. */
function runSpoolBenches(log: (m: string) => void): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['bench/spool']) {
    const args = nodeScript(name);
    const file = args[args.length - 1]!;
    if (!existsSync(file)) {
      out[name] = 'not present';
      continue;
    }
    log(`running ${name}`);
    try {
      out[name] = execFileSync(process.execPath, args, {
        encoding: 'utf8',
        timeout: 180_000,
        env: { ...process.env, SECONDS_EACH: '2', PRODUCERS: '1,50', RECOVER_MB: '16' },
      });
    } catch (err) {
      out[name] = `failed: ${(err as Error).message}`;
    }
  }
  return out;
}

/**
 * The command line (`node dist/bench/run.js …`, `npx telebridge bench …`): prints usage for
 * `--help` and a clear error for a bad argument, else runs. Resolves to the exit code.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const names = SCENARIOS.map((s) => s.name);
  let parsed: ReturnType<typeof parseBenchArgs>;
  try {
    parsed = parseBenchArgs(argv, names);
  } catch (err) {
    if (!(err instanceof BenchArgsError)) throw err;
    console.error(`bench: ${err.message} (see --help)`);
    return 2;
  }
  if (parsed.help) {
    console.log(usage(names));
    return 0;
  }
  try {
    await runBench(parsed.options);
    return 0;
  } catch (err) {
    console.error(`bench: ${(err as Error).message}`);
    return 1;
  }
}

const entry = process.argv[1] ?? '';
if (entry.endsWith('/bench/run.js') || entry.endsWith('/bench/run.ts')) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
