/**
 * Provisioning of a simulated fleet in the bridge's registry (src/auth/registry.ts: the data
 * directory's, or the cluster's in Redis), and the fleet file that keeps the devices' secrets (the
 * registry stores only hashes).
 *
 * Fleet file (JSON, mode 0600): `{ "version": 1, "devices": [{ "id": "sim-00001", "secret": "…" }] }`.
 * Re-running with the same file reuses its devices; a device that exists in the registry but whose
 * secret is unknown is re-created (it is a simulator device, named by our prefix).
 *
 * Cost: the registry hashes each secret with scrypt (~40 ms of one libuv thread); batches are hashed
 * in parallel and written once, about 100 devices/s on 4 threads. Big fleets should keep their
 * fleet file, or run against a bridge with BRIDGE_AUTH=off.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Registry } from '../src/auth/registry.js';
import { FileRegistry } from '../src/auth/registry-file.js';
import type { FleetDevice } from './fleet.js';

/** Devices created per registry write. */
const PROVISION_BATCH = 200;

export interface FleetFile {
  version: 1;
  devices: { id: string; secret: string }[];
}

/** `prefix` + zero-padded index (1-based), e.g. sim-00001. */
export function fleetIds(prefix: string, count: number): string[] {
  const width = Math.max(5, String(count).length);
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(width, '0')}`);
}

export async function readFleetFile(path: string): Promise<Map<string, string>> {
  try {
    const file = JSON.parse(await readFile(path, 'utf8')) as FleetFile;
    if (file.version !== 1 || !Array.isArray(file.devices))
      throw new Error(`${path}: not a fleet file (version 1)`);
    return new Map(file.devices.map((d) => [d.id, d.secret]));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
}

async function writeFleetFile(path: string, secrets: Map<string, string>): Promise<void> {
  const file: FleetFile = { version: 1, devices: [...secrets].map(([id, secret]) => ({ id, secret })) };
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(file, null, 1)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

/**
 * Makes sure every id exists in the registry (`registry`, or the data directory's) with a secret
 * known to the fleet file.
 * @returns the devices with their secrets, in the order of `ids`.
 */
export async function provisionFleet(
  options: {
    ids: readonly string[];
    fleetFile: string;
    onProgress?: (done: number, total: number) => void;
  } & ({ registry: Registry } | { dataDir: string }),
): Promise<FleetDevice[]> {
  if (!('registry' in options)) {
    const registry = await FileRegistry.open(options.dataDir);
    try {
      return await provisionFleet({ ...options, registry });
    } finally {
      await registry.close();
    }
  }
  const { registry } = options;
  const secrets = await readFleetFile(options.fleetFile);
  const existing = new Set((await registry.listDevices()).map((d) => d.id));
  const todo = options.ids.filter((id) => !(existing.has(id) && secrets.has(id)));
  // Batches: one registry write each, and the fleet file saved after each, since a secret that is
  // not written down is lost (only its hash is stored).
  for (let i = 0; i < todo.length; i += PROVISION_BATCH) {
    const batch = todo.slice(i, i + PROVISION_BATCH);
    for (const [id, secret] of await registry.addDevices(batch, { replace: true })) secrets.set(id, secret);
    await writeFleetFile(options.fleetFile, secrets);
    options.onProgress?.(options.ids.length - todo.length + i + batch.length, options.ids.length);
  }
  return options.ids.map((id) => ({ id, secret: secrets.get(id)! }));
}

/** The devices of a fleet file (for runs without --provision). Unknown ids have no secret. */
export async function fleetFromFile(path: string, ids: readonly string[]): Promise<FleetDevice[]> {
  const secrets = await readFleetFile(path);
  return ids.map((id) => {
    const secret = secrets.get(id);
    return secret === undefined ? { id } : { id, secret };
  });
}
