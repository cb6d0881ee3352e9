/**
 * Room: cli. `telebridge devices add|list|remove` and `telebridge users add|list|remove`: credentials
 * in the data directory, or in the cluster's Redis when REDIS_URL is set (auth.ts). `add` prints the
 * secret once, alone on the last line (scripts take `tail -n1`). `registry import` moves a data
 * directory's devices, users, revocations and token key into the cluster's Redis.
 */
import type { Command } from 'commander';
import { FileRegistry } from '../auth/registry-file.js';
import { FileTokenStore } from '../auth/token-store-file.js';
import { loadConfig } from '../config.js';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import { DATA_DIR_HELP, withAuth } from './auth.js';
import { splitList } from './data-dir.js';

export function registerRegistryCommands(program: Command): void {
  const devices = program
    .command('devices')
    .description('devices allowed to connect (username = client id = device id)');
  devices
    .command('add')
    .description('create a device; prints its secret once, alone on the last line')
    .argument('<deviceId>', 'letters, digits, _ . - (at most 64; starts with a letter or digit)')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .action((id: string, options: { dataDir?: string }) =>
      withAuth(options, async ({ registry }) => {
        const secret = await registry.addDevice(id);
        console.log(`device ${id} created; it may publish devices/${id}/telemetry and devices/${id}/status`);
        console.log('its secret (the MQTT password), shown only this once:');
        console.log(secret);
      }),
    );
  devices
    .command('list')
    .description('list devices')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--json', 'one JSON array')
    .action((options: { dataDir?: string; json?: boolean }) =>
      withAuth(options, async ({ registry }) => {
        const list = await registry.listDevices();
        if (options.json) console.log(JSON.stringify(list));
        else for (const d of list) console.log(`${d.id}\t${d.createdAt}`);
      }),
    );
  devices
    .command('remove')
    .description('remove a device; it can no longer connect, and a connection it holds is closed')
    .argument('<deviceId>')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .action((id: string, options: { dataDir?: string }) =>
      withAuth(options, async ({ registry }) => {
        if (!(await registry.removeDevice(id))) {
          console.error(`telebridge: no device '${id}'`);
          process.exitCode = 1;
          return;
        }
        console.log(`device ${id} removed`);
      }),
    );

  const users = program
    .command('users')
    .description('service clients (backends, Node-RED, Telegraf) confined to topic filters');
  users
    .command('add')
    .description('create a service user; prints its secret once, alone on the last line')
    .argument('<name>', 'letters, digits, _ . - (at most 64)')
    .option('--publish <filters>', 'comma-separated topic filters it may publish to', '')
    .option('--subscribe <filters>', 'comma-separated topic filters it may subscribe to', '')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .action((name: string, options: { publish: string; subscribe: string; dataDir?: string }) =>
      withAuth(options, async ({ registry }) => {
        const rights = { publish: splitList(options.publish), subscribe: splitList(options.subscribe) };
        const secret = await registry.addUser(name, rights);
        console.log(
          `user ${name} created; publish: ${rights.publish.join(',') || '(none)'}; subscribe: ${rights.subscribe.join(',') || '(none)'}`,
        );
        console.log('its secret (the MQTT password), shown only this once:');
        console.log(secret);
      }),
    );
  users
    .command('list')
    .description('list service users and their filters')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--json', 'one JSON array')
    .action((options: { dataDir?: string; json?: boolean }) =>
      withAuth(options, async ({ registry }) => {
        const list = await registry.listUsers();
        if (options.json) console.log(JSON.stringify(list));
        else
          for (const u of list)
            console.log(`${u.name}\tpublish=${u.publish.join(',')}\tsubscribe=${u.subscribe.join(',')}`);
      }),
    );
  users
    .command('remove')
    .description('remove a service user; its connections are closed')
    .argument('<name>')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .action((name: string, options: { dataDir?: string }) =>
      withAuth(options, async ({ registry }) => {
        if (!(await registry.removeUser(name))) {
          console.error(`telebridge: no user '${name}'`);
          process.exitCode = 1;
          return;
        }
        console.log(`user ${name} removed`);
      }),
    );

  program
    .command('registry')
    .description("the cluster's credentials (REDIS_URL)")
    .command('import')
    .description(
      "copy a data directory's devices, users, token revocations and token signing key into the cluster's Redis",
    )
    .option('--data-dir <dir>', 'the data directory to read (default: BRIDGE_DATA_DIR or ./data)')
    .option(
      '--replace',
      'overwrite devices and users that exist in Redis, and its signing key (tokens signed with it stop working)',
      false,
    )
    .action((options: { dataDir?: string; replace: boolean }) => importRegistry(options));
}

/** `registry import`: the data directory's credentials into the cluster's Redis; re-running it is harmless. */
async function importRegistry(options: { dataDir?: string; replace: boolean }): Promise<void> {
  const config = loadConfig(process.env);
  if (!config.redis) {
    throw new TelebridgeError(
      ERROR_CODES.usage,
      "registry import copies into the cluster's Redis: set REDIS_URL (and REDIS_SENTINELS if used)",
    );
  }
  const dataDir = options.dataDir ?? config.dataDir;
  const source = await FileRegistry.open(dataDir);
  const sourceTokens = await FileTokenStore.open(dataDir, { createKey: false });
  try {
    const records = await source.records();
    const revoked = await sourceTokens.revocations();
    const key = sourceTokens.signingKey();
    await withAuth({ dataDir }, async ({ registry, tokenStore }) => {
      const { added, kept } = await registry.import(records, { replace: options.replace });
      await tokenStore.revoke(revoked);
      const keyAdopted = key ? await tokenStore.adoptKey(key, options.replace) : undefined;
      console.log(
        `imported from ${dataDir}: ${added.length} devices and users added, ${kept.length} already in Redis kept` +
          `${kept.length > 0 && !options.replace ? ' (--replace overwrites them)' : ''}; ` +
          `${revoked.size} token revocations`,
      );
      if (kept.length > 0) console.log(`kept: ${kept.join(', ')}`);
      if (keyAdopted === undefined)
        console.log('no token signing key in the data directory: the cluster keeps its own');
      else if (keyAdopted) console.log("token signing key: the cluster's key is the data directory's");
      else {
        console.log(
          "token signing key: Redis already holds a different one, kept; tokens made from the data directory will not verify (--replace makes the data directory's key the cluster's)",
        );
        process.exitCode = 1;
      }
    });
  } finally {
    await source.close();
    await sourceTokens.close();
  }
}
