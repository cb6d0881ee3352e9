/**
 * Room: composition. The bridge process (`npm start`, `npx telebridge start`): configuration from the environment, one
 * bridge, JSON logs on stdout. Bad configuration: one line on stderr, exit 2. SIGTERM/SIGINT: stop
 * accepting, flush what was accepted to storage, close peers, exit 0.
 */
import { startBridge } from './app.js';
import { loadConfig } from './config.js';
import { TelebridgeError } from './errors.js';
import { createLogger } from './log.js';

export async function main(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof TelebridgeError) {
      process.stderr.write(`telebridge: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  let bridge: Awaited<ReturnType<typeof startBridge>>;
  try {
    bridge = await startBridge(config, { log });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.fatal({ err: message }, 'telebridge failed to start');
    process.stderr.write(`telebridge: ${message}\n`);
    log.flush();
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    bridge.close().then(
      () => {
        log.flush();
        process.exit(0);
      },
      (err: Error) => {
        log.error({ err: err.message }, 'error while stopping');
        log.flush();
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

const entry = process.argv[1] ?? '';
if (entry.endsWith('/main.js') || entry.endsWith('/main.ts')) {
  void main();
}
