#!/usr/bin/env node
// Runs every compiled test file of the project with Node's test runner: unit tests beside the code
// (*.test.js in dist/src, dist/firmware-sim, dist/bench), integration tests in dist/test. Other
// directories under dist/ (scratch copies, dot-directories) are not searched. Extra arguments filter
// by path part.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../dist/', import.meta.url).pathname;
const filters = process.argv.slice(2);

const ROOTS = ['src', 'test', 'firmware-sim', 'bench'];

function collect(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) collect(path, out);
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

const files = ROOTS.filter((r) => existsSync(join(root, r)))
  .flatMap((r) => collect(join(root, r), []))
  .filter((f) => filters.length === 0 || filters.some((p) => f.includes(p)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no test files found under dist/ (did the build run?)');
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=300000', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
