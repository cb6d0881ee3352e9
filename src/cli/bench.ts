/**
 * `npx telebridge bench [--scenarios a,b] [--quick]`: the benchmark of issue 8 (bench/run.ts).
 * The bench code is loaded only when the command runs, so other commands stay fast.
 */
import type { Command } from 'commander';

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description(
      'benchmark the bridge against Mosquitto, plain Aedes and Socket.IO on loopback; writes bench/results/ (full ≈ 10 min, --quick ≈ 2 min)',
    )
    .option(
      '--scenarios <names>',
      'comma-separated: ingest, mqtt-fanout, live-fanout, idle, storm (default: all)',
    )
    .option('--quick', 'shorter runs and fewer connections')
    .option('--profile', 're-run missed targets under --cpu-prof (default unless --quick)')
    .option('--no-profile', 'do not re-run missed targets under --cpu-prof')
    .option('--spool', 'also run the spool benchmarks (bench/spool.ts, bench/spool-ingest.ts)')
    .action(async (opts: { scenarios?: string; quick?: boolean; profile?: boolean; spool?: boolean }) => {
      const { runBench } = await import('../../bench/run.js');
      await runBench({
        quick: opts.quick === true,
        ...(opts.profile !== undefined ? { profile: opts.profile } : {}),
        spool: opts.spool === true,
        ...(opts.scenarios ? { scenarios: opts.scenarios.split(',').map((s) => s.trim()) } : {}),
      });
    });
}
