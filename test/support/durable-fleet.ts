/**
 * A small fleet of simulated devices (firmware-sim SimDevice, QoS 1) for the durability tests, and the
 * check they all end with: every acknowledged sample is in InfluxDB exactly once.
 *
 * Identity of a sample: the device's `counter` value (+1 a sample, from 1, contract-stored as a float
 * field), so per device the stored counters must be 1..n with no duplicate, where n = samples taken
 * once the fleet is drained, and must include every counter the bridge acknowledged at any moment.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { WireSample } from '../../firmware-sim/codec.js';
import { SimDevice } from '../../firmware-sim/device.js';
import { fleetIds, provisionFleet } from '../../firmware-sim/provision.js';
import type { Registry } from '../../src/auth/registry.js';
import type { InfluxdServer } from './influx.js';

export interface DurableFleet {
  readonly devices: readonly SimDevice[];
  /** Device id → counters of the samples whose message got a PUBACK. */
  readonly acked: ReadonlyMap<string, ReadonlySet<number>>;
  /** Acknowledged samples, all devices. */
  samplesAcked(): number;
  /** Acknowledged messages, all devices (the normal stream). */
  messagesAcked(): number;
  /** Samples buffered on the devices (ring + unacknowledged). */
  buffered(): number;
  /** Stops sampling and waits until every device has everything acknowledged; throws otherwise. */
  drain(timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

export interface FleetOptions {
  /**
   * The bridge's data dir: devices are provisioned in its registry (before the bridge starts is
   * fine), unless `registry` is given; the fleet file is kept there.
   */
  readonly dataDir: string;
  /** Where to provision instead (the cluster's registry in Redis). */
  readonly registry?: Registry;
  readonly url: string;
  readonly prefix: string;
  /** Default 5. */
  readonly count?: number;
  /** Sampling interval, ms: one QoS 1 message per sample while online. Default 50 (20 msg/s). */
  readonly intervalMs?: number;
  /** ms without a PUBACK before a device reconnects and re-sends. Default 5000. */
  readonly ackTimeoutMs?: number;
}

/** Provisions and starts the devices (they connect and publish on their own from then on). */
export async function startFleet(options: FleetOptions): Promise<DurableFleet> {
  const ids = fleetIds(options.prefix, options.count ?? 5);
  const fleetFile = join(options.dataDir, `durability-fleet-${options.prefix}.json`);
  const creds = await provisionFleet(
    options.registry
      ? { registry: options.registry, ids, fleetFile }
      : { dataDir: options.dataDir, ids, fleetFile },
  );
  const acked = new Map<string, Set<number>>();
  const devices = creds.map((c) => {
    const device = new SimDevice({
      id: c.id,
      secret: c.secret as string,
      url: options.url,
      intervalMs: options.intervalMs ?? 50,
      batchSize: 50,
      ackTimeoutMs: options.ackTimeoutMs ?? 5000,
      connectTimeoutMs: 3000,
      // Reconnect quickly after a crash, still spread out (full jitter).
      backoff: { baseMs: 200, capMs: 1000, stableMs: 2000 },
    });
    const set = new Set<number>();
    acked.set(c.id, set);
    device.on('acked', (_seq: number, samples: WireSample[]) => {
      for (const s of samples) set.add(Number(s.values['counter']));
    });
    return device;
  });
  await Promise.all(devices.map((d) => d.start()));
  return {
    devices,
    acked,
    samplesAcked: () => devices.reduce((n, d) => n + d.stats.samplesAcked, 0),
    messagesAcked: () => devices.reduce((n, d) => n + d.stats.acked, 0),
    buffered: () => devices.reduce((n, d) => n + d.stats.buffered, 0),
    async drain(timeoutMs) {
      const drained = await Promise.all(devices.map((d) => d.drain(timeoutMs)));
      const left = devices.filter((_, i) => !drained[i]).map((d) => `${d.id}: ${d.stats.buffered}`);
      assert.deepEqual(left, [], 'devices still holding unacknowledged samples');
    },
    async stop() {
      await Promise.all(devices.map((d) => d.stop()));
    },
  };
}

/** The `counter` values stored for a device, in time order. */
export async function storedCounters(influx: InfluxdServer, db: string, deviceId: string): Promise<number[]> {
  const rows = await influx.rows(
    `SELECT "counter" FROM "telemetry" WHERE "device_id" = '${deviceId}' ORDER BY time ASC`,
    db,
  );
  return rows.map((r) => Number(r['counter']));
}

/**
 * Every acknowledged sample is stored exactly once. With `drained` (the fleet drained and the bridge's
 * backlog empty), storage holds exactly 1..samples-taken per device: nothing missing, nothing extra.
 * @returns stored points, all devices
 */
export async function assertStoredExactlyOnce(
  influx: InfluxdServer,
  db: string,
  fleet: DurableFleet,
  options: { drained: boolean },
): Promise<number> {
  let total = 0;
  for (const d of fleet.devices) {
    const counters = await storedCounters(influx, db, d.id);
    total += counters.length;
    const stored = new Set(counters);
    assert.equal(stored.size, counters.length, `${d.id}: a sample is stored twice`);
    const acked = fleet.acked.get(d.id) ?? new Set<number>();
    const missing = [...acked].filter((c) => !stored.has(c)).sort((a, b) => a - b);
    assert.deepEqual(
      missing.slice(0, 20),
      [],
      `${d.id}: ${missing.length} of ${acked.size} acknowledged samples missing`,
    );
    if (options.drained) {
      assert.equal(d.stats.dropped, 0, `${d.id}: the device's ring overflowed`);
      assert.equal(acked.size, d.stats.samples, `${d.id}: every sample taken was acknowledged`);
      const sorted = [...counters].sort((a, b) => a - b);
      const expected = Array.from({ length: d.stats.samples }, (_, i) => i + 1);
      assert.equal(sorted.length, expected.length, `${d.id}: stored count = samples taken`);
      assert.deepEqual(sorted, expected, `${d.id}: counters 1..n, once each`);
    }
  }
  return total;
}
