/**
 * The Dockerfile without a Docker engine: its structure (multi-stage, non-root, /data volume, the
 * bridge bound to all interfaces), that every file it copies is in the build context (after
 * .dockerignore) or produced by the build stage, that it starts what `npm start` starts, and that its
 * HEALTHCHECK command really tells a serving bridge from a dead or failing one.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type BridgeHandle, startBridge } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { repoRoot } from './support/deploy.js';
import { freePort, tempDir } from './support/services.js';

const root = repoRoot();
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');

interface Instruction {
  readonly op: string;
  readonly args: string;
}
interface Stage {
  readonly name: string;
  readonly base: string;
  readonly instructions: Instruction[];
}

/** Instructions with line continuations joined and comments dropped, grouped by stage. */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const lines = text
    .replace(/\\\r?\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of lines) {
    const [op = '', ...rest] = line.split(/\s+/);
    const instruction = { op: op.toUpperCase(), args: rest.join(' ') };
    if (instruction.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args)!;
      stages.push({ name: m[2] ?? String(stages.length), base: m[1]!, instructions: [] });
    } else if (stages.length === 0 && instruction.op === 'ARG') {
      const [k, v = ''] = instruction.args.split('=');
      args.set(k!, v);
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return { args, stages };
}

/** .dockerignore: true when `path` (relative, no leading ./) is left out of the build context. */
function ignored(path: string, patterns: string[]): boolean {
  let out = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = negate ? raw.slice(1) : raw;
    const re = new RegExp(
      `^${pattern
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\//g, '(?:.*/)?')
        .replace(/\*/g, '[^/]*')}(?:/.*)?$`,
    );
    if (re.test(path)) out = !negate;
  }
  return out;
}

const { args, stages } = parseDockerfile(dockerfile);
const runtime = stages.at(-1)!;
const build = stages[0]!;

test('multi-stage on node 20 slim; the runtime runs as a non-root user with /data as its volume', () => {
  assert.ok(stages.length >= 2, 'one build stage and one runtime stage at least');
  const base = (s: Stage) => s.base.replace(/^\$\{(\w+)\}$/, (_, k: string) => args.get(k) ?? '');
  for (const s of stages) assert.match(base(s), /^node:20(\.\d+)*-(bookworm|bullseye)-slim$/, s.name);
  const ops = (op: string) => runtime.instructions.filter((i) => i.op === op).map((i) => i.args);
  const users = ops('USER');
  assert.ok(
    users.length > 0 && !['root', '0', '0:0'].includes(users.at(-1)!),
    'the runtime must not run as root',
  );
  assert.ok(
    ops('VOLUME').some((v) => v.includes('/data')),
    'VOLUME /data',
  );
  const env = ops('ENV').join(' ');
  assert.match(env, /BRIDGE_HOST=0\.0\.0\.0/);
  assert.match(env, /BRIDGE_DATA_DIR=\/data/);
  assert.ok(ops('HEALTHCHECK').length === 1, 'one HEALTHCHECK');
  // No native module at run time, so no stage needs a compiler (better-sqlite3 is a dev dependency).
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  assert.ok(!('better-sqlite3' in pkg.dependencies), 'no native runtime dependency');
  assert.ok(
    !build.instructions.some((i) => i.op === 'RUN' && /g\+\+/.test(i.args)),
    'the build stage installs no toolchain',
  );
  assert.ok(
    !runtime.instructions.some((i) => i.op === 'RUN' && /apt-get install/.test(i.args)),
    'runtime installs nothing',
  );
  assert.ok(runtime.instructions.some((i) => i.op === 'RUN' && /chown node:node \/data/.test(i.args)));
});

test('starts what `npm start` starts, in exec form so SIGTERM reaches node', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const cmd = JSON.parse(runtime.instructions.filter((i) => i.op === 'CMD').at(-1)!.args) as string[];
  assert.deepEqual(cmd.join(' '), pkg.scripts['start']);
});

test('every COPY source is in the build context (after .dockerignore) or made by the build stage', () => {
  const patterns = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const copiedIntoBuild = new Set<string>(['node_modules', 'dist']);
  for (const stage of stages) {
    for (const { op, args: text } of stage.instructions.filter((i) => i.op === 'COPY')) {
      const parts = text.split(/\s+/);
      const from = parts.find((p) => p.startsWith('--from='));
      const paths = parts.filter((p) => !p.startsWith('--'));
      const sources = paths.slice(0, -1);
      for (const src of sources) {
        if (from) {
          const rel = src.replace(/^\/app\//, '');
          const top = rel.split('/')[0]!;
          assert.ok(
            copiedIntoBuild.has(rel) || copiedIntoBuild.has(top),
            `${op} ${text}: ${src} is not made in stage ${from}`,
          );
        } else {
          assert.ok(existsSync(join(root, src)), `COPY ${src}: not in the repository`);
          assert.ok(!ignored(src, patterns), `COPY ${src}: excluded by .dockerignore`);
          copiedIntoBuild.add(src.replace(/\/$/, ''));
          if (src === 'package.json') copiedIntoBuild.add('package-lock.json');
        }
      }
    }
  }
  // And the things that must never reach the context.
  for (const p of ['node_modules', 'dist', '.git', 'data', '.env'])
    assert.ok(ignored(p, patterns), `${p} is sent to the builder`);
  assert.equal(ignored('.env.example', patterns), false);
});

/**
 * The HEALTHCHECK command, run as Docker would (exec form), from the package root like /app; its exit
 * code. Asynchronous: the servers it probes live in this process.
 */
async function runHealthcheck(env: Record<string, string>): Promise<number> {
  const line = runtime.instructions.find((i) => i.op === 'HEALTHCHECK')!.args;
  const exec = JSON.parse(line.slice(line.indexOf('CMD') + 3).trim()) as string[];
  assert.equal(exec[0], 'node', 'the health check needs nothing but node');
  const child = spawn(process.execPath, exec.slice(1), {
    cwd: root,
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: 'ignore',
    timeout: 10_000,
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
}

describe('the HEALTHCHECK command', () => {
  let bridge: BridgeHandle | undefined;
  before(async () => {
    bridge = await startBridge(
      loadConfig({
        BRIDGE_MQTT_PORT: '0',
        BRIDGE_MQTTS_PORT: '0',
        BRIDGE_HTTP_PORT: '0',
        BRIDGE_DATA_DIR: tempDir('dockerfile'),
        LOG_LEVEL: 'warn',
      }),
      { log: createLogger('warn') },
    );
  });
  after(async () => {
    await bridge?.close();
  });

  test('passes against a serving bridge', async () => {
    assert.equal(await runHealthcheck({ BRIDGE_HTTP_PORT: String(bridge!.ports.http) }), 0);
  });

  test('fails when nothing listens, and when /healthz is not 200', async () => {
    assert.equal(await runHealthcheck({ BRIDGE_HTTP_PORT: String(await freePort()) }), 1);
    const failing = createServer((_req, res) => res.writeHead(503).end());
    await new Promise<void>((r) => failing.listen(0, '127.0.0.1', r));
    try {
      const { port } = failing.address() as { port: number };
      assert.equal(await runHealthcheck({ BRIDGE_HTTP_PORT: String(port) }), 1);
    } finally {
      failing.close();
    }
  });
});
