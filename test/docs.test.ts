/**
 * The docs users read say what the code does: every variable the bridge reads is documented with
 * its default, and the README's commands exist.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildProgram } from '../src/cli/index.js';
import { CONFIG_VARIABLES, defaultOf, VARIABLES } from '../src/config.js';
import { projectRoot } from '../src/paths.js';

const read = (path: string) => readFileSync(join(projectRoot(), path), 'utf8');

test('every configuration variable is documented in docs/configuration.md', () => {
  const doc = read('docs/configuration.md');
  const missing = CONFIG_VARIABLES.filter((name) => !doc.includes(`\`${name}\``));
  assert.deepEqual(missing, []);
});

test('the README names every contract variable and endpoint', () => {
  const readme = read('README.md');
  for (const name of [
    'BRIDGE_MQTT_PORT',
    'BRIDGE_HTTP_PORT',
    'BRIDGE_AUTH',
    'INFLUX_URL',
    'INFLUX_API',
    'LOG_LEVEL',
  ]) {
    assert.ok(readme.includes(name), name);
  }
  for (const path of ['/mqtt', '/live', '/live/sse', '/metrics', '/healthz', '/readyz'])
    assert.ok(readme.includes(path), path);
});

test('every default in docs/configuration.md is the default in the code', () => {
  const doc = read('docs/configuration.md');
  const rows = doc.split('\n').filter((l) => l.startsWith('| `'));
  for (const variable of VARIABLES) {
    // A row may name several variables (`BRIDGE_TLS_CERT`, `BRIDGE_TLS_KEY`): its first cell holds them.
    const row = rows.find((l) => l.split('|')[1]!.includes(`\`${variable.name}\``));
    assert.ok(row, `${variable.name} has a row`);
    const cell = row
      .split('|')[2]!
      .trim()
      .replace(/^`(.*)`$/, '$1');
    const value = defaultOf(variable);
    const expected = value === undefined ? 'unset' : value === '' ? 'empty' : String(value);
    assert.equal(cell, expected, `default of ${variable.name}`);
  }
});

test('the CLI has every sub-command the contract names, each with --help', () => {
  const program = buildProgram();
  const names = program.commands.map((c) => c.name());
  for (const sub of ['start', 'sim', 'devices', 'users', 'token', 'bench', 'demo'])
    assert.ok(names.includes(sub), sub);
  const devices = program.commands.find((c) => c.name() === 'devices')!;
  assert.deepEqual(devices.commands.map((c) => c.name()).sort(), ['add', 'list', 'remove']);
  const users = program.commands.find((c) => c.name() === 'users')!;
  assert.deepEqual(users.commands.map((c) => c.name()).sort(), ['add', 'list', 'remove']);
  for (const c of program.commands) assert.ok(c.helpInformation().includes('Usage:'));
});
