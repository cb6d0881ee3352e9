/**
 * Room: cli. `telebridge devices add|list|remove` and `telebridge users add|list|remove`: credentials in the
 * data directory. `add` prints the secret once, alone on the last line (scripts take `tail -n1`).
 */
import type { Command } from 'commander';
import { Registry } from '../auth/registry.js';
import { dataDirOf, splitList } from './data-dir.js';

const DATA_DIR_HELP = 'data directory (default: BRIDGE_DATA_DIR or ./data)';

export function registerRegistryCommands(program: Command): void {
  const devices = program
    .command('devices')
    .description('devices allowed to connect (username = client id = device id)');
  devices
    .command('add')
    .description('create a device; prints its secret once, alone on the last line')
    .argument('<deviceId>', 'letters, digits, _ . - (at most 64; starts with a letter or digit)')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .action(async (id: string, options: { dataDir?: string }) => {
      const registry = await Registry.open(dataDirOf(options));
      const secret = await registry.addDevice(id);
      console.log(`device ${id} created; it may publish devices/${id}/telemetry and devices/${id}/status`);
      console.log('its secret (the MQTT password), shown only this once:');
      console.log(secret);
    });
  devices
    .command('list')
    .description('list devices')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--json', 'one JSON array')
    .action(async (options: { dataDir?: string; json?: boolean }) => {
      const list = (await Registry.open(dataDirOf(options))).listDevices();
      if (options.json) console.log(JSON.stringify(list));
      else for (const d of list) console.log(`${d.id}\t${d.createdAt}`);
    });
  devices
    .command('remove')
    .description('remove a device; it can no longer connect (an open connection stays until it drops)')
    .argument('<deviceId>')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .action(async (id: string, options: { dataDir?: string }) => {
      if (!(await (await Registry.open(dataDirOf(options))).removeDevice(id))) {
        console.error(`telebridge: no device '${id}'`);
        process.exitCode = 1;
        return;
      }
      console.log(`device ${id} removed`);
    });

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
    .action(async (name: string, options: { publish: string; subscribe: string; dataDir?: string }) => {
      const rights = { publish: splitList(options.publish), subscribe: splitList(options.subscribe) };
      const secret = await (await Registry.open(dataDirOf(options))).addUser(name, rights);
      console.log(
        `user ${name} created; publish: ${rights.publish.join(',') || '(none)'}; subscribe: ${rights.subscribe.join(',') || '(none)'}`,
      );
      console.log('its secret (the MQTT password), shown only this once:');
      console.log(secret);
    });
  users
    .command('list')
    .description('list service users and their filters')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--json', 'one JSON array')
    .action(async (options: { dataDir?: string; json?: boolean }) => {
      const list = (await Registry.open(dataDirOf(options))).listUsers();
      if (options.json) console.log(JSON.stringify(list));
      else
        for (const u of list)
          console.log(`${u.name}\tpublish=${u.publish.join(',')}\tsubscribe=${u.subscribe.join(',')}`);
    });
  users
    .command('remove')
    .description('remove a service user')
    .argument('<name>')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .action(async (name: string, options: { dataDir?: string }) => {
      if (!(await (await Registry.open(dataDirOf(options))).removeUser(name))) {
        console.error(`telebridge: no user '${name}'`);
        process.exitCode = 1;
        return;
      }
      console.log(`user ${name} removed`);
    });
}
