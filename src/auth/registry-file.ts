/**
 * Room: auth. The registry of one instance: `<dataDir>/registry.json`, written atomically (temp file
 * + rename) so the CLI can change it while the bridge runs; the bridge re-reads it when its mtime
 * moves — at a login of a name it does not know, at most once a second otherwise, and once a second
 * while someone listens for removals (`onRemoved`: the broker, which disconnects a removed device).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import {
  alreadyExists,
  assertName,
  assertRights,
  type DeviceRecord,
  hashSecret,
  type Identity,
  isCredential,
  isUserRecord,
  newSecret,
  type Registry,
  type RegistryRecords,
  type Removal,
  SecretCheck,
  type UserRecord,
  type UserRights,
} from './registry.js';

interface RegistryFile {
  version: 1;
  devices: Record<string, DeviceRecord>;
  users: Record<string, UserRecord>;
}

/** How often the file is looked at while someone listens for removals, ms. */
const WATCH_INTERVAL_MS = 1000;

export class FileRegistry implements Registry {
  private data: RegistryFile = emptyFile();
  private mtimeMs = -1;
  private checkedAt = 0;
  private readonly secrets = new SecretCheck();
  /** Changes run one at a time: each is read-modify-write of the whole file. */
  private changes: Promise<unknown> = Promise.resolve();
  private readonly removalListeners = new Set<(removal: Removal) => void>();
  private watch: NodeJS.Timeout | undefined;

  private constructor(readonly path: string) {}

  /** Opens (creating the directory if needed) the registry of a data directory. */
  static async open(dataDir: string): Promise<FileRegistry> {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const registry = new FileRegistry(join(dataDir, 'registry.json'));
    await registry.reload(true);
    return registry;
  }

  async addDevice(id: string): Promise<string> {
    assertName(id, 'device id');
    return this.change(async () => {
      this.assertFree(id);
      const secret = newSecret();
      this.data.devices[id] = await hashSecret(secret);
      return secret;
    });
  }

  async addDevices(
    ids: readonly string[],
    options: { replace?: boolean } = {},
  ): Promise<Map<string, string>> {
    for (const id of ids) assertName(id, 'device id');
    return this.change(async () => {
      for (const id of ids) {
        if (Object.hasOwn(this.data.users, id) || (!options.replace && this.knows(id))) this.assertFree(id);
      }
      const secrets = new Map(ids.map((id) => [id, newSecret()]));
      const records = await Promise.all([...secrets.values()].map(hashSecret));
      ids.forEach((id, i) => {
        this.data.devices[id] = records[i]!;
      });
      return secrets;
    });
  }

  async removeDevice(id: string): Promise<boolean> {
    return this.change(async () => Object.hasOwn(this.data.devices, id) && delete this.data.devices[id]);
  }

  async listDevices(): Promise<{ id: string; createdAt: string }[]> {
    await this.reload(true);
    return Object.entries(this.data.devices).map(([id, d]) => ({ id, createdAt: d.createdAt }));
  }

  async hasDeviceNow(id: string): Promise<boolean> {
    await this.reload(true);
    return Object.hasOwn(this.data.devices, id);
  }

  async addUser(name: string, rights: UserRights): Promise<string> {
    assertName(name, 'user name');
    assertRights(rights);
    return this.change(async () => {
      this.assertFree(name);
      const secret = newSecret();
      this.data.users[name] = {
        ...(await hashSecret(secret)),
        publish: [...rights.publish],
        subscribe: [...rights.subscribe],
      };
      return secret;
    });
  }

  async removeUser(name: string): Promise<boolean> {
    return this.change(async () => Object.hasOwn(this.data.users, name) && delete this.data.users[name]);
  }

  async listUsers(): Promise<
    { name: string; publish: readonly string[]; subscribe: readonly string[]; createdAt: string }[]
  > {
    await this.reload(true);
    return Object.entries(this.data.users).map(([name, u]) => ({
      name,
      publish: u.publish,
      subscribe: u.subscribe,
      createdAt: u.createdAt,
    }));
  }

  async authenticate(username: string, password: Buffer): Promise<Identity | undefined> {
    await this.reload(false);
    // A name not known yet may have been added a moment ago by the CLI: look at the file again.
    if (!this.knows(username)) await this.reload(true);
    // Names come from the wire: own properties only ('constructor' is not a device).
    const device = Object.hasOwn(this.data.devices, username) ? this.data.devices[username] : undefined;
    const user = device || !Object.hasOwn(this.data.users, username) ? undefined : this.data.users[username];
    return this.secrets.identify(username, password, device, user);
  }

  onRemoved(listener: (removal: Removal) => void): () => void {
    this.removalListeners.add(listener);
    this.watch ??= setInterval(() => {
      this.reload(true).catch(() => undefined); // a broken file is reported by the next login
    }, WATCH_INTERVAL_MS).unref();
    return () => {
      this.removalListeners.delete(listener);
      if (this.removalListeners.size === 0) this.stopWatching();
    };
  }

  async records(): Promise<RegistryRecords> {
    await this.reload(true);
    return structuredClone({ devices: this.data.devices, users: this.data.users });
  }

  async import(
    records: RegistryRecords,
    options: { replace?: boolean } = {},
  ): Promise<{ added: string[]; kept: string[] }> {
    const result = { added: [] as string[], kept: [] as string[] };
    return this.change(async () => {
      for (const [kind, entries] of [
        ['devices', records.devices],
        ['users', records.users],
      ] as const) {
        const other = kind === 'devices' ? this.data.users : this.data.devices;
        for (const [name, record] of Object.entries(entries)) {
          assertName(name, kind === 'devices' ? 'device id' : 'user name');
          if (Object.hasOwn(other, name) || (!options.replace && Object.hasOwn(this.data[kind], name))) {
            result.kept.push(name);
          } else {
            (this.data[kind] as Record<string, unknown>)[name] = record;
            result.added.push(name);
          }
        }
      }
      return result.added.length > 0;
    }).then(() => result);
  }

  async close(): Promise<void> {
    this.removalListeners.clear();
    this.stopWatching();
    await this.changes;
  }

  private stopWatching(): void {
    clearInterval(this.watch);
    this.watch = undefined;
  }

  /** Devices and users share one namespace. */
  private knows(name: string): boolean {
    return Object.hasOwn(this.data.devices, name) || Object.hasOwn(this.data.users, name);
  }

  private assertFree(name: string): void {
    if (this.knows(name)) throw alreadyExists(name);
  }

  /**
   * A read-modify-write of the file, one at a time in this process: re-read, apply, save when
   * `apply` returns something truthy (a secret, or true for a removal).
   */
  private change<T>(apply: () => Promise<T>): Promise<T> {
    const run = this.changes.then(async () => {
      await this.reload(true);
      const before = this.names();
      const result = await apply();
      if (result) {
        await this.save();
        this.announceRemovals(before);
      }
      return result;
    });
    this.changes = run.catch(() => undefined);
    return run;
  }

  /** Re-reads the file when its mtime moved; `force` skips the once-a-second throttle. */
  private async reload(force: boolean): Promise<void> {
    const now = Date.now();
    if (!force && now - this.checkedAt < 1000) return;
    this.checkedAt = now;
    let mtimeMs: number;
    try {
      mtimeMs = (await stat(this.path)).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      mtimeMs = -1;
    }
    if (mtimeMs === this.mtimeMs) return;
    const before = this.names();
    this.data = mtimeMs === -1 ? emptyFile() : parseFile(this.path, await readFile(this.path, 'utf8'));
    this.mtimeMs = mtimeMs;
    this.announceRemovals(before);
  }

  private names(): Map<string, Removal['kind']> {
    const out = new Map<string, Removal['kind']>();
    for (const id of Object.keys(this.data.devices)) out.set(id, 'device');
    for (const name of Object.keys(this.data.users)) out.set(name, 'user');
    return out;
  }

  /** Tells the listeners about every name of `before` that is gone now (or changed kind). */
  private announceRemovals(before: Map<string, Removal['kind']>): void {
    if (this.removalListeners.size === 0) return;
    const now = this.names();
    for (const [name, kind] of before) {
      if (now.get(name) === kind) continue;
      for (const listener of this.removalListeners) listener({ kind, name });
    }
  }

  private async save(): Promise<void> {
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, `${JSON.stringify(this.data, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, this.path);
    this.mtimeMs = (await stat(this.path)).mtimeMs;
  }
}

function emptyFile(): RegistryFile {
  return { version: 1, devices: {}, users: {} };
}

function parseFile(path: string, text: string): RegistryFile {
  const parsed = JSON.parse(text) as RegistryFile;
  if (
    parsed?.version !== 1 ||
    typeof parsed.devices !== 'object' ||
    typeof parsed.users !== 'object' ||
    !Object.values(parsed.devices).every(isCredential) ||
    !Object.values(parsed.users).every(isUserRecord)
  ) {
    throw new TelebridgeError(ERROR_CODES.registry, `${path}: not a telebridge registry (version 1)`);
  }
  return parsed;
}
