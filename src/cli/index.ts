/**
 * Room: cli. `npx telebridge <sub>`: the command-line interface. Sub-commands live in their own modules; the
 * bridge itself is loaded only by `start` and `demo`, so the others answer fast.
 */
import { Command, CommanderError } from 'commander';
import { TelebridgeError } from '../errors.js';
import { registerBenchCommand } from './bench.js';
import { registerDemoCommand } from './demo.js';
import { registerRegistryCommands } from './registry.js';
import { registerSimCommand } from './sim.js';
import { registerTokenCommand } from './token.js';

export function buildProgram(): Command {
  const program = new Command('telebridge')
    .description(
      'IoT telemetry ingest bridge: MQTT devices → protobuf validation → InfluxDB and live browsers',
    )
    .showHelpAfterError();
  program
    .command('start')
    .description('run the bridge (configuration from the environment, see README "Configuration")')
    .action(async () => {
      const { main } = await import('../main.js');
      await main();
    });
  registerRegistryCommands(program);
  registerTokenCommand(program);
  registerSimCommand(program);
  registerDemoCommand(program);
  registerBenchCommand(program);
  return program;
}

export async function run(argv: string[] = process.argv): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof TelebridgeError) {
      console.error(`telebridge: ${err.message}`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}
