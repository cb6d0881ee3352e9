#!/usr/bin/env node
// Runs every compiled test file of the project with Node's test runner: unit tests beside the code
// (*.test.js in dist/src, dist/firmware-sim, dist/bench: no service started, seconds), integration
// tests in dist/test (real InfluxDB, Redis, nginx, Chromium, bridge processes). Other directories
// under dist/ (scratch copies, dot-directories) are not searched. test/architecture.test.ts keeps
// unit tests from starting services.
//
//   node scripts/run-tests.js [--unit | --integration] [--repeat N] [path-part …]
//
// Path parts filter the files (a file runs when its path contains any of them). `--repeat N` runs
// the selected files N times in a row, each round in a fresh test runner, and stops at the first
// failing round, naming it: a test that fails once in ten runs is a defect, and this finds it.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const USAGE =
  'usage: node scripts/run-tests.js [--unit | --integration] [--repeat N] [path-part …]   (npm test -- --repeat N …)';
const root = new URL('../dist/', import.meta.url).pathname;
const UNIT_ROOTS = ['src', 'firmware-sim', 'bench'];
const INTEGRATION_ROOTS = ['test'];

function fail(message) {
  console.error(`run-tests: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseArgs(args) {
  let repeat = 1;
  let roots = [...UNIT_ROOTS, ...INTEGRATION_ROOTS];
  const filters = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (arg === '--repeat' || arg.startsWith('--repeat=')) {
      const value = arg === '--repeat' ? args[++i] : arg.slice('--repeat='.length);
      if (value === undefined || !/^[1-9]\d*$/.test(value)) {
        fail(`--repeat needs a whole number of rounds ≥ 1, got '${value ?? ''}'`);
      }
      repeat = Number(value);
    } else if (arg === '--unit') {
      roots = UNIT_ROOTS;
    } else if (arg === '--integration') {
      roots = INTEGRATION_ROOTS;
    } else if (arg.startsWith('-')) {
      fail(`unknown option '${arg}'`);
    } else {
      filters.push(arg);
    }
  }
  return { repeat, roots, filters };
}

function collect(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) collect(path, out);
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

const { repeat, roots, filters } = parseArgs(process.argv.slice(2));
const files = roots
  .filter((r) => existsSync(join(root, r)))
  .flatMap((r) => collect(join(root, r), []))
  .filter((f) => filters.length === 0 || filters.some((p) => f.includes(p)))
  .sort();
if (files.length === 0) {
  console.error(
    filters.length === 0
      ? 'run-tests: no test files found under dist/ (did the build run?)'
      : `run-tests: no test file under dist/ matches ${filters.map((f) => `'${f}'`).join(' or ')}`,
  );
  process.exit(1);
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const fileCount = `${files.length} file${files.length === 1 ? '' : 's'}`;
for (let round = 1; round <= repeat; round++) {
  if (repeat > 1) console.log(`\nrun-tests: round ${round} of ${repeat} (${fileCount})`);
  const started = Date.now();
  const result = spawnSync(
    process.execPath,
    ['--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=300000', ...files],
    { stdio: 'inherit' },
  );
  const status = result.status ?? 1;
  if (repeat === 1) process.exit(status);
  if (status !== 0) {
    const how = result.signal ? `was stopped by ${result.signal}` : 'failed';
    console.error(
      `\nrun-tests: round ${round} of ${repeat} ${how} after ${seconds(Date.now() - started)}` +
        ` (${round - 1} passed before it); later rounds not run`,
    );
    process.exit(status);
  }
  console.log(`run-tests: round ${round} of ${repeat} passed in ${seconds(Date.now() - started)}`);
}
console.log(`\nrun-tests: all ${repeat} rounds passed (${fileCount} each)`);
