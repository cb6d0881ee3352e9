/**
 * Real services for tests: each started from its Debian binary on a free loopback port with a
 * temporary directory, and stopped (by its own PID) after. Where a binary is missing, the suite says
 * so loudly and skips; with CI=true a missing binary is a failure.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { waitFor } from './wait.js';

/** A free TCP port on 127.0.0.1 (the OS picks it; the tiny race is acceptable on loopback). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A fresh temporary directory. `inMemory`: on tmpfs (/dev/shm) where the machine has one, for tests
 * that time something other than the disk (a spool's fsync on a shared machine is the noisiest
 * part of a PUBACK).
 */
export function tempDir(prefix: string, options: { inMemory?: boolean } = {}): string {
  const base = options.inMemory && existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  return mkdtempSync(join(base, `telebridge-${prefix}-`));
}

/** The absolute path of a binary, or undefined. Searches PATH and the sbin directories. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  return undefined;
}

/**
 * Returns the binary's path, or a skip reason. Under CI=true a missing binary throws: a missing
 * service fails the run, it never skips silently.
 */
export function requireBinary(name: string, debianPackage: string): { path?: string; skip?: string } {
  const path = findBinary(name);
  if (path) return { path };
  return missingService(`'${name}' not found (Debian package '${debianPackage}'); its tests cannot run`);
}

/**
 * Something a test needs is missing (a binary, a test suite on disk): under CI=true this throws, so
 * the run fails; otherwise it says so loudly and returns the skip reason.
 */
export function missingService(what: string): { skip: string } {
  const message = `MISSING SERVICE: ${what}`;
  if (process.env['CI'] === 'true') throw new Error(message);
  console.error(`\n*** ${message} — SKIPPING ***\n`);
  return { skip: message };
}

export interface RunningProcess {
  readonly child: ChildProcess;
  readonly dir: string;
  /** Everything the process wrote so far (stdout and stderr), for failure messages. */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Spawns a service and resolves once `ready()` is true; kills it (by PID) if it never gets there. */
export async function startProcess(options: {
  name: string;
  command: string;
  args: string[];
  dir: string;
  env?: NodeJS.ProcessEnv;
  ready: () => Promise<boolean>;
  timeoutMs?: number;
  keepDir?: boolean;
}): Promise<RunningProcess> {
  const child = spawn(options.command, options.args, {
    cwd: options.dir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const append = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const proc: RunningProcess = {
    child,
    dir: options.dir,
    output: () => log,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!exited && child.pid) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exit;
        clearTimeout(timer);
      }
      if (!options.keepDir) rmSync(options.dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(
      `${options.name} to be ready`,
      async () => {
        if (exited) throw new Error(`${options.name} exited early: ${log}`);
        return options.ready();
      },
      { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 50 },
    );
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
  return proc;
}

/** True when an HTTP GET on the URL answers with a status below 500. */
export async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status < 500;
  } catch {
    return false;
  }
}
