/**
 * Devices (issue 5, points 4 and 7) against the real bridge: a device flooding QoS 0 gets
 * `rate_limited` rejections, then is disconnected and refused for a while (QoS 1/2 over the rate is
 * slowed instead: test/ingest-rate.test.ts); a device cannot read or write another
 * device's topics; with BRIDGE_TLS_CA a client certificate signed by that CA whose CN is a device id
 * logs the device in without a password, and any other certificate does not.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import {
  DeviceStatus,
  decodeRejection,
  encodeTelemetry,
  makeCertificate,
  publishAcked,
  startTestBridge,
  subackCodes,
  type TestBridge,
} from './support/bridge.js';
import { tempDir } from './support/services.js';
import { waitEvent, waitFor } from './support/wait.js';

const sample = [{ values: { t: 1 } }];

describe('flooding', () => {
  let t: TestBridge;
  before(async () => {
    t = await startTestBridge({ BRIDGE_DEVICE_RATE: '10', BRIDGE_DEVICE_BURST: '20' });
  });
  after(() => t.close());

  test('QoS 0 over the rate: rate_limited rejections; flooding on: disconnected and refused (CONNACK 3)', async () => {
    const secret = await t.addDevice('flood-1');
    // The device's errors topic, watched by a service user (the device itself is cut off quickly).
    const ops = await t.connect('tcp', {
      clientId: 'ops',
      username: 'ops',
      password: await t.addUser('ops', { publish: [], subscribe: ['devices/+/errors'] }),
    });
    const reasons: string[] = [];
    ops.on('message', (_topic, payload) => reasons.push(decodeRejection(payload).reason));
    await new Promise((r) => ops.subscribe('devices/flood-1/errors', { qos: 1 }, r));
    const device = await t.connect('tcp', { clientId: 'flood-1', username: 'flood-1', password: secret });
    const closed = waitEvent(device, 'close', 10_000);
    // 300 QoS 0 messages as fast as the client can: 20 of burst pass, then rejections; 100 dropped in
    // a row are a flood: the cut.
    for (let seq = 1; seq <= 300; seq++) {
      device.publish(
        'devices/flood-1/telemetry',
        encodeTelemetry('flood-1', seq, sample),
        { qos: 0 },
        () => {},
      );
    }
    await closed;
    await waitFor('rejections on devices/flood-1/errors', () => reasons.length >= 100);
    const limited = await t.metric('bridge_rejected_total', { reason: 'rate_limited' });
    console.log(
      `rate_limited: ${limited} counted, ${reasons.length} rejections published to its errors topic`,
    );
    assert.ok(limited >= 100, `${limited} rate_limited`);
    assert.ok(reasons.length > 0 && reasons.every((r) => r === 'rate_limited'));
    // Refused for a while (30 s ban) even with the right secret.
    await assert.rejects(
      t.connect('tcp', { clientId: 'flood-1', username: 'flood-1', password: secret }),
      (err: Error & { code?: number }) => err.code === 3,
    );
    // Another device is not affected.
    const other = await t.connect('tcp', {
      clientId: 'calm-1',
      username: 'calm-1',
      password: await t.addDevice('calm-1'),
    });
    await publishAcked(other, 'devices/calm-1/telemetry', encodeTelemetry('calm-1', 1, sample));
  });
});

describe('isolation', () => {
  let t: TestBridge;
  let a: MqttClient;
  let b: MqttClient;
  before(async () => {
    t = await startTestBridge();
    a = await t.connect('tcp', {
      clientId: 'iso-a',
      username: 'iso-a',
      password: await t.addDevice('iso-a'),
    });
    b = await t.connect('tcp', {
      clientId: 'iso-b',
      username: 'iso-b',
      password: await t.addDevice('iso-b'),
    });
  });
  after(() => t.close());

  test("a device cannot subscribe to another device's topics, nor to wildcards over them", async () => {
    const filters = [
      'devices/iso-b/telemetry',
      'devices/iso-b/commands',
      'devices/iso-b/errors',
      'devices/iso-b/status',
      'devices/+/telemetry',
      'devices/+/commands',
      'devices/#',
      '#',
      '$SYS/#',
    ];
    assert.deepEqual(
      await subackCodes(a, filters),
      filters.map(() => 0x80),
    );
    // Its own are fine.
    assert.deepEqual(await subackCodes(a, ['devices/iso-a/commands', 'devices/iso-a/errors']), [0, 0]);
  });

  test("a device that publishes to another device's topic is disconnected; nothing reaches the other", async () => {
    const got: string[] = [];
    b.on('message', (topic) => got.push(topic));
    assert.deepEqual(await subackCodes(b, ['devices/iso-b/commands']), [0]);
    const closed = waitEvent(a, 'close');
    a.publish('devices/iso-b/commands', Buffer.from('x'), { qos: 1 });
    await closed;
    // A command the bridge itself sends does arrive: the subscription works, the forgery did not.
    t.bridge.broker.publish('devices/iso-b/commands', Buffer.from('real'), 1);
    await waitFor('the real command', () => got.length > 0);
    assert.deepEqual(got, ['devices/iso-b/commands']);
  });

  test("a will on another device's topic is refused at CONNECT (5); only the device's own will is published", async () => {
    // Checked at CONNECT because a will can outlive its connection's rights check: in cluster mode
    // another instance publishes the stored will of a client whose instance died, with no client.
    const watch = await t.connect('tcp', {
      clientId: 'will-watch',
      username: 'will-watch',
      password: await t.addUser('will-watch', { publish: [], subscribe: ['devices/+/status'] }),
    });
    const seen: { topic: string; firmware: string }[] = [];
    watch.on('message', (topic, payload) => {
      const { firmware } = DeviceStatus.decode(payload) as unknown as { firmware: string };
      seen.push({ topic, firmware });
    });
    assert.deepEqual(await subackCodes(watch, ['devices/will-b/status']), [0]);
    // A valid OFFLINE status, so that only the rights check could stop it; the firmware tells whose.
    const offline = (firmware: string) => Buffer.from(DeviceStatus.encode({ state: 2, firmware }).finish());
    const passwordA = await t.addDevice('will-a');
    const passwordB = await t.addDevice('will-b');
    await assert.rejects(
      t.connect('tcp', {
        clientId: 'will-a',
        username: 'will-a',
        password: passwordA,
        will: { topic: 'devices/will-b/status', payload: offline('forged'), qos: 1, retain: false },
      }),
      (err: Error & { code?: number }) => err.code === 5,
    );
    // The same device with its own will connects. The victim, dropped uncleanly, has its own will
    // published: what the watcher sees on that topic is that will and nothing before it.
    const own = await t.connect('tcp', {
      clientId: 'will-a',
      username: 'will-a',
      password: passwordA,
      will: { topic: 'devices/will-a/status', payload: offline('own-a'), qos: 1, retain: false },
    });
    own.end();
    const victim = await t.connect('tcp', {
      clientId: 'will-b',
      username: 'will-b',
      password: passwordB,
      will: { topic: 'devices/will-b/status', payload: offline('own-b'), qos: 1, retain: false },
    });
    victim.stream.destroy();
    await waitFor("will-b's own will", () => seen.length > 0);
    assert.deepEqual(seen, [{ topic: 'devices/will-b/status', firmware: 'own-b' }]);
    watch.end();
  });
});

describe('mutual TLS', () => {
  let t: TestBridge;
  let dir: string;
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });

  /** A key and a certificate for `cn`, signed by the CA in `dir` (or self-signed when `ca` is false). */
  function clientCert(cn: string, ca: boolean): { key: Buffer; cert: Buffer } {
    const key = join(dir, `${cn}-${ca}.key`);
    const cert = join(dir, `${cn}-${ca}.pem`);
    if (ca) {
      const csr = join(dir, `${cn}.csr`);
      openssl(
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        `/CN=${cn}`,
        '-keyout',
        key,
        '-out',
        csr,
      );
      openssl(
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        join(dir, 'ca.pem'),
        '-CAkey',
        join(dir, 'ca.key'),
        '-CAcreateserial',
        '-days',
        '2',
        '-out',
        cert,
      );
      return { key: readFileSync(key), cert: readFileSync(cert) };
    }
    const own = makeCertificate(dir, { cn, name: `${cn}-self` });
    return { key: readFileSync(own.key), cert: readFileSync(own.cert) };
  }

  before(async () => {
    dir = tempDir('mtls');
    makeCertificate(dir, { cn: 'telebridge test CA', name: 'ca' });
    t = await startTestBridge({ BRIDGE_TLS_CA: join(dir, 'ca.pem') }, { tls: true });
    await t.addDevice('mtls-1');
  });
  after(() => t.close());

  test('a certificate signed by BRIDGE_TLS_CA with the device id as CN logs in without a password', async () => {
    const { key, cert } = clientCert('mtls-1', true);
    const c = await t.connect('tls', { clientId: 'mtls-1', key, cert });
    await publishAcked(c, 'devices/mtls-1/telemetry', encodeTelemetry('mtls-1', 1, sample));
    c.end(true);
  });

  test('a self-signed certificate naming the device does not; nor a signed one naming an unknown device', async () => {
    const selfSigned = clientCert('mtls-1', false);
    await assert.rejects(
      t.connect('tls', { clientId: 'mtls-1', ...selfSigned }),
      (err: Error & { code?: number }) => [4, 5].includes(err.code ?? 0),
    );
    const unknown = clientCert('nobody-1', true);
    await assert.rejects(
      t.connect('tls', { clientId: 'nobody-1', ...unknown }),
      (err: Error & { code?: number }) => [4, 5].includes(err.code ?? 0),
    );
    // A signed certificate for one device cannot log in as another.
    const { key, cert } = clientCert('mtls-1', true);
    await assert.rejects(t.connect('tls', { clientId: 'mtls-2', username: 'mtls-2', key, cert }));
  });
});
