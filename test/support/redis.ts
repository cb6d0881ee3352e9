/**
 * A real Redis for tests: `redis-server` on a free loopback port with a temporary directory, no
 * persistence, stopped by its own PID. `restart()` stops it and starts it again on the same port
 * (an outage the bridge must ride out).
 */
import { Socket } from 'node:net';
import { type Auth, openAuth } from '../../src/auth/open-auth.js';
import { createLogger } from '../../src/log.js';
import { RedisHealth } from '../../src/redis.js';
import type { RedisTarget } from '../../src/redis-target.js';
import { freePort, type RunningProcess, requireBinary, startProcess, tempDir } from './services.js';

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Stops the server (SIGTERM, by PID); `start()` brings it back on the same port, empty. */
  stop(): Promise<void>;
  start(): Promise<void>;
  readonly running: boolean;
}

/** True when the port answers PING with PONG. */
async function pong(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
  });
}

/** `{ skip }` when redis-server is missing (and CI is not set), else a running server. */
export async function startRedis(): Promise<RedisServer | { skip: string }> {
  const bin = requireBinary('redis-server', 'redis-server');
  if (!bin.path) return { skip: bin.skip ?? 'redis-server missing' };
  const path = bin.path;
  const port = await freePort();
  let proc: RunningProcess | undefined;
  const start = async () => {
    const dir = tempDir('redis');
    proc = await startProcess({
      name: 'redis-server',
      command: path,
      args: ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
      dir,
      ready: () => pong(port),
    });
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return proc !== undefined;
    },
    async stop() {
      const p = proc;
      proc = undefined;
      await p?.stop();
    },
    start,
  };
}

/**
 * The cluster's credentials in a test Redis, as the CLI opens them (not watching): provision devices,
 * users and tokens before or while the bridges run. `close()` ends its connections.
 */
export async function clusterAuth(target: RedisTarget): Promise<Auth> {
  const health = new RedisHealth(createLogger('silent'));
  const auth = await openAuth({ dataDir: tempDir('cluster-auth'), redis: { target, health, watch: false } });
  return {
    ...auth,
    async close() {
      await auth.close();
      health.close();
    },
  };
}
