/**
 * A real Redis for tests: `redis-server` on a free loopback port with a temporary directory, no
 * persistence, stopped by its own PID. `restart()` stops it and starts it again on the same port
 * (an outage the bridge must ride out). And Redis Sentinel: a primary, a replica and three
 * `redis-sentinel` processes, for failovers (`startSentinelGroup`).
 */
import { writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { type Auth, openAuth } from '../../src/auth/open-auth.js';
import { createLogger } from '../../src/log.js';
import { RedisHealth } from '../../src/redis.js';
import type { RedisTarget } from '../../src/redis-target.js';
import { freePort, type RunningProcess, requireBinary, startProcess, tempDir } from './services.js';
import { waitFor } from './wait.js';

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Stops the server (SIGTERM, by PID); `start()` brings it back on the same port, empty. */
  stop(): Promise<void>;
  /** SIGKILL, by PID: a crash. */
  kill(): Promise<void>;
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

/**
 * `{ skip }` when redis-server is missing (and CI is not set), else a running server. `args` are
 * added to the command line (e.g. `--replicaof 127.0.0.1 <port>`).
 */
export async function startRedis(options: { args?: string[] } = {}): Promise<RedisServer | { skip: string }> {
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
      args: [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        ...(options.args ?? []),
      ],
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
    async kill() {
      const p = proc;
      proc = undefined;
      await p?.stop('SIGKILL');
    },
    start,
  };
}

/** Redis Sentinel for tests: a primary, one replica and three sentinels, all on loopback. */
export interface SentinelGroup {
  /** The primary's name at the sentinels. */
  readonly name: string;
  /** What the bridge is configured with (REDIS_URL, REDIS_SENTINELS, REDIS_SENTINEL_NAME). */
  readonly target: RedisTarget;
  /** The same as environment variables. */
  readonly env: Record<string, string>;
  /** The port of the primary the sentinels name now. */
  primaryPort(): Promise<number>;
  /** The server behind a port of the group. */
  server(port: number): RedisServer;
  /** One command to a server (or sentinel) of the group, on a connection of its own. */
  call(port: number, ...args: string[]): Promise<unknown>;
  /** Asks a sentinel for a planned failover (`SENTINEL FAILOVER`). */
  failover(): Promise<void>;
  /** The ports of the sentinels. */
  readonly sentinelPorts: readonly number[];
  stop(): Promise<void>;
}

/**
 * Starts a primary, a replica of it and three sentinels (quorum 2) on free loopback ports with temp
 * dirs, and resolves once every sentinel knows the replica and the other sentinels (so a failover
 * can be agreed on). A primary is considered down after `downAfterMs` without an answer.
 */
export async function startSentinelGroup(
  options: { downAfterMs?: number } = {},
): Promise<SentinelGroup | { skip: string }> {
  const bin = requireBinary('redis-sentinel', 'redis-sentinel');
  if (!bin.path) return { skip: bin.skip ?? 'redis-sentinel missing' };
  const sentinelPath = bin.path;
  const name = 'telebridge-test';
  // Redis 7 waits 5 s for more replicas before a diskless full sync: start it at once.
  const sync = ['--repl-diskless-sync-delay', '0'];
  const primary = await startRedis({ args: sync });
  if ('skip' in primary) return primary;
  const started: { stop(): Promise<void> }[] = [primary];
  try {
    const replica = await startRedis({ args: [...sync, '--replicaof', '127.0.0.1', String(primary.port)] });
    if ('skip' in replica) return replica;
    started.push(replica);
    const servers = new Map([
      [primary.port, primary],
      [replica.port, replica],
    ]);
    const sentinelPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const dir = tempDir('sentinel');
      const conf = join(dir, 'sentinel.conf');
      // Sentinel rewrites its configuration file: it must be its own, and writable.
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${name} 10000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      started.push(
        await startProcess({
          name: 'redis-sentinel',
          command: sentinelPath,
          args: [conf],
          dir,
          ready: () => pong(port),
        }),
      );
      sentinelPorts.push(port);
    }
    const call = async (port: number, ...args: string[]): Promise<unknown> => {
      const conn = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
      try {
        await conn.connect();
        return await conn.call(args[0]!, ...args.slice(1));
      } finally {
        conn.disconnect();
      }
    };
    const ask = async <T>(port: number, ...args: string[]): Promise<T> =>
      (await call(port, 'SENTINEL', ...args)) as T;
    const info = async (port: number) => String(await call(port, 'INFO', 'replication'));
    await waitFor(
      'the replica in sync, and the sentinels knowing it and each other',
      async () => {
        if (!/slave0:.*state=online/.test(await info(primary.port))) return false;
        for (const port of sentinelPorts) {
          const replicas = await ask<unknown[]>(port, 'REPLICAS', name);
          const peers = await ask<unknown[]>(port, 'SENTINELS', name);
          if (replicas.length < 1 || peers.length < 2) return false;
        }
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const sentinels = sentinelPorts.map((port) => ({ host: '127.0.0.1', port }));
    return {
      name,
      target: { url: 'redis://127.0.0.1:6379', sentinels, sentinelName: name },
      env: {
        REDIS_URL: 'redis://127.0.0.1:6379',
        REDIS_SENTINELS: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
        REDIS_SENTINEL_NAME: name,
      },
      async primaryPort() {
        // Any sentinel that answers: one of them may be the one a test stopped.
        for (const port of sentinelPorts) {
          const addr = await ask<[string, string]>(port, 'GET-MASTER-ADDR-BY-NAME', name).catch(
            () => undefined,
          );
          if (addr) return Number(addr[1]);
        }
        throw new Error('no sentinel answers');
      },
      sentinelPorts,
      call,
      async failover() {
        await ask(sentinelPorts[0]!, 'FAILOVER', name);
      },
      server(port) {
        const server = servers.get(port);
        if (!server) throw new Error(`no server of the group on port ${port}`);
        return server;
      },
      async stop() {
        for (const s of started.reverse()) await s.stop();
      },
    };
  } catch (err) {
    for (const s of started.reverse()) await s.stop();
    throw err;
  }
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
