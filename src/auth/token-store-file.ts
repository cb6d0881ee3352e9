/**
 * Room: auth. Token key and revocations of one instance, in its data directory:
 * - `<dataDir>/token-key`: 32 random bytes, base64url, made once (mode 0600). Deleting the file
 *   invalidates every token issued so far.
 * - `<dataDir>/revoked-tokens.json`: jti → expiry (Unix s), written atomically; a running bridge
 *   re-reads it when its mtime or size changes, so `telebridge token revoke` takes effect without a
 *   restart.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TokenStore, tokenError } from './token-store.js';

const KEY_FILE = 'token-key';
const REVOKED_FILE = 'revoked-tokens.json';

export class FileTokenStore implements TokenStore {
  private cache: { mtimeMs: number; size: number; entries: Map<string, number> } | undefined;
  /** Revocations run one at a time in this process (read-modify-write of the file). */
  private changes: Promise<unknown> = Promise.resolve();

  private constructor(
    private key: Uint8Array | undefined,
    private readonly keyPath: string,
    private readonly revokedPath: string,
  ) {}

  /**
   * Opens the store of `dataDir`; makes the key when there is none, unless `createKey` is false
   * (then `signingKey()` is undefined until one is adopted).
   */
  static async open(dataDir: string, options: { createKey?: boolean } = {}): Promise<FileTokenStore> {
    await mkdir(dataDir, { recursive: true });
    const keyPath = join(dataDir, KEY_FILE);
    if (options.createKey !== false) {
      try {
        await writeFile(keyPath, randomBytes(32).toString('base64url'), { mode: 0o600, flag: 'wx' });
      } catch (err) {
        // EEXIST: it was made before (or by a concurrent process); read it.
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    return new FileTokenStore(await readKey(keyPath), keyPath, join(dataDir, REVOKED_FILE));
  }

  signingKey(): Uint8Array | undefined {
    return this.key;
  }

  async isRevoked(jti: string): Promise<boolean> {
    return ((await this.entries()).get(jti) ?? -1) >= Math.floor(Date.now() / 1000);
  }

  revoke(entries: ReadonlyMap<string, number>): Promise<void> {
    const run = this.changes.then(async () => {
      // Read fresh (not the cache): another process may have revoked something meanwhile.
      const current = parseRevoked(await readFile(this.revokedPath, 'utf8').catch(ifMissing('')));
      const now = Math.floor(Date.now() / 1000);
      for (const [id, until] of current) if (until < now) current.delete(id);
      for (const [jti, exp] of entries) current.set(jti, Math.max(exp, current.get(jti) ?? 0));
      const tmp = `${this.revokedPath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      await writeFile(tmp, `${JSON.stringify(Object.fromEntries(current), null, 2)}\n`, { mode: 0o600 });
      await rename(tmp, this.revokedPath);
      this.cache = { ...(await stat(this.revokedPath)), entries: current };
    });
    this.changes = run.catch(() => undefined);
    return run;
  }

  async revocations(): Promise<Map<string, number>> {
    const now = Math.floor(Date.now() / 1000);
    return new Map([...(await this.entries())].filter(([, exp]) => exp >= now));
  }

  async adoptKey(key: Uint8Array, replace: boolean): Promise<boolean> {
    if (this.key && !replace) return Buffer.from(this.key).equals(Buffer.from(key));
    const tmp = `${this.keyPath}.${process.pid}.tmp`;
    await writeFile(tmp, Buffer.from(key).toString('base64url'), { mode: 0o600 });
    await rename(tmp, this.keyPath);
    this.key = new Uint8Array(key);
    return true;
  }

  async close(): Promise<void> {
    await this.changes;
  }

  private async entries(): Promise<Map<string, number>> {
    let info: { mtimeMs: number; size: number };
    try {
      info = await stat(this.revokedPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw err;
    }
    if (this.cache && this.cache.mtimeMs === info.mtimeMs && this.cache.size === info.size) {
      return this.cache.entries;
    }
    const entries = parseRevoked(await readFile(this.revokedPath, 'utf8'));
    this.cache = { mtimeMs: info.mtimeMs, size: info.size, entries };
    return entries;
  }
}

async function readKey(path: string): Promise<Uint8Array | undefined> {
  const text = await readFile(path, 'utf8').catch(ifMissing(undefined));
  if (text === undefined) return undefined;
  const key = Buffer.from(text.trim(), 'base64url');
  if (key.length < 32) throw tokenError(`${path}: the token signing key is shorter than 32 bytes`);
  return new Uint8Array(key);
}

function ifMissing<T>(value: T): (err: NodeJS.ErrnoException) => T {
  return (err) => {
    if (err.code === 'ENOENT') return value;
    throw err;
  };
}

function parseRevoked(text: string): Map<string, number> {
  const entries = new Map<string, number>();
  if (!text.trim()) return entries;
  const raw = JSON.parse(text) as unknown;
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
    for (const [jti, exp] of Object.entries(raw)) if (typeof exp === 'number') entries.set(jti, exp);
  }
  return entries;
}
