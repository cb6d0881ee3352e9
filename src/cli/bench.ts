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
      'comma-separated: ingest, spool-ingest, mqtt-fanout, live-fanout, live-fanout-scale, idle, storm (default: all)',
    )
    .option('--quick', 'shorter runs and fewer connections')
    .option('--profile', 're-run missed targets under --cpu-prof (default unless --quick)')
    .option('--no-profile', 'do not re-run missed targets under --cpu-prof')
    .option('--spool', 'run the spool engine benchmark (bench/spool.ts) also with --quick')
    .option('--no-spool', 'skip the spool engine benchmark in a full run')
    .action(async (opts: { scenarios?: string; quick?: boolean; profile?: boolean; spool?: boolean }) => {
      const { runBench } = await import('../../bench/run.js');
      await runBench({
        quick: opts.quick === true,
        ...(opts.profile !== undefined ? { profile: opts.profile } : {}),
        ...(opts.spool !== undefined ? { spool: opts.spool } : {}),
        ...(opts.scenarios ? { scenarios: opts.scenarios.split(',').map((s) => s.trim()) } : {}),
      });
    });
}
