/**
 * Room: auth. The device and service-user registry: what it promises, whatever stores it — a file in
 * the data directory (registry-file.ts, one instance) or Redis (registry-redis.ts, cluster mode,
 * shared by every instance). One contract suite runs against both (test/registry-contract.test.ts).
 *
 * Secrets are random (32 bytes, base64url), shown once, and stored only as salted scrypt hashes
 * (N=2^14, r=8, p=1: ~40 ms and 16 MiB per check). A successful check is remembered in memory as a
 * keyed digest (`SecretCheck`), so a reconnect storm does not cost one scrypt per device; the digest
 * covers the stored hash, so a device re-created with a new secret never matches an old entry.
 */
import { createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
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

export interface Credential {
  readonly salt: string;
  readonly hash: string;
  readonly createdAt: string;
}

export interface DeviceRecord extends Credential {}

export interface UserRecord extends Credential {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

/** Every record as stored (hashes only): the file's content, and what `registry import` moves. */
export interface RegistryRecords {
  readonly devices: Readonly<Record<string, DeviceRecord>>;
  readonly users: Readonly<Record<string, UserRecord>>;
}

export type Identity =
  | { readonly kind: 'device'; readonly id: string }
  | {
      readonly kind: 'user';
      readonly id: string;
      readonly publish: readonly string[];
      readonly subscribe: readonly string[];
    };

/** A device or user that was removed (by this process or another: the CLI, another instance). */
export interface Removal {
  readonly kind: 'device' | 'user';
  readonly name: string;
}

export interface UserRights {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

export interface Registry {
  /** Creates a device and returns its secret (shown once, stored hashed). */
  addDevice(id: string): Promise<string>;
  /**
   * Creates many devices at once, hashing in parallel on libuv's threads (provisioning a fleet).
   * `replace`: a device that exists gets a new secret instead of an error.
   * @returns id → secret, in the order of `ids`.
   */
  addDevices(ids: readonly string[], options?: { replace?: boolean }): Promise<Map<string, string>>;
  /** False when there was no such device. */
  removeDevice(id: string): Promise<boolean>;
  listDevices(): Promise<{ id: string; createdAt: string }[]>;
  /**
   * Whether the device exists as of now (a device added or removed a moment ago counts as such).
   * For logins that carry no secret (client certificates).
   */
  hasDeviceNow(id: string): Promise<boolean>;
  /** Creates a service user confined to the given topic filters and returns its secret. */
  addUser(name: string, rights: UserRights): Promise<string>;
  removeUser(name: string): Promise<boolean>;
  listUsers(): Promise<
    { name: string; publish: readonly string[]; subscribe: readonly string[]; createdAt: string }[]
  >;
  /**
   * Checks a username/password pair. Devices and users share one namespace, so a name is one or the
   * other. Resolves undefined when wrong; takes as long for an unknown name as for a wrong secret.
   */
  authenticate(username: string, password: Buffer): Promise<Identity | undefined>;
  /**
   * Calls `listener` for each device or user removed from now on, wherever it was removed, within
   * about a second (the broker disconnects it). Returns the unsubscribe function.
   */
  onRemoved(listener: (removal: Removal) => void): () => void;
  /** Every record as stored (hashes): the source of `registry import`. */
  records(): Promise<RegistryRecords>;
  /**
   * Adds stored records as they are (hashes: the secrets stay what they were). A name that exists
   * is kept unless `replace`; a name that is a device on one side and a user on the other is kept.
   */
  import(
    records: RegistryRecords,
    options?: { replace?: boolean },
  ): Promise<{ added: string[]; kept: string[] }>;
  /** Stops watching for changes and releases what the registry holds open. */
  close(): Promise<void>;
}

/**
 * Verifies secrets against stored records, remembering each success as a keyed digest (the pepper
 * is random per process) so the next login of the same device with the same secret skips scrypt.
 */
export class SecretCheck {
  private readonly verified = new Map<string, Buffer>();
  private readonly pepper = randomBytes(32);

  /** `key` names the record (`device:<id>`); true when `password` is its secret. */
  async verify(key: string, record: Credential, password: Buffer): Promise<boolean> {
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

  /** Spends the effort of a real check, so unknown names cannot be told apart by timing. */
  async waste(password: Buffer): Promise<void> {
    await scrypt(password, DUMMY_SALT, KEY_LENGTH, SCRYPT);
  }

  /**
   * The identity `username` proves with `password` against its stored record (a device's or a
   * user's, never both), or undefined.
   */
  async identify(
    username: string,
    password: Buffer,
    device: DeviceRecord | undefined,
    user: UserRecord | undefined,
  ): Promise<Identity | undefined> {
    const record = device ?? user;
    if (!record) {
      await this.waste(password);
      return undefined;
    }
    const kind = device ? 'device' : 'user';
    if (!(await this.verify(`${kind}:${username}`, record, password))) return undefined;
    return device || !user
      ? { kind: 'device', id: username }
      : { kind: 'user', id: username, publish: user.publish, subscribe: user.subscribe };
  }
}

const DUMMY_SALT = randomBytes(16);

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export async function hashSecret(secret: string): Promise<Credential> {
  const salt = randomBytes(16);
  const hash = await scrypt(secret, salt, KEY_LENGTH, SCRYPT);
  return {
    salt: salt.toString('base64'),
    hash: hash.toString('base64'),
    createdAt: new Date().toISOString(),
  };
}

/** Checks a device id or user name against contract §3's pattern. */
export function assertName(name: string, what: string): void {
  if (!DEVICE_ID_RE.test(name)) {
    throw new TelebridgeError(
      ERROR_CODES.registry,
      `invalid ${what} '${name}': expected ${DEVICE_ID_RE.source} (letters, digits, _ . -, at most 64)`,
    );
  }
}

export function assertRights(rights: UserRights): void {
  for (const filter of [...rights.publish, ...rights.subscribe]) {
    if (!isValidFilter(filter))
      throw new TelebridgeError(ERROR_CODES.registry, `invalid topic filter '${filter}'`);
  }
}

export function alreadyExists(name: string): TelebridgeError {
  return new TelebridgeError(ERROR_CODES.registry, `'${name}' already exists`);
}

/** A stored record read back (file or Redis) has the fields a check needs; anything else is refused. */
export function isCredential(value: unknown): value is Credential {
  const v = value as Partial<Credential> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.salt === 'string' &&
    typeof v.hash === 'string' &&
    typeof v.createdAt === 'string'
  );
}

export function isUserRecord(value: unknown): value is UserRecord {
  const v = value as Partial<UserRecord>;
  return isCredential(value) && Array.isArray(v.publish) && Array.isArray(v.subscribe);
}
