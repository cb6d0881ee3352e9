/**
 * Room: auth. The device and service-user registry: `<dataDir>/registry.json`, written atomically (temp file +
 * rename) so the CLI can change it while the bridge runs; the bridge reloads it when its mtime moves.
 *
 * Secrets are random (32 bytes, base64url), shown once, and stored only as salted scrypt hashes
 * (N=2^14, r=8, p=1: ~40 ms and 16 MiB per check). A successful check is remembered in memory as a
 * keyed digest, so a reconnect storm does not cost one scrypt per device.
 */
import { createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import { DEVICE_ID_RE, isValidFilter } from '../topics.js';

const scrypt = promisify(scryptCb) as (
  password: string | Buffer,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

const SCRYPT = { N: 16_384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const KEY_LENGTH = 32;

interface Credential {
  readonly salt: string;
  readonly hash: string;
  readonly createdAt: string;
}

export interface DeviceRecord extends Credential {}

export interface UserRecord extends Credential {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

interface RegistryFile {
  version: 1;
  devices: Record<string, DeviceRecord>;
  users: Record<string, UserRecord>;
}

export type Identity =
  | { readonly kind: 'device'; readonly id: string }
  | {
      readonly kind: 'user';
      readonly id: string;
      readonly publish: readonly string[];
      readonly subscribe: readonly string[];
    };

export class Registry {
  private data: RegistryFile = emptyFile();
  private mtimeMs = -1;
  private checkedAt = 0;
  /** Verified secrets: name → HMAC(pepper, kind:name:secret). Forgotten when the record changes. */
  private readonly verified = new Map<string, Buffer>();
  private readonly pepper = randomBytes(32);
  /** Changes run one at a time: each is read-modify-write of the whole file. */
  private changes: Promise<unknown> = Promise.resolve();

  private constructor(readonly path: string) {}

  /** Opens (creating the directory if needed) the registry of a data directory. */
  static async open(dataDir: string): Promise<Registry> {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const registry = new Registry(join(dataDir, 'registry.json'));
    await registry.reload(true);
    return registry;
  }

  /** Creates a device and returns its secret (shown once, stored hashed). */
  addDevice(id: string): Promise<string> {
    assertName(id, 'device id');
    return this.change(async () => {
      this.assertFree(id);
      const secret = newSecret();
      this.data.devices[id] = await hashSecret(secret);
      return secret;
    });
  }

  /**
   * Creates many devices with one write of the file, hashing in parallel on libuv's threads
   * (provisioning a fleet). `replace`: a device that exists gets a new secret instead of an error.
   * @returns id → secret, in the order of `ids`.
   */
  addDevices(ids: readonly string[], options: { replace?: boolean } = {}): Promise<Map<string, string>> {
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

  removeDevice(id: string): Promise<boolean> {
    return this.change(async () => Object.hasOwn(this.data.devices, id) && delete this.data.devices[id]);
  }

  hasDevice(id: string): boolean {
    return Object.hasOwn(this.data.devices, id);
  }

  /**
   * `hasDevice` after a fresh look at the file (one stat): a device the CLI added or removed a
   * moment ago counts as such. For logins that carry no secret (client certificates).
   */
  async hasDeviceNow(id: string): Promise<boolean> {
    await this.reload(true);
    return this.hasDevice(id);
  }

  listDevices(): { id: string; createdAt: string }[] {
    return Object.entries(this.data.devices).map(([id, d]) => ({ id, createdAt: d.createdAt }));
  }

  /** Creates a service user confined to the given topic filters and returns its secret. */
  addUser(
    name: string,
    rights: { publish: readonly string[]; subscribe: readonly string[] },
  ): Promise<string> {
    assertName(name, 'user name');
    for (const filter of [...rights.publish, ...rights.subscribe]) {
      if (!isValidFilter(filter))
        throw new TelebridgeError(ERROR_CODES.registry, `invalid topic filter '${filter}'`);
    }
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

  removeUser(name: string): Promise<boolean> {
    return this.change(async () => Object.hasOwn(this.data.users, name) && delete this.data.users[name]);
  }

  listUsers(): {
    name: string;
    publish: readonly string[];
    subscribe: readonly string[];
    createdAt: string;
  }[] {
    return Object.entries(this.data.users).map(([name, u]) => ({
      name,
      publish: u.publish,
      subscribe: u.subscribe,
      createdAt: u.createdAt,
    }));
  }

  /** Devices and users share one namespace. */
  private knows(name: string): boolean {
    return Object.hasOwn(this.data.devices, name) || Object.hasOwn(this.data.users, name);
  }

  private assertFree(name: string): void {
    if (this.knows(name)) throw new TelebridgeError(ERROR_CODES.registry, `'${name}' already exists`);
  }

  /**
   * A read-modify-write of the file, one at a time in this process: re-read, apply, save when
   * `apply` returns something truthy (a secret, or true for a removal).
   */
  private change<T>(apply: () => Promise<T>): Promise<T> {
    const run = this.changes.then(async () => {
      await this.reload(true);
      const result = await apply();
      if (result) await this.save();
      return result;
    });
    this.changes = run.catch(() => undefined);
    return run;
  }

  /**
   * Checks a username/password pair. Devices and users share one namespace, so a name is one or the other. Resolves undefined when wrong.
   */
  async authenticate(username: string, password: Buffer): Promise<Identity | undefined> {
    await this.reload(false);
    // A name not known yet may have been added a moment ago by the CLI: look at the file again.
    if (!this.knows(username)) await this.reload(true);
    // Names come from the wire: own properties only ('constructor' is not a device).
    const device = Object.hasOwn(this.data.devices, username) ? this.data.devices[username] : undefined;
    const user = device || !Object.hasOwn(this.data.users, username) ? undefined : this.data.users[username];
    const record = device ?? user;
    if (!record) {
      // Spend the same effort as a real check so unknown names cannot be told apart by timing.
      await scrypt(password, DUMMY_SALT, KEY_LENGTH, SCRYPT);
      return undefined;
    }
    const kind = device ? 'device' : 'user';
    if (!(await this.verify(`${kind}:${username}`, record, password))) return undefined;
    return user
      ? { kind: 'user', id: username, publish: user.publish, subscribe: user.subscribe }
      : { kind: 'device', id: username };
  }

  private async verify(key: string, record: Credential, password: Buffer): Promise<boolean> {
    const digest = createHmac('sha256', this.pepper)
      .update(key)
      .update('\0')
      .update(password)
      .update(record.hash)
      .digest();
    const known = this.verified.get(key);
    if (known && timingSafeEqual(known, digest)) return true;
    const expected = Buffer.from(record.hash, 'base64');
    const actual = await scrypt(password, Buffer.from(record.salt, 'base64'), KEY_LENGTH, SCRYPT);
    if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) return false;
    if (this.verified.size > 100_000) this.verified.clear();
    this.verified.set(key, digest);
    return true;
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
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.data = emptyFile();
        this.mtimeMs = -1;
        return;
      }
      throw err;
    }
    if (mtimeMs === this.mtimeMs) return;
    const parsed = JSON.parse(await readFile(this.path, 'utf8')) as RegistryFile;
    if (parsed.version !== 1 || typeof parsed.devices !== 'object' || typeof parsed.users !== 'object') {
      throw new TelebridgeError(ERROR_CODES.registry, `${this.path}: not a telebridge registry (version 1)`);
    }
    this.data = parsed;
    this.mtimeMs = mtimeMs;
  }

  private async save(): Promise<void> {
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, `${JSON.stringify(this.data, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, this.path);
    this.mtimeMs = (await stat(this.path)).mtimeMs;
  }
}

const DUMMY_SALT = randomBytes(16);

function emptyFile(): RegistryFile {
  return { version: 1, devices: {}, users: {} };
}

function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

async function hashSecret(secret: string): Promise<Credential> {
  const salt = randomBytes(16);
  const hash = await scrypt(secret, salt, KEY_LENGTH, SCRYPT);
  return {
    salt: salt.toString('base64'),
    hash: hash.toString('base64'),
    createdAt: new Date().toISOString(),
  };
}

function assertName(name: string, what: string): void {
  if (!DEVICE_ID_RE.test(name)) {
    throw new TelebridgeError(
      ERROR_CODES.registry,
      `invalid ${what} '${name}': expected ${DEVICE_ID_RE.source} (letters, digits, _ . -, at most 64)`,
    );
  }
}
