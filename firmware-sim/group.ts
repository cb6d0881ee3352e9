/**
 * A group of simulated devices in one thread: starts them staggered, adds up their counters, stops
 * them. The fleet runs one group in the main thread, or one per worker thread for big fleets.
 */
import type { Logger } from '../src/log.js';
import { type DeviceOptions, type DeviceStats, emptyStats, SimDevice } from './device.js';
import { LatencyHistogram } from './latency.js';

/** What every device of a fleet shares. */
export type SharedDeviceOptions = Omit<DeviceOptions, 'id' | 'secret' | 'log' | 'random' | 'stateFile'> & {
  /** Directory of per-device state files (`<id>.json`); unset = no persistence. */
  readonly stateDir?: string;
};

export interface DeviceSpec {
  readonly id: string;
  readonly secret?: string;
  /** Delay before this device starts, ms (the stagger). */
  readonly startDelayMs: number;
}

/** Plain data, so it crosses `postMessage`. */
export interface GroupSnapshot {
  devices: number;
  totals: DeviceStats;
  latencyCounts: number[];
  rejectionsByReason: Record<string, number>;
  faultsByKind: Record<string, number>;
  commandsByName: Record<string, number>;
}

export class DeviceGroup {
  private readonly devices: SimDevice[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly specs: readonly DeviceSpec[],
    private readonly shared: SharedDeviceOptions,
    private readonly log?: Logger,
  ) {}

  start(): void {
    for (const spec of this.specs) {
      const device = new SimDevice({
        ...this.shared,
        id: spec.id,
        ...(spec.secret !== undefined ? { secret: spec.secret } : {}),
        ...(this.shared.stateDir ? { stateFile: `${this.shared.stateDir}/${spec.id}.json` } : {}),
        ...(this.log ? { log: this.log } : {}),
      });
      this.devices.push(device);
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (!this.stopped) {
          device
            .start()
            .catch((err: Error) => this.log?.error({ device: spec.id, err: err.message }, 'start failed'));
        }
      }, spec.startDelayMs);
      this.timers.add(timer);
    }
  }

  /**
   * Stops every device: sampling ends, what is buffered gets up to `drainMs` to be acknowledged, then
   * a clean DISCONNECT after an OFFLINE status, in bounded parallel slices.
   */
  async stop(drainMs = 0): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (drainMs > 0)
      await Promise.all(this.devices.map((d) => (d.connState === 'idle' ? true : d.drain(drainMs))));
    for (let i = 0; i < this.devices.length; i += 500) {
      await Promise.all(this.devices.slice(i, i + 500).map((d) => d.stop()));
    }
  }

  snapshot(): GroupSnapshot {
    const totals = emptyStats();
    const latency = new LatencyHistogram();
    const rejectionsByReason: Record<string, number> = {};
    const faultsByKind: Record<string, number> = {};
    const commandsByName: Record<string, number> = {};
    for (const d of this.devices) {
      addStats(totals, d.stats);
      latency.merge(d.latency);
      addCounts(rejectionsByReason, d.rejectionsByReason);
      addCounts(faultsByKind, d.faultsByKind as Record<string, number>);
      addCounts(commandsByName, d.commandsByName);
    }
    return {
      devices: this.devices.length,
      totals,
      latencyCounts: latency.counts,
      rejectionsByReason,
      faultsByKind,
      commandsByName,
    };
  }
}

export function addStats(into: DeviceStats, from: DeviceStats): void {
  for (const k of Object.keys(into) as (keyof DeviceStats)[]) into[k] += from[k];
}

export function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Adds snapshots of several groups into one. */
export function mergeSnapshots(snapshots: readonly GroupSnapshot[]): GroupSnapshot {
  const totals = emptyStats();
  const latency = new LatencyHistogram();
  const out: GroupSnapshot = {
    devices: 0,
    totals,
    latencyCounts: [],
    rejectionsByReason: {},
    faultsByKind: {},
    commandsByName: {},
  };
  for (const s of snapshots) {
    out.devices += s.devices;
    addStats(totals, s.totals);
    latency.merge({ counts: s.latencyCounts });
    addCounts(out.rejectionsByReason, s.rejectionsByReason);
    addCounts(out.faultsByKind, s.faultsByKind);
    addCounts(out.commandsByName, s.commandsByName);
  }
  out.latencyCounts = latency.counts;
  return out;
}
