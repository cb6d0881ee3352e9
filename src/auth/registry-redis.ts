/**
 * Room: auth. The cluster's registry (cluster mode): devices and service users in Redis
 * (auth-redis.ts), shared by every instance and changed by the CLI from anywhere.
 *
 * Verification stays local: a name's records are read from Redis at its first login on this
 * instance and cached; the next logins of that name cost no round trip (and, with the same secret,
 * no scrypt: `SecretCheck`). Every change is announced on the change channel by the script that
 * makes it; each instance drops the names it is told about from its cache, and a removal is handed
 * to `onRemoved` (the broker disconnects the device wherever it is connected). Nothing is cached
 * while the channel is down; after it is back, every cached name is read again and those removed
 * meanwhile are announced then.
 */
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import type { AuthChange, AuthRedis } from './auth-redis.js';
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

/**
 * Adds records to one kind's hash, keeping the namespace shared with the other kind.
 * KEYS: the kind's hash, the other kind's hash. ARGV: channel, kind, all-or-nothing ('1'/'0'),
 * overwrite ('1'/'0'), then name/record pairs. A name is taken when the other kind has it, or this
 * kind has it and overwrite is off. All or nothing: the first taken name is returned as `{name}`
 * and nothing is written; otherwise taken names are left alone. Returns `{'', added…}`.
 */
const ADD_SCRIPT = `
local function taken(name)
  if redis.call('HEXISTS', KEYS[2], name) == 1 then return true end
  return ARGV[4] ~= '1' and redis.call('HEXISTS', KEYS[1], name) == 1
end
if ARGV[3] == '1' then
  for i = 5, #ARGV, 2 do
    if taken(ARGV[i]) then return {ARGV[i]} end
  end
end
local added = {''}
local names = {}
for i = 5, #ARGV, 2 do
  if not taken(ARGV[i]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    added[#added + 1] = ARGV[i]
    names[#names + 1] = ARGV[i]
  end
end
if #names > 0 then
  redis.call('PUBLISH', ARGV[1], cjson.encode({op = 'set', kind = ARGV[2], names = names}))
end
return added`;

/** KEYS: the kind's hash. ARGV: channel, kind, name. Returns 1 when removed. */
const REMOVE_SCRIPT = `
if redis.call('HDEL', KEYS[1], ARGV[3]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[1], cjson.encode({op = 'del', kind = ARGV[2], names = {ARGV[3]}}))
return 1`;

/** How `add` treats names that are taken (see ADD_SCRIPT). */
interface Mode {
  readonly allOrNothing: boolean;
  readonly overwrite: boolean;
}

interface Lookup {
  readonly device: DeviceRecord | undefined;
  readonly user: UserRecord | undefined;
}

/** Names cached per instance; past it the cache starts over (a re-read costs one round trip). */
const MAX_CACHED = 1_000_000;
/** Names read back per command when resynchronising. */
const RESYNC_BATCH = 1000;

export class RedisRegistry implements Registry {
  private readonly cache = new Map<string, Lookup>();
  /** Moves on every invalidation: a read that started before one is not cached. */
  private generation = 0;
  private readonly secrets = new SecretCheck();
  private readonly removalListeners = new Set<(removal: Removal) => void>();
  private readonly unsubscribe: (() => void)[];

  constructor(private readonly redis: AuthRedis) {
    this.unsubscribe = [
      redis.onChange((change) => this.changed(change)),
      // A read begun before the channel went down is not cached (a change may go unheard). What is
      // cached stays usable meanwhile: devices reconnecting during a Redis outage or failover log in.
      redis.onDown(() => this.generation++),
      redis.onResync((lost) => {
        if (lost) {
          // Redis came back empty, which is not a removal of everyone (auth-redis.ts).
          this.invalidateAll();
          return;
        }
        this.resync().catch(() => undefined); // a failed re-read is retried at the next reconnect
      }),
    ];
  }

  async addDevice(id: string): Promise<string> {
    return (await this.addDevices([id])).get(id)!;
  }

  async addDevices(
    ids: readonly string[],
    options: { replace?: boolean } = {},
  ): Promise<Map<string, string>> {
    for (const id of ids) assertName(id, 'device id');
    if (new Set(ids).size !== ids.length)
      throw new TelebridgeError(ERROR_CODES.registry, 'a device id is given twice');
    const secrets = new Map(ids.map((id) => [id, newSecret()]));
    const records = await Promise.all([...secrets.values()].map(hashSecret));
    await this.add('device', ids, records, { allOrNothing: true, overwrite: options.replace === true });
    return secrets;
  }

  removeDevice(id: string): Promise<boolean> {
    return this.remove('device', id);
  }

  async listDevices(): Promise<{ id: string; createdAt: string }[]> {
    const devices = await this.scan(this.redis.keys.devices, isCredential);
    return [...devices].map(([id, d]) => ({ id, createdAt: d.createdAt }));
  }

  async hasDeviceNow(id: string): Promise<boolean> {
    return (await this.lookup(id)).device !== undefined;
  }

  async addUser(name: string, rights: UserRights): Promise<string> {
    assertName(name, 'user name');
    assertRights(rights);
    const secret = newSecret();
    const record: UserRecord = {
      ...(await hashSecret(secret)),
      publish: [...rights.publish],
      subscribe: [...rights.subscribe],
    };
    await this.add('user', [name], [record], { allOrNothing: true, overwrite: false });
    return secret;
  }

  removeUser(name: string): Promise<boolean> {
    return this.remove('user', name);
  }

  async listUsers(): Promise<
    { name: string; publish: readonly string[]; subscribe: readonly string[]; createdAt: string }[]
  > {
    const users = await this.scan(this.redis.keys.users, isUserRecord);
    return [...users].map(([name, u]) => ({
      name,
      publish: u.publish,
      subscribe: u.subscribe,
      createdAt: u.createdAt,
    }));
  }

  async authenticate(username: string, password: Buffer): Promise<Identity | undefined> {
    const generation = this.generation;
    const { device, user } = await this.lookup(username);
    const identity = await this.secrets.identify(username, password, device, user);
    // Removed while the secret was being checked: the removal was announced before this login
    // completed, so nobody would disconnect it. Look again.
    if (identity && generation !== this.generation) {
      const now = await this.lookup(username);
      if ((identity.kind === 'device' ? now.device : now.user)?.hash !== (device ?? user)?.hash)
        return undefined;
    }
    return identity;
  }

  onRemoved(listener: (removal: Removal) => void): () => void {
    this.removalListeners.add(listener);
    return () => this.removalListeners.delete(listener);
  }

  async records(): Promise<RegistryRecords> {
    const [devices, users] = await Promise.all([
      this.scan(this.redis.keys.devices, isCredential),
      this.scan(this.redis.keys.users, isUserRecord),
    ]);
    return { devices: Object.fromEntries(devices), users: Object.fromEntries(users) };
  }

  async import(
    records: RegistryRecords,
    options: { replace?: boolean } = {},
  ): Promise<{ added: string[]; kept: string[] }> {
    const mode: Mode = { allOrNothing: false, overwrite: options.replace === true };
    const added: string[] = [];
    const kept: string[] = [];
    for (const kind of ['device', 'user'] as const) {
      const entries = Object.entries(kind === 'device' ? records.devices : records.users);
      for (const [name, record] of entries) {
        assertName(name, kind === 'device' ? 'device id' : 'user name');
        if (!(kind === 'device' ? isCredential(record) : isUserRecord(record)))
          throw new TelebridgeError(ERROR_CODES.registry, `${kind} '${name}': not a stored record`);
      }
      for (let i = 0; i < entries.length; i += RESYNC_BATCH) {
        const batch = entries.slice(i, i + RESYNC_BATCH);
        const done = new Set(
          await this.add(
            kind,
            batch.map(([name]) => name),
            batch.map(([, record]) => record),
            mode,
          ),
        );
        for (const [name] of batch) (done.has(name) ? added : kept).push(name);
      }
    }
    return { added, kept };
  }

  async close(): Promise<void> {
    for (const stop of this.unsubscribe) stop();
    this.removalListeners.clear();
    this.cache.clear();
  }

  /** A name's records: from the cache, else one round trip (cached while changes reach us). */
  private async lookup(name: string): Promise<Lookup> {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const generation = this.generation;
    const { devices, users } = this.redis.keys;
    const [device, user] = await Promise.all([
      this.redis.cmd.hget(devices, name),
      this.redis.cmd.hget(users, name),
    ]);
    const found: Lookup = {
      device: parseRecord(device, isCredential),
      user: device ? undefined : parseRecord(user, isUserRecord),
    };
    // Only names that exist are cached: an unknown name is rare and costs a scrypt anyway.
    if ((found.device || found.user) && generation === this.generation && this.redis.watching) {
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
      this.cache.set(name, found);
    }
    return found;
  }

  private async add(
    kind: Removal['kind'],
    names: readonly string[],
    records: readonly (DeviceRecord | UserRecord)[],
    mode: Mode,
  ): Promise<string[]> {
    const { devices, users, changes } = this.redis.keys;
    const [own, other] = kind === 'device' ? [devices, users] : [users, devices];
    const args = names.flatMap((name, i) => [name, JSON.stringify(records[i])]);
    const flags = [mode.allOrNothing ? '1' : '0', mode.overwrite ? '1' : '0'];
    const reply = (await this.redis.cmd.eval(
      ADD_SCRIPT,
      2,
      own,
      other,
      changes,
      kind,
      ...flags,
      ...args,
    )) as string[];
    if (reply[0]) throw alreadyExists(reply[0]);
    return reply.slice(1);
  }

  private async remove(kind: Removal['kind'], name: string): Promise<boolean> {
    const { devices, users, changes } = this.redis.keys;
    const key = kind === 'device' ? devices : users;
    return (await this.redis.cmd.eval(REMOVE_SCRIPT, 1, key, changes, kind, name)) === 1;
  }

  private changed(change: AuthChange): void {
    if (change.op !== 'set' && change.op !== 'del') return;
    this.generation++;
    for (const name of change.names) this.cache.delete(name);
    if (change.op === 'del') for (const name of change.names) this.announce({ kind: change.kind, name });
  }

  private invalidateAll(): void {
    this.generation++;
    this.cache.clear();
  }

  /**
   * After the change channel was down: every cached name is read again; one removed meanwhile is
   * announced, one changed is dropped from the cache.
   */
  private async resync(): Promise<void> {
    this.generation++;
    const names = [...this.cache.keys()];
    for (let i = 0; i < names.length; i += RESYNC_BATCH) {
      const batch = names.slice(i, i + RESYNC_BATCH);
      const [devices, users] = await Promise.all([
        this.redis.cmd.hmget(this.redis.keys.devices, ...batch),
        this.redis.cmd.hmget(this.redis.keys.users, ...batch),
      ]);
      batch.forEach((name, j) => {
        const before = this.cache.get(name);
        if (!before) return; // dropped meanwhile by a change message
        const kind: Removal['kind'] = before.device ? 'device' : 'user';
        const now = kind === 'device' ? devices[j] : users[j];
        if (now === JSON.stringify(before.device ?? before.user)) return;
        this.cache.delete(name);
        if (now === null) this.announce({ kind, name });
      });
    }
  }

  private announce(removal: Removal): void {
    for (const listener of this.removalListeners) listener(removal);
  }

  /** Every record of a hash, read in steps (HSCAN) so a big registry never blocks Redis. */
  private async scan<T>(key: string, valid: (value: unknown) => value is T): Promise<Map<string, T>> {
    const out = new Map<string, T>();
    const stream = this.redis.cmd.hscanStream(key, { count: 1000 });
    for await (const chunk of stream as AsyncIterable<string[]>) {
      for (let i = 0; i + 1 < chunk.length; i += 2) {
        const record = parseRecord(chunk[i + 1]!, valid);
        if (record) out.set(chunk[i]!, record);
      }
    }
    return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
}

function parseRecord<T>(text: string | null, valid: (value: unknown) => value is T): T | undefined {
  if (text === null) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return valid(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
