/**
 * Room: cli. `telebridge sim`: a simulated device fleet (firmware-sim/). Progress on stderr-free stdout: one line
 * redrawn in place on a terminal, a plain line every 5 s otherwise; the last line is a JSON summary.
 *
 * @example
 * telebridge sim --devices 100 --url mqtt://127.0.0.1:1883 --provision --data-dir ./data --duration 60
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { FaultKind } from '../../firmware-sim/faults.js';
// Types only: the fleet (mqtt, protobuf, workers) is loaded when `sim` or `demo` runs, so the other
// sub-commands start fast.
import type { Fleet, FleetDevice, FleetSummary } from '../../firmware-sim/fleet.js';
import type { SharedDeviceOptions } from '../../firmware-sim/group.js';
import { MAX_FLEET } from '../../firmware-sim/limits.js';
import { fleetFromFile, fleetIds, provisionFleet } from '../../firmware-sim/provision.js';
import { withAuth } from './auth.js';
import { dataDirOf } from './data-dir.js';

export interface SimOptions {
  devices: number;
  url: string;
  interval: number;
  duration: number;
  provision: boolean;
  dataDir?: string;
  prefix: string;
  fleetFile?: string;
  connectWindow?: number;
  batchSize: number;
  buffer: number;
  backoffBase: number;
  backoffCap: number;
  ca?: string;
  insecure: boolean;
  stateDir?: string;
  devicesPerThread: number;
  firmware?: string;
  logLevel: string;
  progress: 'auto' | 'tty' | 'plain' | 'none';
  faultMalformed: number;
  faultOversize: number;
  faultWrongDevice: number;
  faultClockSkew: number;
  faultNan: number;
  faultBurst: number;
  burstSize: number;
  oversizeBytes: number;
}

const int =
  (min: number, max: number) =>
  (text: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected an integer ${min}..${max}`);
    return n;
  };

const rate = (text: string): number => {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('expected a probability 0..1');
  return n;
};

export function registerSimCommand(program: Command): void {
  program
    .command('sim')
    .description('run simulated devices (1 to 10 000) against a bridge; ends with a JSON summary line')
    .option('--devices <n>', 'number of devices', int(1, MAX_FLEET), 1)
    .option('--url <url>', 'broker: mqtt://, mqtts://, ws://host:port/mqtt, wss://…', 'mqtt://127.0.0.1:1883')
    .option('--interval <ms>', 'sampling interval per device, ms', int(10, 86_400_000), 1000)
    .option('--duration <s>', 'run time in seconds; 0 = until Ctrl-C', int(0, 31_536_000), 0)
    .option('--provision', 'create the devices in the data directory (secrets kept in the fleet file)', false)
    .option('--data-dir <dir>', 'bridge data directory for --provision (default: BRIDGE_DATA_DIR or ./data)')
    .option('--prefix <prefix>', 'device ids are <prefix>00001, <prefix>00002, …', 'sim-')
    .option('--fleet-file <file>', 'device secrets (JSON, 0600); default <data-dir>/sim-fleet.json')
    .option(
      '--connect-window <ms>',
      'spread first connects over this window (default min(30 s, 50 ms × devices))',
      int(0, 3_600_000),
    )
    .option('--batch-size <n>', 'most samples in one replay message', int(1, 1000), 100)
    .option(
      '--buffer <n>',
      'offline ring per device, samples (oldest dropped when full)',
      int(1, 1_000_000),
      10_000,
    )
    .option('--backoff-base <ms>', 'reconnect backoff: first window', int(1, 3_600_000), 1000)
    .option('--backoff-cap <ms>', 'reconnect backoff: largest window', int(1, 3_600_000), 30_000)
    .option('--ca <file>', 'CA certificate (PEM) to trust for mqtts:// and wss://')
    .option('--insecure', 'do not verify the server certificate', false)
    .option('--state-dir <dir>', 'keep each device seq/counter in <dir>/<id>.json across runs')
    .option(
      '--devices-per-thread <n>',
      'devices per thread before worker threads are used',
      int(1, MAX_FLEET),
      1000,
    )
    .option('--firmware <version>', 'firmware string in DeviceStatus')
    .option('--log-level <level>', 'device log level (stderr)', 'warn')
    .addOption(
      new Option('--progress <mode>', 'progress output')
        .choices(['auto', 'tty', 'plain', 'none'])
        .default('auto'),
    )
    .option(
      '--fault-malformed <rate>',
      'probability per sample of an undecodable payload (→ decode_error)',
      rate,
      0,
    )
    .option('--fault-oversize <rate>', 'probability of a payload over the size limit (→ too_large)', rate, 0)
    .option('--fault-wrong-device <rate>', 'probability of another device_id (→ device_mismatch)', rate, 0)
    .option('--fault-clock-skew <rate>', 'probability of a sample 1 h in the future (→ bad_time)', rate, 0)
    .option('--fault-nan <rate>', 'probability of a NaN value (→ bad_value)', rate, 0)
    .option(
      '--fault-burst <rate>',
      'probability of a burst of --burst-size QoS 0 messages (→ rate_limited)',
      rate,
      0,
    )
    .option('--burst-size <n>', 'messages in one burst', int(1, 10_000), 50)
    .option('--oversize-bytes <n>', 'size of an oversize payload', int(64, 268_435_455), 20_480)
    .addHelpText(
      'after',
      '\nFaulty messages are sent in addition to the normal stream, with seqs from 2^52 up, so the\n' +
        'normal seq stream stays gap-free. Exit code 1 when no device connected, or when the bridge\n' +
        'rejected messages of the normal stream.',
    )
    .action(async (options: SimOptions) => {
      const summary = await runSim(options);
      if (summary.connects === 0 || summary.unexpectedRejections > 0) process.exitCode = 1;
    });
}

/** Runs a fleet from CLI options; prints progress and the JSON summary (last line) to `out`. */
export async function runSim(
  options: SimOptions,
  out: NodeJS.WriteStream = process.stdout,
  hooks: { onFleet?: (fleet: Fleet) => void } = {},
): Promise<FleetSummary> {
  const ids = fleetIds(options.prefix, options.devices);
  const dataDir = options.provision || !options.fleetFile ? dataDirOf(options) : '';
  const fleetFile = options.fleetFile ?? join(dataDir, 'sim-fleet.json');
  let devices: FleetDevice[];
  if (options.provision) {
    devices = await withAuth(options, ({ registry, where }) => {
      const place = where === 'redis' ? "the cluster's registry (Redis)" : dataDir;
      out.write(`provisioning ${ids.length} devices in ${place} (secrets in ${fleetFile})\n`);
      return provisionFleet({ registry, ids, fleetFile });
    });
  } else {
    devices = await fleetFromFile(fleetFile, ids);
  }
  const rates: Partial<Record<FaultKind, number>> = {
    malformed: options.faultMalformed,
    oversize: options.faultOversize,
    wrongDevice: options.faultWrongDevice,
    clockSkew: options.faultClockSkew,
    nan: options.faultNan,
    burst: options.faultBurst,
  };
  const shared: SharedDeviceOptions = {
    url: options.url,
    intervalMs: options.interval,
    batchSize: options.batchSize,
    bufferCapacity: options.buffer,
    backoff: { baseMs: options.backoffBase, capMs: Math.max(options.backoffCap, options.backoffBase) },
    faults: { rates, burstSize: options.burstSize, oversizeBytes: options.oversizeBytes },
    ...(options.ca ? { ca: readFileSync(options.ca, 'utf8') } : {}),
    ...(options.insecure ? { rejectUnauthorized: false } : {}),
    ...(options.stateDir ? { stateDir: options.stateDir } : {}),
    ...(options.firmware ? { firmware: options.firmware } : {}),
  };
  const mode = options.progress === 'auto' ? (out.isTTY ? 'tty' : 'plain') : options.progress;
  let ticks = 0;
  const { Fleet, formatProgress } = await import('../../firmware-sim/fleet.js');
  const fleet = new Fleet({
    devices,
    shared,
    durationS: options.duration,
    devicesPerThread: options.devicesPerThread,
    logLevel: options.logLevel,
    ...(options.connectWindow !== undefined ? { connectWindowMs: options.connectWindow } : {}),
    reportMs: 1000,
    onProgress(p) {
      if (mode === 'tty') out.write(`\r${formatProgress(p)}\x1b[K`);
      else if (mode === 'plain' && ++ticks % 5 === 0) out.write(`${formatProgress(p)}\n`);
    },
  });
  hooks.onFleet?.(fleet);
  const onSignal = () => fleet.stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const summary = await fleet.run();
    if (mode === 'tty') out.write('\n');
    out.write(`${JSON.stringify(summary)}\n`);
    return summary;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
