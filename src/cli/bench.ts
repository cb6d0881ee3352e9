/**
 * Room: cli. `npx telebridge bench [options]`: the benchmark (bench/run.ts). Its arguments are handed as they
 * are to the benchmark's own parser (bench/lib/args.ts), so `--help`, `--only`, `--scenarios`,
 * `--quick` and the errors for unknown options are the same as `node dist/bench/run.js`'s. The
 * bench code is loaded only when the command runs, so other commands stay fast.
 */
import type { Command } from 'commander';

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description(
      'benchmark the bridge against Mosquitto, plain Aedes and Socket.IO on loopback; writes bench/results/ (full ≈ 15 min, --quick ≈ 3 min; --help for options)',
    )
    .usage('[--only <scenario> | --scenarios a,b] [--quick] [--no-profile] [--help]')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[options...]', 'benchmark options (see telebridge bench --help)')
    .action(async (args: string[]) => {
      const { main } = await import('../../bench/run.js');
      process.exitCode = await main(args);
    });
}
