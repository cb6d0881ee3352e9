/**
 * Room: cli. `telebridge token create|revoke`: browser tokens for the live channel (contract §1, §5),
 * signed with the data directory's key, or the cluster's in Redis when REDIS_URL is set (auth.ts).
 * `create` prints a summary, then the token alone on the last line (scripts take `tail -n1`).
 */
import type { Command } from 'commander';
import { parseTtl } from '../auth/tokens.js';
import { DATA_DIR_HELP, withAuth } from './auth.js';
import { splitList } from './data-dir.js';

export function registerTokenCommand(program: Command): void {
  const token = program.command('token').description('browser tokens for /live and /live/sse');

  token
    .command('create')
    .description('issue a signed token limited to feed filters; prints the token alone on the last line')
    .option('--feeds <filters>', "comma-separated feed filters, e.g. 'telemetry/+,status/#'", '#')
    .option('--commands', 'allow sending commands to devices', false)
    .option('--ttl <duration>', 'lifetime: 90s, 30m, 12h, 7d', '24h')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .action((options: { feeds: string; commands: boolean; ttl: string; dataDir?: string }) => {
      const feeds = splitList(options.feeds);
      const ttlSeconds = parseTtl(options.ttl);
      return withAuth(options, async ({ tokens }) => {
        const { token: jwt, claims } = await tokens.create({ feeds, commands: options.commands, ttlSeconds });
        console.log(
          `token ${claims.jti}: feeds ${claims.feeds.join(',')}; commands ${claims.commands ? 'yes' : 'no'}; ` +
            `expires ${new Date(claims.exp * 1000).toISOString()}`,
        );
        console.log(jwt);
      });
    });

  token
    .command('revoke')
    .description('revoke a token (by the token or its jti); running bridges refuse it from then on')
    .argument('<tokenOrJti>', 'the token, or the jti printed by create')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .action((tokenOrJti: string, options: { dataDir?: string }) =>
      withAuth(options, async ({ tokens }) => {
        const jti = await tokens.revoke(tokenOrJti);
        console.log(`revoked ${jti}`);
      }),
    );
}
