/**
 * Systems under test, each in its own child process pinned to core 0 (`taskset -c 0`) while the
 * bench process and its generator threads run on core 1: the bridge (`src/main`), plain Aedes
 * (bench/plain-aedes), Debian's Mosquitto, and the Socket.IO baseline (bench/socketio-server).
 * Every system of a comparison gets core 0; the bridge's "2 cores" rows (`taskset -c 0,1`) are rows
 * of their own, showing what a second core buys: that core is the generator's (and InfluxDB's).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  findBinary,
  httpOk,
  type RunningProcess,
  startProcess,
  tempDir,
} from '../../test/support/services.js';

const here = import.meta.url;
const TS = here.endsWith('.ts');
/** Root of the tree this file runs from: the repository (tsx) or `dist/` (compiled). */
const ROOT = fileURLToPath(new URL('../../', here));

/** `node` arguments to run one of our scripts (path relative to the tree root, without extension). */
export function nodeScript(path: string, extraNodeArgs: string[] = []): string[] {
  const file = join(ROOT, `${path}.${TS ? 'ts' : 'js'}`);
  return [...extraNodeArgs, ...(TS ? ['--import', import.meta.resolve('tsx')] : []), file];
}

export interface Pinning {
  /** taskset's path when pinning works (util-linux, 2+ cores); undefined: nothing is pinned. */
  readonly taskset?: string;
  readonly note: string;
}

/** How many cores a system under test gets: 1 (core 0, every system) or 2 (cores 0 and 1). */
export type Cores = 1 | 2;

/** The CPU list a system with `cores` cores is pinned to: `0`, `0,1`, or `any` without pinning. */
export function coreList(pin: Pinning, cores: Cores): string {
  if (!pin.taskset) return 'any';
  return cores === 1 ? '0' : '0,1';
}

/**
 * Pins this process (the load generator: its worker threads inherit it) to core 1 and returns how
 * systems under test are pinned, when util-linux's taskset works and there are 2+ cores.
 */
export function pinning(): Pinning {
  const taskset = findBinary('taskset');
  if (!taskset) return { note: 'taskset not found (util-linux): no pinning' };
  if (availableParallelism() < 2) return { note: 'one core only: no pinning' };
  try {
    execFileSync(taskset, ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' });
  } catch (err) {
    return { note: `taskset failed (${(err as Error).message}): no pinning` };
  }
  return {
    taskset,
    note: 'every system under test pinned to core 0 (the bridge\'s "2 cores" rows: cores 0,1); load generator (bench process, its threads) and InfluxDB on core 1',
  };
}

/** Pins an already running process (every thread) to a core; false if it could not. */
export function pinPid(pid: number, core: number): boolean {
  const taskset = findBinary('taskset');
  if (!taskset) return false;
  try {
    execFileSync(taskset, ['-a', '-cp', String(core), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface Sut {
  readonly name: 'bridge' | 'aedes' | 'mosquitto' | 'socketio';
  readonly pid: number;
  /** The CPU list it is pinned to (coreList). */
  readonly cores: string;
  /** MQTT over TCP. */
  readonly mqttPort: number;
  /** HTTP port: MQTT over WebSocket (`wsPath`), /live, Socket.IO. */
  readonly httpPort: number;
  readonly wsPath: string;
  readonly process: RunningProcess;
  stop(): Promise<void>;
}

export interface PortPair {
  mqtt: number;
  http: number;
}

function spawnPinned(
  pin: Pinning,
  cores: Cores,
  command: string,
  args: string[],
): { command: string; args: string[] } {
  return pin.taskset
    ? { command: pin.taskset, args: ['-c', coreList(pin, cores), command, ...args] }
    : { command, args };
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function wrap(name: Sut['name'], proc: RunningProcess, ports: PortPair, wsPath: string, cores: string): Sut {
  return {
    name,
    pid: proc.child.pid!,
    cores,
    mqttPort: ports.mqtt,
    httpPort: ports.http,
    wsPath,
    process: proc,
    stop: () => proc.stop('SIGTERM'),
  };
}

export interface BridgeOptions {
  readonly ports: PortPair;
  readonly dataDir: string;
  /** Extra environment (INFLUX_*, BRIDGE_AUTH, REDIS_URL, ...). */
  readonly env?: Record<string, string>;
  /** Writes a V8 CPU profile (`--cpu-prof`) into this directory on exit. */
  readonly cpuProfDir?: string | undefined;
  /** Cores to pin it to (default 1: core 0, as every other system). */
  readonly cores?: Cores;
}

/**
 * The bridge as `npm start` runs it. Bench defaults: logs at warn, no per-device rate limit (the
 * load is the point), no connection cap, no self metrics.
 */
export async function startBridgeSut(pin: Pinning, o: BridgeOptions): Promise<Sut> {
  const nodeArgs = o.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] : [];
  const cores = o.cores ?? 1;
  const { command, args } = spawnPinned(pin, cores, process.execPath, nodeScript('src/main', nodeArgs));
  const proc = await startProcess({
    name: 'bridge',
    command,
    args,
    dir: o.dataDir,
    keepDir: true,
    env: {
      BRIDGE_MQTT_PORT: String(o.ports.mqtt),
      BRIDGE_HTTP_PORT: String(o.ports.http),
      BRIDGE_HOST: '127.0.0.1',
      BRIDGE_DATA_DIR: o.dataDir,
      BRIDGE_AUTH: 'off',
      BRIDGE_DEVICE_RATE: '0',
      BRIDGE_MAX_CONNECTIONS: '0',
      INFLUX_SELF_METRICS_MS: '0',
      LOG_LEVEL: 'warn',
      ...o.env,
    },
    ready: () => httpOk(`http://127.0.0.1:${o.ports.http}/healthz`),
  });
  return wrap('bridge', proc, o.ports, '/mqtt', coreList(pin, cores));
}

export async function startAedesSut(pin: Pinning, ports: PortPair): Promise<Sut> {
  const { command, args } = spawnPinned(pin, 1, process.execPath, [
    ...nodeScript('bench/plain-aedes'),
    String(ports.mqtt),
    String(ports.http),
  ]);
  const proc = await startProcess({
    name: 'plain aedes',
    command,
    args,
    dir: tempDir('bench-aedes'),
    ready: async () => (await tcpOpen(ports.mqtt)) && (await tcpOpen(ports.http)),
  });
  return wrap('aedes', proc, ports, '/', coreList(pin, 1));
}

export async function startMosquittoSut(pin: Pinning, ports: PortPair): Promise<Sut> {
  const bin = findBinary('mosquitto');
  if (!bin) throw new Error('mosquitto not found (Debian package mosquitto)');
  const dir = tempDir('bench-mosquitto');
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    `per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
log_type error
max_connections -1
set_tcp_nodelay true
listener ${ports.mqtt} 127.0.0.1
listener ${ports.http}
protocol websockets
`,
  );
  const { command, args } = spawnPinned(pin, 1, bin, ['-c', conf]);
  const proc = await startProcess({
    name: 'mosquitto',
    command,
    args,
    dir,
    ready: async () => (await tcpOpen(ports.mqtt)) && (await tcpOpen(ports.http)),
  });
  return wrap('mosquitto', proc, ports, '/mqtt', coreList(pin, 1));
}

export async function startSocketIoSut(pin: Pinning, port: number): Promise<Sut> {
  const { command, args } = spawnPinned(pin, 1, process.execPath, [
    ...nodeScript('bench/socketio-server'),
    String(port),
  ]);
  const proc = await startProcess({
    name: 'socket.io',
    command,
    args,
    dir: tempDir('bench-sio'),
    ready: () => tcpOpen(port),
  });
  return wrap('socketio', proc, { mqtt: 0, http: port }, '/socket.io/', coreList(pin, 1));
}

/** Versions for the report: node, aedes, socket.io, ws, mosquitto, influxd. */
export function versions(): Record<string, string> {
  const pkg = (name: string) => {
    try {
      return (
        JSON.parse(
          readFileSync(join(ROOT, TS ? '' : '..', 'node_modules', name, 'package.json'), 'utf8'),
        ) as { version: string }
      ).version;
    } catch {
      return 'unknown';
    }
  };
  const cmd = (bin: string | undefined, args: string[], re: RegExp) => {
    if (!bin) return 'missing';
    try {
      const out = execFileSync(bin, args, {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 5000,
      });
      return re.exec(out)?.[1] ?? out.trim().split('\n')[0] ?? 'unknown';
    } catch (err) {
      const out = String((err as { stdout?: string }).stdout ?? '');
      return re.exec(out)?.[1] ?? 'unknown';
    }
  };
  return {
    node: process.version,
    aedes: pkg('aedes'),
    'websocket-stream': pkg('websocket-stream'),
    ws: pkg('ws'),
    'socket.io': pkg('socket.io'),
    mosquitto: cmd(findBinary('mosquitto'), ['-h'], /mosquitto version (\S+)/),
    influxd: cmd(findBinary('influxd'), ['version'], /InfluxDB (v\S+)/),
  };
}
