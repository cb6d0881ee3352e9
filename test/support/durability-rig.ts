/**
 * The before/after of every durability test, once: a real InfluxDB 1.6 (optionally behind a fault
 * proxy), a bridge process on its own data dir, and a fleet of simulated QoS 1 devices; stopped and
 * removed after the file's tests, whatever state a test left them in.
 *
 * InfluxDB gets a fixed port and data directory for the whole file, so a test can stop it and start
 * it again (an outage), or start it only later (a database that is not there yet), and the bridge's
 * INFLUX_URL stays valid throughout.
 */
import { rmSync } from 'node:fs';
import { after, before } from 'node:test';
import { type BridgeProcess, spawnBridge } from './bridge-process.js';
import { type DurableFleet, startFleet } from './durable-fleet.js';
import { type FaultProxy, type InfluxdServer, startFaultProxy, startInfluxd } from './influx.js';
import { freePort, requireBinary, tempDir } from './services.js';

export interface DurabilityRigOptions {
  /** Names the temporary directories and prefixes the fleet's device ids. */
  readonly name: string;
  readonly database: string;
  /** Start InfluxDB before the tests (default) or leave it to the test (`rig.startInflux()`). */
  readonly influxAtStart?: boolean;
  /** Put a fault proxy between the bridge and InfluxDB (INFLUX_URL then points at the proxy). */
  readonly faultProxy?: boolean;
}

export interface DurabilityRig {
  /** Set when influxd is missing outside CI (under CI=true that fails the run instead). */
  readonly skip: string | undefined;
  readonly dataDir: string;
  /** InfluxDB while it runs. */
  readonly influx: InfluxdServer | undefined;
  /** The fault proxy, when asked for (it outlives InfluxDB restarts). */
  readonly proxy: FaultProxy | undefined;
  readonly bridge: BridgeProcess | undefined;
  readonly fleet: DurableFleet | undefined;
  /** The bridge's InfluxDB settings (v1 API, the rig's database, through the proxy if any). */
  influxEnv(): Record<string, string>;
  /** Starts InfluxDB on the rig's port and data directory (again after `stopInflux`). */
  startInflux(): Promise<InfluxdServer>;
  /** Stops InfluxDB by its PID, keeping its data. */
  stopInflux(): Promise<void>;
  /** Spawns the bridge on the rig's data dir with `influxEnv()` and `env` (the last one is stopped after). */
  spawnBridge(env?: Record<string, string>, ports?: BridgeProcess['ports']): Promise<BridgeProcess>;
  /** Provisions and starts the fleet against the current bridge. */
  startFleet(options?: { count?: number; intervalMs?: number; ackTimeoutMs?: number }): Promise<DurableFleet>;
}

/** Registers the file's before/after hooks and returns the rig they set up. */
export function durabilityRig(options: DurabilityRigOptions): DurabilityRig {
  const dataDir = tempDir(`dur-${options.name}`);
  const influxDir = tempDir(`influxd-${options.name}`);
  let port = 0;
  let skip: string | undefined;
  let influx: InfluxdServer | undefined;
  let proxy: FaultProxy | undefined;
  let bridge: BridgeProcess | undefined;
  let fleet: DurableFleet | undefined;

  const rig: DurabilityRig = {
    get skip() {
      return skip;
    },
    dataDir,
    get influx() {
      return influx;
    },
    get proxy() {
      return proxy;
    },
    get bridge() {
      return bridge;
    },
    get fleet() {
      return fleet;
    },
    influxEnv: () => ({
      INFLUX_URL: proxy?.url ?? `http://127.0.0.1:${port}`,
      INFLUX_API: 'v1',
      INFLUX_DATABASE: options.database,
    }),
    async startInflux() {
      const started = await startInfluxd({ database: options.database, port, dir: influxDir });
      if ('skip' in started) throw new Error(started.skip);
      influx = started;
      return started;
    },
    async stopInflux() {
      await influx?.stop();
      influx = undefined;
    },
    async spawnBridge(env = {}, ports) {
      bridge = await spawnBridge({
        dataDir,
        env: { ...rig.influxEnv(), ...env },
        ...(ports ? { ports } : {}),
      });
      return bridge;
    },
    async startFleet(fleetOptions = {}) {
      if (!bridge) throw new Error('durabilityRig: spawn the bridge before the fleet');
      fleet = await startFleet({ dataDir, url: bridge.mqttUrl, prefix: `${options.name}-`, ...fleetOptions });
      return fleet;
    },
  };

  before(async () => {
    const bin = requireBinary('influxd', 'influxdb');
    if (!bin.path) {
      skip = bin.skip;
      return;
    }
    port = await freePort();
    if (options.faultProxy) proxy = await startFaultProxy(`http://127.0.0.1:${port}`);
    if (options.influxAtStart ?? true) await rig.startInflux();
  });

  after(async () => {
    await fleet?.stop();
    await bridge?.terminate(5000);
    await proxy?.close();
    await influx?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(influxDir, { recursive: true, force: true });
  });

  return rig;
}
