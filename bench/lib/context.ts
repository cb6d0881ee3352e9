/**
 * What every scenario gets and returns.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpuMicrosPer, type LatencySummary, type Measured, type SutUsage } from './stats.js';
import type { Pinning } from './suts.js';

export interface BenchContext {
  readonly quick: boolean;
  readonly pin: Pinning;
  log(message: string): void;
}

/** Options a scenario takes when it is re-run to profile the bridge alone. */
export interface ScenarioOptions {
  /**
   * Run only the bridge's rows, briefly, each bridge process writing a V8 CPU profile into
   * `profileDirFor(options, group, sut)` under this directory.
   */
  readonly profileDir?: string;
}

/** Directory name of one row's profile: its group and system. */
export function profileKey(group: string, sut: string): string {
  return `${group}~${sut}`.replace(/[^A-Za-z0-9._~-]+/g, '_');
}

/** Where the bridge of row (group, sut) writes its CPU profile when profiling; else undefined. */
export function profileDirFor(options: ScenarioOptions, group: string, sut: string): string | undefined {
  return options.profileDir ? join(options.profileDir, profileKey(group, sut)) : undefined;
}

/** What "one unit of work" is in a row's CPU figure. */
export type WorkUnit = 'msg' | 'delivery' | 'connection' | 'query';

/** One row of the results: one system under test in one scenario variant. */
export interface ScenarioResult {
  /** e.g. `ingest-tcp`; rows of one group are compared with each other. */
  readonly group: string;
  readonly sut: string;
  /** The system of the group this row is compared with. */
  readonly baseline: string;
  /** The metric the ratio is taken on. */
  readonly primary: {
    readonly name: string;
    readonly value: number;
    readonly unit: string;
    readonly better: 'higher' | 'lower';
  };
  readonly params: Record<string, number | string | boolean>;
  readonly throughput?: { readonly value: number; readonly unit: string };
  readonly latencyMs?: LatencySummary;
  readonly sutUsage: Omit<SutUsage, 'wallSeconds' | 'rssMiB'> & {
    /** CPUs the system was pinned to (`0`, `0,1`), or `any` without pinning. */
    readonly cores: string;
  };
  /** The SUT's own CPU time per unit of work over the measured window, µs (absent: no work done). */
  readonly cpuPer: { readonly micros?: number; readonly unit: WorkUnit };
  /** The load generator's own CPU (all its threads, % of one core): near 100 % means it saturated. */
  readonly generatorCpuPercent: number;
  /** CPU of everything else on the machine in the window (% of one core): how busy it was. */
  readonly otherCpuPercent: number;
  readonly extra: Record<string, number | string | boolean>;
}

/** The metered part of a row: SUT usage on `cores`, CPU per `units` of work, generator, machine. */
export function meteredFields(
  m: Measured,
  cores: string,
  units: number,
  unit: WorkUnit,
): Pick<ScenarioResult, 'sutUsage' | 'cpuPer' | 'generatorCpuPercent' | 'otherCpuPercent'> {
  const micros = cpuMicrosPer(m.usage.cpuSeconds, units);
  return {
    sutUsage: {
      cpuSeconds: m.usage.cpuSeconds,
      cpuPercent: m.usage.cpuPercent,
      peakCpuPercent: m.usage.peakCpuPercent,
      peakRssMiB: m.usage.peakRssMiB,
      cores,
    },
    cpuPer: micros === undefined ? { unit } : { micros, unit },
    generatorCpuPercent: m.generatorCpuPercent,
    otherCpuPercent: m.otherCpuPercent,
  };
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  run(ctx: BenchContext, options?: ScenarioOptions): Promise<ScenarioResult[]>;
}

export { sleep };

/** Creates `count` devices `<prefix><i>` in a data dir's registry (one batch) and returns their credentials. */
export async function provisionDevices(
  dataDir: string,
  prefix: string,
  count: number,
): Promise<{ id: string; password: string }[]> {
  const { FileRegistry } = await import('../../src/auth/registry-file.js');
  const registry = await FileRegistry.open(dataDir);
  const ids = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  const secrets = await registry.addDevices(ids);
  return ids.map((id) => ({ id, password: secrets.get(id)! }));
}

/** Polls until `check()` is true or `timeoutMs` passed; returns whether it became true. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (performance.now() > deadline) return false;
    await sleep(intervalMs);
  }
}
