/**
 * The Eclipse Paho MQTT 3.1.1 interoperability client tests (issue 12 §3) against the real bridge,
 * with authentication off: `../shared/conformance/run-paho.sh` (python3, standard library only), over
 * TCP and over the `/mqtt` WebSocket listener (through the suite's TCP→WebSocket tunnel), with the
 * will test. Under an ACL file that refuses SUBSCRIBE to `test/nosubscribe` all eleven pass; without
 * one, every test but `test_subscribe_failure` passes (the bridge then grants that subscription, as a
 * plain broker would).
 *
 * The three runs go at once, each against its own bridge (the suite reuses client ids), so the test
 * takes as long as one run (~50 s, mostly the suite's own waits: keepalive, will, redelivery).
 * The suite sits beside the repository (`../shared/conformance`, as in CI); with CI=true a missing
 * suite or python3 fails the run.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import { projectRoot } from '../src/paths.js';
import { startTestBridge, type TestBridge } from './support/bridge.js';
import { findBinary, missingService, tempDir } from './support/services.js';

const root = projectRoot();
const conformance = resolve(root, '..', 'shared', 'conformance');
const script = join(conformance, 'run-paho.sh');
const suite = join(conformance, 'paho.mqtt.testing');

/** The suite's eleven tests (upstream's ten, plus `will_message_test` with `--with-will`). */
const TESTS = [
  'testBasic',
  'test_dollar_topics',
  'test_keepalive',
  'test_offline_message_queueing',
  'test_overlapping_subscriptions',
  'test_redelivery_on_reconnect',
  'test_retained_messages',
  'test_subscribe_failure',
  'test_unsubscribe',
  'test_zero_length_clientid',
  'will_message_test',
] as const;

/** Everything for every client, the suite's `$` topics, and the one filter it must be refused. */
const ACL = `# The Paho interoperability suite under BRIDGE_AUTH=off
topic readwrite #
topic readwrite $TopicA/#
topic deny test/nosubscribe
`;

/** Longest a whole run may take (the script's own limit, then ours). */
const RUN_LIMIT_S = 240;

const python = findBinary('python3');
const skip = !existsSync(script)
  ? missingService(`the Paho suite runner ${script} (the shared conformance folder beside the repository)`)
      .skip
  : !existsSync(suite)
    ? missingService(`the Paho suite ${suite}`).skip
    : !python
      ? missingService("'python3' not found (Debian package 'python3'); the Paho suite cannot run").skip
      : undefined;

interface Result {
  readonly status: string;
  readonly line: string;
}

interface Run {
  readonly results: Map<string, Result>;
  readonly summary: string;
  readonly output: string;
  readonly seconds: number;
}

/**
 * Runs the suite against one listener and parses its `RESULT <test> <STATUS> …` lines. Spawned, never
 * run synchronously: the bridge under test lives in this process's event loop.
 */
function runPaho(target: string[], running: Set<number>): Promise<Run> {
  const started = performance.now();
  const child = spawn(script, [...target, suite, '--with-will'], {
    // The WebSocket tunnel loads `ws` from the working directory's node_modules.
    cwd: root,
    env: { ...process.env, PYTHON: python!, PAHO_TOTAL_TIMEOUT: String(RUN_LIMIT_S) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid) running.add(child.pid);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolvePromise, reject) => {
    child.once('error', reject);
    child.once('close', () => {
      if (child.pid) running.delete(child.pid);
      const results = new Map<string, Result>();
      // Only unindented lines: the runner's own summary (a child's lines are indented).
      for (const m of output.matchAll(/^RESULT (\S+) (PASS|FAIL|ERROR|TIMEOUT|NOTRUN)\b.*$/gm)) {
        results.set(m[1]!, { status: m[2]!, line: m[0] });
      }
      const summary = /^\d+ passed, \d+ failed.*$/m.exec(output)?.[0] ?? '(no summary line)';
      resolvePromise({ results, summary, output, seconds: (performance.now() - started) / 1000 });
    });
  });
}

/** The PIDs of a process's children, grandchildren, … (Linux /proc). */
function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // "pid (comm) state ppid …": comm may hold spaces, so read after its closing parenthesis.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {} // gone meanwhile
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const child of parents.get(p) ?? []) {
      out.push(child);
      walk(child);
    }
  };
  walk(pid);
  return out;
}

function stop(pid: number): void {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {} // already gone
}

/** One subtest per suite test, so a failure names the test and the suite's own reason. */
async function assertResults(
  t: TestContext,
  run: Run,
  expected: (name: string) => 'PASS' | 'FAIL',
): Promise<void> {
  console.log(`${run.summary} in ${run.seconds.toFixed(1)} s`);
  const tail = run.output.slice(-6000);
  for (const name of TESTS) {
    await t.test(name, () => {
      const result = run.results.get(name);
      assert.ok(result, `no RESULT line for ${name}; the run's output ends with:\n${tail}`);
      assert.equal(result.status, expected(name), `${result.line}\n--- output tail:\n${tail}`);
    });
  }
}

describe('Eclipse Paho MQTT 3.1.1 interoperability suite, BRIDGE_AUTH=off', { skip }, () => {
  let dir = '';
  const bridges: TestBridge[] = [];
  const running = new Set<number>();
  let withAclTcp: Promise<Run>;
  let withAclWs: Promise<Run>;
  let noAclTcp: Promise<Run>;

  before(async () => {
    dir = tempDir('paho');
    writeFileSync(join(dir, 'acl'), ACL);
    const env = { BRIDGE_AUTH: 'off', BRIDGE_ACL_FILE: join(dir, 'acl') };
    const [tcp, ws, open] = await Promise.all([
      startTestBridge(env),
      startTestBridge(env),
      startTestBridge({ BRIDGE_AUTH: 'off' }),
    ]);
    bridges.push(tcp, ws, open);
    withAclTcp = runPaho(['127.0.0.1', String(tcp.bridge.ports.mqtt)], running);
    withAclWs = runPaho(['--ws-url', ws.mqttUrl('ws')], running);
    noAclTcp = runPaho(['127.0.0.1', String(open.bridge.ports.mqtt)], running);
  });

  after(async () => {
    // Only runs still going (the test was cut short): each script and what it started, by PID. The
    // script's `timeout` puts python in a process group of its own, so the tree is walked in /proc;
    // `timeout` passes SIGTERM on to python, and the script then stops its tunnel.
    for (const pid of running) for (const p of [...descendants(pid), pid]) stop(p);
    await Promise.allSettled([withAclTcp, withAclWs, noAclTcp]);
    await Promise.all(bridges.map((b) => b.close()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('over TCP, under BRIDGE_ACL_FILE: all eleven pass', async (t) => {
    await assertResults(t, await withAclTcp, () => 'PASS');
  });

  test('over WebSocket (/mqtt), under BRIDGE_ACL_FILE: all eleven pass', async (t) => {
    await assertResults(t, await withAclWs, () => 'PASS');
  });

  test('over TCP without an ACL: all but test_subscribe_failure pass (the subscription is granted)', async (t) => {
    await assertResults(t, await noAclTcp, (name) => (name === 'test_subscribe_failure' ? 'FAIL' : 'PASS'));
  });
});
