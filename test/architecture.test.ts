/**
 * The rooms of src/ (docs/architecture.md) hold: no import cycle anywhere, and each room imports only
 * the rooms it may. Read from the source's own import statements, so a new file is covered at once.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { projectRoot } from '../src/paths.js';

const root = projectRoot();

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) sourceFiles(path, out);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

const IMPORT_RE = /^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gms;

/** file (relative to the root) → the project files it imports (type-only imports included). */
function importGraph(dirs: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const dir of dirs) {
    for (const file of sourceFiles(join(root, dir))) {
      const text = readFileSync(file, 'utf8');
      const targets: string[] = [];
      for (const m of text.matchAll(IMPORT_RE)) {
        const spec = m[1]!;
        if (!spec.startsWith('.')) continue;
        targets.push(relative(root, resolve(dirname(file), spec)).replace(/\.js$/, '.ts'));
      }
      graph.set(relative(root, file), targets);
    }
  }
  return graph;
}

/** Strongly connected components of more than one file (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** The composition roots: they wire every room, and no room imports them. */
const COMPOSITION = new Set(['src/app.ts', 'src/main.ts', 'src/cluster-mode.ts']);

/** A room: a folder of src/ (a sub-folder for the bridge's stages); the other files of src/ are shared. */
function roomOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] !== 'src') return parts[0]!;
  if (COMPOSITION.has(file)) return 'src/app';
  if (parts.length === 2) return 'src/shared';
  if (parts[1] === 'bridge' && parts.length > 3) return `src/bridge/${parts[2]}`;
  return `src/${parts[1]}`;
}

/** Rooms each room may import, besides itself and src/shared. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  'src/shared': [],
  'src/schemas': [],
  'src/auth': [],
  'src/broker': ['src/auth', 'src/schemas'],
  'src/bridge': ['src/schemas', 'src/broker'],
  'src/bridge/storage': ['src/bridge'],
  'src/bridge/history': ['src/bridge'],
  // web/client/protocol.ts: the /live messages, defined once for the server and the browser client.
  // The live channel feeds the history store and reads it (resumes, history windows, /api/history).
  'src/bridge/live': ['src/bridge', 'src/auth', 'src/bridge/history', 'web'],
  'src/app': ['*'],
  'src/cli': ['*'],
};

test('no import cycle in src/, web/, firmware-sim/ or bench/', () => {
  const graph = importGraph(['src', 'web', 'firmware-sim', 'bench']);
  assert.deepEqual(cycles(graph), []);
});

/** Single files allowed past their room's rule, each with its reason. */
const EXCEPTIONS: Record<string, readonly string[]> = {
  // BRIDGE_ACL_FILE is read at start-up with the rest of the configuration: a bad file is a config error.
  'src/config.ts': ['src/auth/acl-file.ts'],
};

test('each room of src/ imports only the rooms it may (the broker nothing from the bridge)', () => {
  const graph = importGraph(['src']);
  const wrong: string[] = [];
  for (const [file, targets] of graph) {
    const from = roomOf(file);
    const allowed = MAY_IMPORT[from];
    assert.ok(allowed, `${file}: room ${from} has no rule in MAY_IMPORT`);
    for (const target of targets) {
      const to = roomOf(target);
      if (to === from || to === 'src/shared' || allowed.includes('*') || allowed.includes(to)) continue;
      if (EXCEPTIONS[file]?.includes(target)) continue;
      wrong.push(`${file} → ${target} (${from} may not import ${to})`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('every source file of src/ names its room in its header', () => {
  const wrong: string[] = [];
  for (const file of sourceFiles(join(root, 'src'))) {
    const rel = relative(root, file);
    const header = /^\/\*\*\n \* Room: ([a-z/]+)[ .(]/.exec(readFileSync(file, 'utf8'))?.[1];
    const room = roomOf(rel);
    const expected = room === 'src/app' ? 'composition' : room === 'src/shared' ? 'shared' : room.slice(4);
    if (header !== expected) wrong.push(`${rel}: ${header ?? 'no Room: line'} (expected ${expected})`);
  }
  assert.deepEqual(wrong, []);
});

/** test/support modules that start a service (a database, Redis, nginx, Chromium, a bridge process). */
const SERVICE_SUPPORT =
  /test\/support\/(influx|redis|nginx|chromium|bridge-process|durable-fleet|cluster|deploy)\.ts$/;

test('unit tests (beside the code: `npm run test:unit`) start no service; those that do live in test/', () => {
  const wrong: string[] = [];
  for (const dir of ['src', 'firmware-sim', 'bench']) {
    for (const file of testFiles(join(root, dir))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(IMPORT_RE)) {
        const target = relative(root, resolve(dirname(file), m[1]!)).replace(/\.js$/, '.ts');
        if (SERVICE_SUPPORT.test(target)) wrong.push(`${relative(root, file)} → ${target}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

function testFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) testFiles(path, out);
    else if (name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}
