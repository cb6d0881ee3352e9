import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Command } from 'commander';
import { SignJWT } from 'jose';
import { tempDir } from '../../test/support/services.js';
import { registerTokenCommand } from '../cli/token.js';
import { openTokenService, parseTtl } from './tokens.js';

test('create → verify round trip with defaults; key file is 0600 and reused', async () => {
  const dir = tempDir('tokens');
  const tokens = await openTokenService(dir);
  const { token, claims } = await tokens.create();
  assert.deepEqual(claims.feeds, ['#']);
  assert.equal(claims.commands, false);
  const now = Date.now() / 1000;
  assert.ok(Math.abs(claims.exp - (now + 24 * 3600)) < 5);
  const verified = await tokens.verify(token);
  assert.deepEqual(verified, claims);
  assert.equal(statSync(join(dir, 'token-key')).mode & 0o777, 0o600);
  const again = await openTokenService(dir);
  assert.deepEqual(await again.verify(token), claims, 'a second service on the same dir accepts the token');
  const other = await openTokenService(tempDir('tokens-other'));
  await assert.rejects(other.verify(token), { code: 'E_TOKEN', message: 'invalid token' });
});

test('bad feeds and ttl are refused at creation', async () => {
  const tokens = await openTokenService(tempDir('tokens'));
  await assert.rejects(tokens.create({ feeds: ['foo/+'] }), { code: 'E_TOKEN' });
  await assert.rejects(tokens.create({ feeds: [] }), { code: 'E_TOKEN' });
  await assert.rejects(tokens.create({ ttlSeconds: 0 }), { code: 'E_TOKEN' });
});

test('expired, tampered and foreign tokens are refused', async () => {
  const dir = tempDir('tokens');
  const tokens = await openTokenService(dir);
  const { token } = await tokens.create({ ttlSeconds: 1 });
  const expired = await new SignJWT({ feeds: ['#'], commands: true })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer('telebridge')
    .setAudience('telebridge-live')
    .setJti('x')
    .setExpirationTime(Math.floor(Date.now() / 1000) - 10)
    .sign(Buffer.from('k'.repeat(32)));
  await assert.rejects(tokens.verify(expired), { code: 'E_TOKEN' });
  const [h, p, s] = token.split('.') as [string, string, string];
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
  payload.commands = true;
  const tampered = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
  await assert.rejects(tokens.verify(tampered), { message: 'invalid token' });
  await assert.rejects(tokens.verify(''), { code: 'E_TOKEN' });
  await assert.rejects(tokens.verify('not.a.jwt'), { code: 'E_TOKEN' });
});

test('revocation by token and by jti is seen by another service instance (mtime cache)', async () => {
  const dir = tempDir('tokens');
  const a = await openTokenService(dir);
  const b = await openTokenService(dir);
  const one = await a.create();
  const two = await a.create();
  await b.verify(one.token);
  assert.equal(await a.revoke(one.token), one.claims.jti);
  await assert.rejects(b.verify(one.token), { message: 'token revoked' });
  await b.verify(two.token);
  await b.revoke(two.claims.jti);
  await assert.rejects(a.verify(two.token), { message: 'token revoked' });
  assert.equal(statSync(join(dir, 'revoked-tokens.json')).mode & 0o777, 0o600);
});

test('parseTtl', () => {
  assert.equal(parseTtl('30m'), 1800);
  assert.equal(parseTtl('12h'), 43_200);
  assert.equal(parseTtl('7d'), 604_800);
  assert.equal(parseTtl('90'), 90);
  assert.equal(parseTtl('45s'), 45);
  for (const bad of ['', '1w', '-1h', '0', '400d', 'h'])
    assert.throws(() => parseTtl(bad), { code: 'E_USAGE' }, bad);
});

test('CLI: token create prints the token alone on the last line; revoke refuses it', async () => {
  const dir = tempDir('tokens-cli');
  const lines: string[] = [];
  const original = console.log;
  console.log = (...args: unknown[]) => lines.push(args.join(' '));
  const run = async (...argv: string[]) => {
    const program = new Command().exitOverride();
    registerTokenCommand(program);
    await program.parseAsync(argv, { from: 'user' });
  };
  try {
    await run(
      'token',
      'create',
      '--feeds',
      'telemetry/+,status/#',
      '--commands',
      '--ttl',
      '12h',
      '--data-dir',
      dir,
    );
  } finally {
    console.log = original;
  }
  const token = lines.at(-1)!;
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const tokens = await openTokenService(dir);
  const claims = await tokens.verify(token);
  assert.deepEqual(claims.feeds, ['telemetry/+', 'status/#']);
  assert.equal(claims.commands, true);
  assert.ok(Math.abs(claims.exp - (Date.now() / 1000 + 12 * 3600)) < 5);
  console.log = (...args: unknown[]) => lines.push(args.join(' '));
  try {
    await run('token', 'revoke', token, '--data-dir', dir);
  } finally {
    console.log = original;
  }
  await assert.rejects(tokens.verify(token), { message: 'token revoked' });
});
