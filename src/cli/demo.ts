/**
 * Room: cli. `telebridge demo` (`npm run demo`): the bridge and a simulated fleet in one process, and the
 * dashboard URL with a browser token. Configuration comes from the environment like `npm start`
 * (ports 1883/8080 by default; the data directory holds the demo devices, their fleet file and the
 * token key). Bridge logs go to stderr at LOG_LEVEL (default warn here), progress to stdout.
 *
 * @example
 * npm run demo                      # 20 devices
 * npx telebridge demo --devices 200 --faults 0.01
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { fleetIds, provisionFleet } from '../../firmware-sim/provision.js';
import { loadConfig } from '../config.js';
import { withAuth } from './auth.js';
import { runSim, type SimOptions } from './sim.js';

interface DemoOptions {
  devices: string;
  interval: string;
  duration: string;
  dataDir?: string;
  faults: string;
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('the bridge plus a simulated fleet in one command; prints the dashboard URL with a token')
    .option('--devices <n>', 'simulated devices', '20')
    .option('--interval <ms>', 'sampling interval per device, ms', '1000')
    .option('--duration <s>', 'run time in seconds; 0 = until Ctrl-C', '0')
    .option('--data-dir <dir>', 'data directory (default: BRIDGE_DATA_DIR or ./data)')
    .option(
      '--faults <rate>',
      'probability per sample of each fault kind (shows rejections on the dashboard)',
      '0',
    )
    .action(async (options: DemoOptions) => {
      await runDemo(options);
    });
}

function parseNumber(name: string, text: string, min: number, max: number, integer = true): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new Error(
      `demo: --${name} ${JSON.stringify(text)}: expected ${integer ? 'an integer' : 'a number'} ${min}..${max}`,
    );
  }
  return n;
}

export async function runDemo(options: DemoOptions, out: NodeJS.WriteStream = process.stdout): Promise<void> {
  const devices = parseNumber('devices', options.devices, 1, 10_000);
  const interval = parseNumber('interval', options.interval, 10, 86_400_000);
  const duration = parseNumber('duration', options.duration, 0, 31_536_000);
  const faults = parseNumber('faults', options.faults, 0, 1, false);
  const config = loadConfig({
    LOG_LEVEL: 'warn',
    ...process.env,
    ...(options.dataDir ? { BRIDGE_DATA_DIR: options.dataDir } : {}),
  });
  const fleetFile = join(config.dataDir, 'demo-fleet.json');
  const ids = fleetIds('demo-', devices);
  // Provisioned before the bridge starts, so its first registry read already knows them.
  await withAuth({ dataDir: config.dataDir }, ({ registry, where }) => {
    out.write(`provisioning ${devices} demo devices in ${where === 'redis' ? 'Redis' : config.dataDir}\n`);
    return provisionFleet({ registry, ids, fleetFile });
  });

  // Loaded here, not at the top: the other sub-commands must not pay for the bridge's imports.
  const { startBridge } = await import('../app.js');
  const { createLogger } = await import('../log.js');
  const bridge = await startBridge(config, { log: createLogger(config.logLevel, process.stderr) });
  try {
    const { token } = await withAuth({ dataDir: config.dataDir }, ({ tokens }) =>
      tokens.create({ feeds: ['#'], commands: true, ttlSeconds: 24 * 3600 }),
    );
    const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    const scheme = config.tls ? 'https' : 'http';
    out.write(
      `\ntelebridge demo: MQTT on ${host}:${bridge.ports.mqtt}, ${devices} simulated devices\n` +
        `dashboard: ${scheme}://${host}:${bridge.ports.http}/?token=${encodeURIComponent(token)}\n` +
        `(Ctrl-C stops the demo)\n\n`,
    );
    const sim: SimOptions = {
      devices,
      url: `mqtt://${host}:${bridge.ports.mqtt}`,
      interval,
      duration,
      provision: false,
      dataDir: config.dataDir,
      prefix: 'demo-',
      fleetFile,
      batchSize: 100,
      buffer: 10_000,
      backoffBase: 1000,
      backoffCap: 30_000,
      insecure: false,
      devicesPerThread: 1000,
      logLevel: 'warn',
      progress: 'auto',
      faultMalformed: faults,
      faultOversize: faults,
      faultWrongDevice: faults,
      faultClockSkew: faults,
      faultNan: faults,
      faultBurst: 0, // a burst would slow the device's real data too (same rate limit)
      burstSize: 50,
      oversizeBytes: config.maxPayloadBytes + 1024,
    };
    await runSim(sim, out);
  } finally {
    await bridge.close();
  }
}
