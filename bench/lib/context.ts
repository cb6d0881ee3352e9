/**
 * What every scenario gets and returns.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LatencySummary } from './stats.js';
import type { Pinning } from './suts.js';

export interface BenchContext {
  readonly quick: boolean;
  readonly pin: Pinning;
  log(message: string): void;
}

/** Options a scenario takes when it is re-run to profile the bridge alone. */
export interface ScenarioOptions {
  /** Run only the bridge, writing a V8 CPU profile into this directory. */
  readonly profileDir?: string;
}

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
  readonly sutUsage: {
    readonly cpuSeconds: number;
    readonly cpuPercent: number;
    readonly peakCpuPercent: number;
    readonly peakRssMiB: number;
  };
  /** The load generator's own CPU (all its threads, % of one core): near 100 % means it saturated. */
  readonly generatorCpuPercent: number;
  readonly extra: Record<string, number | string | boolean>;
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
  const { Registry } = await import('../../src/auth/registry.js');
  const registry = await Registry.open(dataDir);
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
