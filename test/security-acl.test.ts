/**
 * BRIDGE_ACL_FILE (issue 12 §3): anonymous clients (BRIDGE_AUTH=off) get the rights of a file in
 * Mosquitto's acl_file syntax, against the real bridge. A refused SUBSCRIBE gets SUBACK 0x80, a
 * refused PUBLISH closes the connection (MQTT 3.1.1 has no negative PUBACK), a will on a refused
 * topic gets CONNACK 5, and a deny rule inside a granted wildcard holds back deliveries.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { publishAcked, startTestBridge, subackCodes, type TestBridge } from './support/bridge.js';
import { tempDir } from './support/services.js';
import { waitEvent, waitFor } from './support/wait.js';

const ACL = `# rights of anonymous clients
topic read sensors/#
topic readwrite devices/#
topic deny devices/+/errors
topic write cmd/+
`;

describe('BRIDGE_ACL_FILE', () => {
  let t: TestBridge;
  const dir = tempDir('acl');
  before(async () => {
    writeFileSync(join(dir, 'acl'), ACL);
    t = await startTestBridge({ BRIDGE_AUTH: 'off', BRIDGE_ACL_FILE: join(dir, 'acl') });
  });
  after(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('SUBSCRIBE: granted where a read rule covers the filter and no deny rule does, else 0x80', async () => {
    const client = await t.connect('tcp', { clientId: 'acl-sub' });
    assert.deepEqual(
      await subackCodes(client, [
        'sensors/#',
        'sensors/+/temp',
        'devices/#',
        'devices/d1/errors',
        'devices/+/errors',
        'cmd/x',
        '#',
        'other/topic',
      ]),
      [0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80],
    );
  });

  test('PUBLISH: allowed by a write rule; elsewhere the connection is closed and nothing is delivered', async () => {
    const watcher = await t.connect('tcp', { clientId: 'acl-watch' });
    const got: string[] = [];
    watcher.on('message', (topic) => got.push(topic));
    await watcher.subscribeAsync(['sensors/#', 'devices/#'], { qos: 1 });
    const pub = await t.connect('tcp', { clientId: 'acl-pub' });
    await publishAcked(pub, 'cmd/go', Buffer.from('allowed'));
    const closed = waitEvent(pub, 'close');
    pub.publish('sensors/s1/temp', Buffer.from('read-only topic'), { qos: 1 });
    await closed;
    // A sentinel from another client after the refused one: the refused message never arrives.
    const other = await t.connect('tcp', { clientId: 'acl-pub2' });
    await publishAcked(other, 'devices/d1/free', Buffer.from('sentinel'));
    await waitFor('the sentinel', () => got.includes('devices/d1/free'));
    assert.deepEqual(got, ['devices/d1/free']);
  });

  test('a will on a topic the client may not publish to gets CONNACK 5', async () => {
    await assert.rejects(
      t.connect('tcp', {
        clientId: 'acl-will',
        will: { topic: 'sensors/s1/gone', payload: Buffer.from('x'), qos: 1, retain: false },
      }),
      (err: Error & { code?: number }) => err.code === 5,
    );
    (
      await t.connect('tcp', {
        clientId: 'acl-will-ok',
        will: { topic: 'cmd/gone', payload: Buffer.from('x'), qos: 1, retain: false },
      })
    ).end(true);
  });

  test("a deny rule inside a granted wildcard holds back the bridge's own messages there too", async () => {
    const client = await t.connect('tcp', { clientId: 'acl-deny-inside' });
    const got: string[] = [];
    client.on('message', (topic) => got.push(topic));
    await client.subscribeAsync('devices/#', { qos: 1 });
    const rejectedBefore = await t.metric('bridge_rejected_total');
    // Not a Telemetry: acknowledged, and the bridge publishes a Rejection on devices/zz/errors.
    await publishAcked(client, 'devices/zz/telemetry', Buffer.from([0xff, 0xff]));
    await publishAcked(client, 'devices/zz/free', Buffer.from('sentinel'));
    await waitFor('the sentinel', () => got.includes('devices/zz/free'));
    assert.equal(await t.metric('bridge_rejected_total'), rejectedBefore + 1, 'a Rejection was published');
    assert.deepEqual(got, ['devices/zz/free'], 'devices/zz/errors is denied to anonymous readers');
  });
});
