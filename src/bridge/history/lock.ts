/**
 * Room: bridge/history. One process at a time in a history directory. Two bridges writing one store
 * (instances sharing a data directory, as scale-out deployments share the registry's) would number
 * partitions alike and overwrite each other's files, so the second one is refused with a clear
 * error instead. Node has no flock, so the lock is a file created exclusively (`wx`) naming its
 * holder, its time refreshed every HEARTBEAT_MS while held; it is taken over when its holder is
 * gone: a process of this host that no longer runs (or this very process id: a container restarted
 * on the same volume), or a heartbeat older than STALE_MS (a holder on another host).
 */

import { open, readFile, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ERROR_CODES, TelebridgeError } from '../../errors.js';

const LOCK_FILE = 'lock';
export const HEARTBEAT_MS = 10_000;
export const STALE_MS = 3 * HEARTBEAT_MS;

interface Holder {
  readonly pid: number;
  readonly host: string;
}

export interface DirLock {
  /** Removes the lock (a clean stop). */
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the directory's lock.
 * @throws E_STORAGE naming the holder when another live process holds it
 */
export async function lockDir(dir: string, now: () => number = Date.now): Promise<DirLock> {
  const path = join(dir, LOCK_FILE);
  const me: Holder = { pid: process.pid, host: hostname() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600);
      await fh.writeFile(JSON.stringify(me));
      await fh.close();
      const timer = setInterval(() => {
        const t = new Date(now());
        utimes(path, t, t).catch(() => {});
      }, HEARTBEAT_MS).unref();
      return {
        async release() {
          clearInterval(timer);
          await unlink(path).catch(() => {});
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder: Partial<Holder> = {};
    let age = Number.POSITIVE_INFINITY;
    try {
      const fh = await open(path, 'r');
      try {
        age = now() - (await fh.stat()).mtimeMs;
        holder = JSON.parse(await readFile(fh, 'utf8')) as Partial<Holder>;
      } finally {
        await fh.close();
      }
    } catch {
      // Gone meanwhile, or unreadable (torn by a crash): taken over below.
    }
    const sameHost = holder.host === me.host;
    const gone =
      typeof holder.pid !== 'number' ||
      (sameHost && (holder.pid === me.pid || !alive(holder.pid))) ||
      (!sameHost && age > STALE_MS);
    if (!gone) {
      throw new TelebridgeError(
        ERROR_CODES.storage,
        `history directory ${dir} is in use by process ${holder.pid} on ${holder.host}: give each instance its own BRIDGE_HISTORY_DIR`,
      );
    }
    await unlink(path).catch(() => {});
  }
  throw new TelebridgeError(ERROR_CODES.storage, `history directory ${dir}: cannot take its lock`);
}
