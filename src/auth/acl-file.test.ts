import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../../test/support/services.js';
import { loadConfig } from '../config.js';
import { ConfigError } from '../errors.js';
import { Acl, parseAclFile } from './acl-file.js';

const acl = (text: string) => new Acl(parseAclFile(text, 'acl'));

const parseError = (text: string): string => {
  try {
    parseAclFile(text, '/etc/telebridge/acl');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  assert.fail('expected a ConfigError');
};

test('the parser reads Mosquitto topic lines: access optional (readwrite), comments, blank lines, spaces in filters', () => {
  const rules = parseAclFile(
    [
      '# anonymous clients',
      '',
      'topic sensors/#',
      '  topic read  status/+  ',
      'topic write cmd/out',
      'topic deny sensors/secret',
      'topic readwrite my topic/with spaces',
      '\t# indented comment',
      'topic $TopicA/#\r',
    ].join('\n'),
    'acl',
  );
  assert.deepEqual(rules, [
    { access: 'readwrite', filter: 'sensors/#', line: 3 },
    { access: 'read', filter: 'status/+', line: 4 },
    { access: 'write', filter: 'cmd/out', line: 5 },
    { access: 'deny', filter: 'sensors/secret', line: 6 },
    { access: 'readwrite', filter: 'my topic/with spaces', line: 7 },
    { access: 'readwrite', filter: '$TopicA/#', line: 9 },
  ]);
});

test('a bad line is a ConfigError naming the file and the line', () => {
  assert.equal(
    parseError('topic #\ntopic readonly a/b'),
    'invalid configuration: BRIDGE_ACL_FILE="/etc/telebridge/acl": line 2: unknown access "readonly": expected read, write, readwrite or deny',
  );
  assert.match(parseError('topic a/#/b'), /: line 1: "a\/#\/b" is not a valid MQTT topic filter$/);
  assert.match(parseError('topic read a/b+'), /: line 1: "a\/b\+" is not a valid MQTT topic filter$/);
  assert.match(parseError('\n\ntopic'), /: line 3: a topic line needs a filter$/);
  assert.match(
    parseError('subscribe a/b'),
    /: line 1: expected "topic \[read\|write\|readwrite\|deny\] <filter>"/,
  );
  // Named clients do not exist with BRIDGE_AUTH=off: refused rather than silently ignored.
  assert.match(parseError('topic a\nuser bob\ntopic b'), /: line 2: 'user' lines are not supported/);
  assert.match(parseError('pattern write devices/%c/#'), /: line 1: 'pattern' lines are not supported/);
});

test('publish: a write or readwrite rule must match, and a deny rule wins', () => {
  const a = acl('topic write out/#\ntopic readwrite both/+\ntopic read in/#\ntopic deny out/secret');
  assert.ok(a.canPublish('out/x/y'));
  assert.ok(a.canPublish('both/x'));
  assert.ok(!a.canPublish('in/x'), 'read only');
  assert.ok(!a.canPublish('out/secret'), 'deny wins over write out/#');
  assert.ok(!a.canPublish('elsewhere'), 'not granted is refused');
  assert.ok(!acl('').canPublish('a'), 'an empty file grants nothing');
});

test('subscribe: a read rule must cover the whole filter, and a deny rule covering it refuses it', () => {
  const a = acl(
    'topic read sensors/#\ntopic readwrite test/#\ntopic write out/#\ntopic deny test/nosubscribe',
  );
  assert.ok(a.canSubscribe('sensors/#'));
  assert.ok(a.canSubscribe('sensors/+/temp'));
  assert.ok(!a.canSubscribe('#'), 'wider than any read rule');
  assert.ok(!a.canSubscribe('out/x'), 'write only');
  assert.ok(!a.canSubscribe('test/nosubscribe'), 'denied');
  // A filter only partly denied is granted; the denied topics are held back at delivery.
  assert.ok(a.canSubscribe('test/#'));
  assert.ok(a.canRead('test/other'));
  assert.ok(!a.canRead('test/nosubscribe'));
  assert.ok(!a.canRead('out/x'));
});

test('[MQTT-4.7.2-1] a rule starting with a wildcard does not reach $ topics', () => {
  const a = acl('topic #');
  assert.ok(a.canPublish('a/b'));
  assert.ok(!a.canPublish('$TopicA/B'));
  assert.ok(!a.canSubscribe('$SYS/#'));
  assert.ok(!a.canRead('$TopicA/B'));
  const b = acl('topic #\ntopic $TopicA/#');
  assert.ok(b.canPublish('$TopicA/B'));
  assert.ok(b.canSubscribe('$TopicA/#'));
  assert.ok(!acl('topic deny #\ntopic $TopicA/#').canPublish('a'));
  assert.ok(acl('topic deny #\ntopic $TopicA/#').canPublish('$TopicA/x'), 'deny # does not reach $ either');
});

test('BRIDGE_ACL_FILE is read at start-up, needs BRIDGE_AUTH=off, and a bad file stops start-up', (t) => {
  const dir = tempDir('acl');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'acl');
  writeFileSync(good, 'topic readwrite #\ntopic deny test/nosubscribe\n');
  const config = loadConfig({ BRIDGE_AUTH: 'off', BRIDGE_ACL_FILE: good });
  assert.equal(config.acl?.file, good);
  assert.equal(config.acl?.rules.length, 2);
  assert.throws(
    () => loadConfig({ BRIDGE_ACL_FILE: good }),
    new ConfigError(
      `invalid configuration: BRIDGE_ACL_FILE=${JSON.stringify(good)}: applies to anonymous clients, so it needs BRIDGE_AUTH=off`,
    ),
  );
  const bad = join(dir, 'bad');
  writeFileSync(bad, '# ok\ntopic rw #\n');
  assert.throws(
    () => loadConfig({ BRIDGE_AUTH: 'off', BRIDGE_ACL_FILE: bad }),
    /^ConfigError: invalid configuration: BRIDGE_ACL_FILE=".*\/bad": line 2: unknown access "rw"/,
  );
  assert.throws(
    () => loadConfig({ BRIDGE_AUTH: 'off', BRIDGE_ACL_FILE: join(dir, 'missing') }),
    /BRIDGE_ACL_FILE=".*\/missing": ENOENT/,
  );
});
