/**
 * Summary of a V8 CPU profile (`node --cpu-prof`): what dominates the bridge's CPU in a scenario.
 *
 * - self time by function, and by where the code lives: a package under node_modules, Node's own
 *   JavaScript (`node:internal`), the bridge's own directories (`src/bridge`, `src/broker`, …), and
 *   the three kinds of time without a script: `GC` (V8's garbage collector), `V8 (program)` (V8
 *   itself: compiling, inline caches, runtime calls) and `native` (C++ bindings such as `writev`,
 *   i.e. mostly system calls);
 * - inclusive time of the bridge's own functions (src/): a stage of the pipeline with everything it
 *   calls, which self time alone does not show;
 * - the GC share, the figure issue 14 asks about first.
 *
 * Idle samples (the event loop waiting) are left out: percentages are of the time the process was
 * running JavaScript, GC or native code on its main thread (worker threads write their own files).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { round } from './stats.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

export interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Sampled non-idle time, ms. */
  totalMs: number;
  /** Share of the sampled time spent in V8's garbage collector, %. */
  gcPercent: number;
  functions: { name: string; selfMs: number; percent: number }[];
  modules: { module: string; selfMs: number; percent: number }[];
  /** The bridge's own functions by inclusive time (the function and everything it called). */
  ownInclusive: { name: string; totalMs: number; percent: number }[];
}

/** Where a sampled frame belongs: `aedes`, `ws`, `node:internal`, `src/bridge`, `GC`, `native`… */
export function moduleOf(url: string, functionName = ''): string {
  if (!url) {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(program)') return 'V8 (program)';
    return 'native';
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return 'node:internal';
  // The last src/ (or bench/…) of the path: the checkout itself may sit under a directory so named.
  const own = /.*\/(src|bench|firmware-sim)\/([^/]+)/.exec(url);
  if (own) return own[2]!.includes('.') ? own[1]! : `${own[1]}/${own[2]}`;
  return url;
}

/** The bridge's own code: files under src/ (not node_modules). */
function isOwn(url: string): boolean {
  return !url.includes('node_modules') && moduleOf(url).startsWith('src');
}

function frameName(f: CallFrame): string {
  const file = f.url.replace(/^.*\/(node_modules\/|src\/|bench\/)/, '$1');
  return `${f.functionName || '(anonymous)'} ${file ? `${file}:${f.lineNumber + 1}` : ''}`.trim();
}

export function summarizeProfile(profile: CpuProfile, top = 12): ProfileSummary {
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const byFn = new Map<string, number>();
  const byModule = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let gc = 0;
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0;
    // Idle is the event loop waiting: not a cost.
    if (!us || node.callFrame.functionName === '(idle)') continue;
    total += us;
    const { functionName, url } = node.callFrame;
    if (functionName === '(garbage collector)') gc += us;
    const name = frameName(node.callFrame);
    byFn.set(name, (byFn.get(name) ?? 0) + us);
    const mod = moduleOf(url, functionName);
    byModule.set(mod, (byModule.get(mod) ?? 0) + us);
    // Inclusive: every own function on this node's stack, once per stack (recursion counted once).
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)?.callFrame;
      if (!f || !isOwn(f.url)) continue;
      const n = frameName(f);
      if (seen.has(n)) continue;
      seen.add(n);
      inclusive.set(n, (inclusive.get(n) ?? 0) + us);
    }
  }
  const pct = (us: number) => round((us / Math.max(total, 1)) * 100, 1);
  const ranked = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top) as [string, number][];
  return {
    totalMs: round(total / 1000, 1),
    gcPercent: pct(gc),
    functions: ranked(byFn).map(([name, us]) => ({ name, selfMs: round(us / 1000, 1), percent: pct(us) })),
    modules: ranked(byModule).map(([module, us]) => ({
      module,
      selfMs: round(us / 1000, 1),
      percent: pct(us),
    })),
    ownInclusive: ranked(inclusive).map(([name, us]) => ({
      name,
      totalMs: round(us / 1000, 1),
      percent: pct(us),
    })),
  };
}

/** Summarises every `.cpuprofile` in `dir` together (one per process or thread of the row). */
export function summarizeProfileDir(dir: string): ProfileSummary | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return undefined;
  const merged: CpuProfile = { nodes: [], samples: [], timeDeltas: [] };
  let offset = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    let maxId = 0;
    for (const n of p.nodes) {
      merged.nodes.push({
        ...n,
        id: n.id + offset,
        ...(n.children ? { children: n.children.map((c) => c + offset) } : {}),
      });
      maxId = Math.max(maxId, n.id);
    }
    // Loops, not spread: a long profile has more samples than a call takes arguments.
    for (const s of p.samples) merged.samples.push(s + offset);
    for (const d of p.timeDeltas) merged.timeDeltas.push(d);
    offset += maxId + 1;
  }
  return summarizeProfile(merged);
}

/** Summaries of every row's profile directory under `dir` (named by context.ts's profileKey). */
export function summarizeProfileTree(dir: string): Map<string, ProfileSummary> {
  const out = new Map<string, ProfileSummary>();
  for (const name of readdirSync(dir)) {
    const sub = join(dir, name);
    if (!statSync(sub).isDirectory()) continue;
    const s = summarizeProfileDir(sub);
    if (s) out.set(name, s);
  }
  return out;
}
