/**
 * Room: bridge/history. The history store's `meta` file: which key space its keys belong to (the memory broker's epoch,
 * or a Redis stream's identity) and, for the memory broker, the position reservation (engine.ts).
 * Written whole and atomically (temp file, fsync, rename, directory fsync): after a crash it is
 * either the old or the new one, never torn.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDir } from '../record-file.js';
import type { KeySpace } from './key.js';

export interface Meta {
  /** 2: events stored as fields (codec.ts); a store of version 1 (JSON bodies) is emptied. */
  readonly version: 2;
  readonly keys: 'local' | 'external';
  /** Local keys: the epoch of cursors. */
  readonly epoch?: string;
  /** External keys: the stream's identity. */
  readonly stream?: string;
  /** Local keys: no position above this was handed out. */
  readonly reserved?: number;
}

const META_FILE = 'meta';

/** Reads `meta`; a missing one starts a fresh store, a mismatching one empties it. */
export async function loadMeta(
  dir: string,
  keys: KeySpace,
): Promise<{ meta: Meta; reset: string | undefined }> {
  const fresh = (): Meta =>
    keys.type === 'local'
      ? { version: 2, keys: 'local', epoch: newEpoch(), reserved: 0 }
      : { version: 2, keys: 'external', stream: keys.stream };
  let text: string;
  try {
    text = await readFile(join(dir, META_FILE), 'utf8');
  } catch {
    const hasData = (await readdir(dir)).some((n) => n.endsWith('.journal'));
    return { meta: fresh(), reset: hasData ? 'its meta file is missing' : undefined };
  }
  let meta: Meta;
  try {
    meta = JSON.parse(text) as Meta;
  } catch {
    return { meta: fresh(), reset: 'its meta file is unreadable' };
  }
  const version: unknown = meta.version;
  if (version !== 2) {
    return {
      meta: fresh(),
      reset:
        typeof version === 'number' && version < 2
          ? `it was written in an older format (version ${version})`
          : `unknown version ${String(version)}`,
    };
  }
  if (keys.type === 'local') {
    if (meta.keys !== 'local' || typeof meta.epoch !== 'string' || !/^[0-9a-z]{1,32}$/.test(meta.epoch)) {
      return { meta: fresh(), reset: 'it held cursors of the Redis broker (stream IDs)' };
    }
    return {
      meta: { ...meta, reserved: Number.isSafeInteger(meta.reserved) ? meta.reserved : 0 },
      reset: undefined,
    };
  }
  if (meta.keys !== 'external') return { meta: fresh(), reset: 'it held cursors of the memory broker' };
  if (meta.stream !== keys.stream) {
    return { meta: fresh(), reset: `it held cursors of another stream than ${keys.stream}` };
  }
  return { meta, reset: undefined };
}

/** A cursor epoch: base-36 time and random bytes, as the memory broker draws it. */
function newEpoch(): string {
  return Date.now().toString(36) + randomBytes(3).toString('hex');
}

/** Writes `meta` atomically. */
export async function saveMeta(dir: string, meta: Meta): Promise<void> {
  const tmp = join(dir, `${META_FILE}.tmp`);
  let fh: FileHandle | undefined = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify(meta));
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, join(dir, META_FILE));
    await syncDir(dir);
  } finally {
    await fh?.close().catch(() => {});
  }
}
