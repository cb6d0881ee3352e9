/**
 * `npm run bench` / `npx telebridge bench [--scenarios a,b] [--quick]`: runs the scenarios on
 * loopback, each bounded in time, with the system under test pinned to core 0 and this process (the
 * load generator's threads) to core 1; writes bench/results/{<date>.json,latest.json,latest.md,latest.svg}.
 *
 * Budget: full ≈ 6–10 min, `--quick` ≈ 2 min. Where a target is missed, the scenario is re-run
 * briefly with the bridge under `--cpu-prof` and the profile's top self-time is added to the report.
 * The spool engine benchmark (bench/spool.ts) runs in a full run, or with `--spool`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../test/support/services.js';
import type { BenchContext, Scenario, ScenarioResult } from './lib/context.js';
import { summarizeProfileDir } from './lib/profile.js';
import { evaluateTargets, machine, markdown, type Report, svgChart, withRatios } from './lib/report.js';
import { nodeScript, pinning, versions } from './lib/suts.js';
import { scaleFanout } from './scale-fanout.js';
import { idle, storm } from './scenarios/connections.js';
import { ingest } from './scenarios/ingest.js';
import { liveFanout } from './scenarios/live-fanout.js';
import { mqttFanout } from './scenarios/mqtt-fanout.js';
import { spoolIngest } from './spool-ingest.js';

/** Issue 9: `/live` fan-out with one instance and with three on Redis (bench/scale-fanout.ts). */
const liveFanoutScale: Scenario = {
  name: 'live-fanout-scale',
  description: '/live fan-out across instances on Redis: device-to-browser latency with 1 and 3 bridges',
  run: (ctx) => scaleFanout(ctx),
};

export const SCENARIOS: readonly Scenario[] = [
  ingest,
  spoolIngest,
  mqttFanout,
  liveFanout,
  liveFanoutScale,
  idle,
  storm,
];

export interface BenchOptions {
  /** Scenario names; default all. */
  readonly scenarios?: readonly string[];
  readonly quick?: boolean;
  /** Re-run missed targets' scenarios with the bridge profiled (default: true, false with `quick`). */
  readonly profile?: boolean;
  /**
   * Also run the spool engine benchmark (bench/spool.ts) and keep its output (ingest with the spool
   * on and off is the `spool-ingest` scenario). Default: on in a full run, off with `quick`.
   */
  readonly spool?: boolean;
  /** Directory for the results; default bench/results in the repository. */
  readonly outDir?: string;
}

/** bench/results of the repository, from the source tree or from dist/. */
function defaultOutDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const repo = here.includes('/dist/') ? join(here, '..', '..') : join(here, '..');
  return join(repo, 'bench', 'results');
}

export async function runBench(options: BenchOptions = {}): Promise<Report> {
  const load0 = loadavg();
  const pin = pinning();
  const quick = options.quick === true;
  const log = (m: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}`);
  const ctx: BenchContext = { quick, pin, log };
  const wanted = options.scenarios?.length ? options.scenarios : SCENARIOS.map((s) => s.name);
  const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.name === w));
  if (unknown.length)
    throw new Error(
      `unknown scenario(s): ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`,
    );
  log(`${quick ? 'quick' : 'full'} run: ${wanted.join(', ')}; ${pin.note}`);

  const results: ScenarioResult[] = [];
  const notes: string[] = [];
  if (!pin.sut.length)
    notes.push(`No CPU pinning: ${pin.note}; the system under test and the load generator share cores.`);
  notes.push(
    'Loopback on a shared 2-core machine (other work running: see the load average); numbers are noisy, ratios in the same run are the figure to read.',
    'The bridge runs with BRIDGE_DEVICE_RATE=0 and, except in ingest, BRIDGE_AUTH=off; ingest authenticates every device and writes to a real InfluxDB 1.6 (pinned with the generator to core 1).',
    'generator CPU = the load generator process (all its threads) as % of one core: near 100 % means the generator, not the system, limited the run.',
  );
  for (const s of SCENARIOS.filter((x) => wanted.includes(x.name))) {
    log(`scenario ${s.name}: ${s.description}`);
    const t0 = performance.now();
    try {
      results.push(...(await s.run(ctx)));
    } catch (err) {
      log(`scenario ${s.name} failed: ${(err as Error).stack ?? err}`);
      notes.push(`Scenario ${s.name} failed: ${(err as Error).message}`);
    }
    log(`scenario ${s.name} took ${Math.round((performance.now() - t0) / 1000)} s`);
  }

  const targets = evaluateTargets(results);
  const profiles: Report['profiles'] = [];
  if (options.profile !== false) {
    const missed = [...new Set(targets.filter((t) => t.met === false).map((t) => t.scenario))].filter((n) =>
      wanted.includes(n),
    );
    for (const name of missed) {
      const s = SCENARIOS.find((x) => x.name === name)!;
      const dir = tempDir(`bench-prof-${name}`);
      log(`profiling the bridge in ${name} (target missed)`);
      try {
        await s.run({ ...ctx, quick: true, log: () => {} }, { profileDir: dir });
        const summary = summarizeProfileDir(dir);
        if (summary) profiles.push({ scenario: name, summary });
      } catch (err) {
        notes.push(`Profiling ${name} failed: ${(err as Error).message}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }

  const extras: Record<string, unknown> = {};
  if (options.spool ?? !quick) extras['spool'] = runSpoolBenches(log);

  const report: Report = {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    machine: machine(load0),
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
  writeFileSync(join(out, `${report.date.replace(/[:.]/g, '-')}.json`), json);
  writeFileSync(join(out, 'latest.json'), json);
  writeFileSync(join(out, 'latest.md'), markdown(report));
  writeFileSync(join(out, 'latest.svg'), svgChart(report));
  console.log(`\n${markdown(report)}`);
  log(`results in ${out}`);
  return report;
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

/** Command-line entry: `node dist/bench/run.js [--quick] [--scenarios a,b] [--no-profile] [--[no-]spool]`. */
export function parseArgs(argv: readonly string[]): BenchOptions {
  const i = argv.indexOf('--scenarios');
  const list =
    i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith('--scenarios='))?.slice('--scenarios='.length);
  return {
    quick: argv.includes('--quick'),
    ...(argv.includes('--no-profile')
      ? { profile: false }
      : argv.includes('--profile')
        ? { profile: true }
        : {}),
    ...(argv.includes('--spool') ? { spool: true } : argv.includes('--no-spool') ? { spool: false } : {}),
    ...(list
      ? {
          scenarios: list
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        }
      : {}),
  };
}

const entry = process.argv[1] ?? '';
if (entry.endsWith('/bench/run.js') || entry.endsWith('/bench/run.ts')) {
  runBench(parseArgs(process.argv.slice(2))).then(
    () => process.exit(0),
    (err: Error) => {
      console.error(`bench: ${err.message}`);
      process.exit(1);
    },
  );
}
