/**
 * Summary of a V8 CPU profile (`node --cpu-prof`): top functions by self time, and self time by
 * where the code lives (a package under node_modules, node internals, the bridge's own src/), which
 * is what "the dominant cost" means in the report.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { round } from './stats.js';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  functions: { name: string; selfMs: number; percent: number }[];
  modules: { module: string; selfMs: number; percent: number }[];
}

/** Where a script URL belongs: `aedes`, `ws`, `node:internal`, `src/bridge`, `(native)`... */
export function moduleOf(url: string): string {
  if (!url) return '(V8: GC, program, native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return 'node:internal';
  const own = /\/(src|bench|firmware-sim)\/([^/]+)/.exec(url);
  if (own) return own[2]!.includes('.') ? own[1]! : `${own[1]}/${own[2]}`;
  return url;
}

export function summarizeProfile(profile: CpuProfile, top = 12): ProfileSummary {
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const byFn = new Map<string, number>();
  const byModule = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0;
    // Idle is the event loop waiting: not a cost.
    if (!us || node.callFrame.functionName === '(idle)') continue;
    total += us;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(/^.*\/(node_modules\/|src\/|bench\/)/, '$1');
    const name = `${functionName || '(anonymous)'} ${file ? `${file}:${lineNumber + 1}` : ''}`.trim();
    byFn.set(name, (byFn.get(name) ?? 0) + us);
    const mod = moduleOf(url);
    byModule.set(mod, (byModule.get(mod) ?? 0) + us);
  }
  const rank = <K extends string>(m: Map<string, number>, key: K) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(
        ([k, us]) =>
          ({ [key]: k, selfMs: round(us / 1000, 1), percent: round((us / Math.max(total, 1)) * 100, 1) }) as {
            [P in K]: string;
          } & { selfMs: number; percent: number },
      );
  return {
    totalMs: round(total / 1000, 1),
    functions: rank(byFn, 'name'),
    modules: rank(byModule, 'module'),
  };
}

/** Summarises every `.cpuprofile` in `dir` (normally one: the bridge process). */
export function summarizeProfileDir(dir: string): ProfileSummary | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return undefined;
  const merged: CpuProfile = { nodes: [], samples: [], timeDeltas: [] };
  let offset = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    let maxId = 0;
    for (const n of p.nodes) {
      merged.nodes.push({ ...n, id: n.id + offset });
      maxId = Math.max(maxId, n.id);
    }
    merged.samples.push(...p.samples.map((s) => s + offset));
    merged.timeDeltas.push(...p.timeDeltas);
    offset += maxId + 1;
  }
  return summarizeProfile(merged);
}
