/**
 * deploy/nginx.conf in front of a real bridge, through a real nginx with TLS: MQTT over WebSocket,
 * the /live WebSocket and /live/sse work through it, and connections idle for longer than nginx's
 * read timeout (2 s here) stay open thanks to heartbeats (MQTT keepalive 1 s, live pings 1 s) —
 * while an MQTT connection without keepalive is cut by that same timeout, which shows it is real.
 */
import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import WebSocket from 'ws';
import { type BridgeHandle, startBridge } from '../src/app.js';
import { FileRegistry } from '../src/auth/registry-file.js';
import { openTokenService } from '../src/auth/tokens.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { loadSchemas } from '../src/schemas/registry.js';
import { repoRoot } from './support/deploy.js';
import { deriveNginxConf, type RunningNginx, selfSignedCert, startNginx } from './support/nginx.js';
import { freePort, requireBinary, tempDir } from './support/services.js';
import { waitEvent, waitFor } from './support/wait.js';

const READ_TIMEOUT_S = 2;
/** Idle time of the heartbeat checks: well past nginx's read timeout. */
const IDLE_MS = READ_TIMEOUT_S * 1000 * 2.5;
const DEVICE = 'proxy-dev-1';

let bridge: BridgeHandle | undefined;
let nginx: RunningNginx | undefined;
let skip: string | undefined;
let secret = '';
let token = '';
let httpsPort = 0;
let httpPort = 0;
const dir = tempDir('nginx-test');
const clients: MqttClient[] = [];
const sockets: WebSocket[] = [];

function telemetry(seq: number, value: number): Buffer {
  const type = loadSchemas(bridge!.config.schemas).type('telemetry.v1.Telemetry');
  return Buffer.from(
    type
      .encode({
        device_id: DEVICE,
        seq,
        samples: [{ time_unix_ms: Date.now(), values: { temperature_c: value } }],
      })
      .finish(),
  );
}

async function connectDevice(keepalive: number): Promise<MqttClient> {
  const client = mqtt.connect(`wss://127.0.0.1:${httpsPort}/mqtt`, {
    clientId: DEVICE,
    username: DEVICE,
    password: secret,
    keepalive,
    reconnectPeriod: 0,
    protocolVersion: 4,
    rejectUnauthorized: false,
    connectTimeout: 5000,
  });
  clients.push(client);
  await waitEvent(client as unknown as EventEmitter, 'connect', 10_000);
  return client;
}

function publish(client: MqttClient, seq: number, value: number): Promise<void> {
  return new Promise((resolve, reject) =>
    client.publish(`devices/${DEVICE}/telemetry`, telemetry(seq, value), { qos: 1 }, (err) =>
      err ? reject(err) : resolve(),
    ),
  );
}

/**
 * Lets a connection sit idle for `ms`. Not a synchronisation sleep: idleness past nginx's timeout is
 * the condition under test, and there is no event to wait for when nothing happens.
 */
function idle(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('deploy/nginx.conf in front of the bridge', () => {
  before(async () => {
    const nginxBin = requireBinary('nginx', 'nginx');
    const openssl = requireBinary('openssl', 'openssl');
    if (!nginxBin.path || !openssl.path) {
      skip = nginxBin.skip ?? openssl.skip;
      return;
    }
    const dataDir = join(dir, 'data');
    const registry = await FileRegistry.open(dataDir);
    secret = await registry.addDevice(DEVICE);
    token = (await (await openTokenService(dataDir)).create({ feeds: ['#'] })).token;
    bridge = await startBridge(
      loadConfig({
        BRIDGE_MQTT_PORT: '0',
        BRIDGE_MQTTS_PORT: '0',
        BRIDGE_HTTP_PORT: '0',
        BRIDGE_DATA_DIR: dataDir,
        BRIDGE_LIVE_PING_MS: '1000',
        LOG_LEVEL: 'warn',
      }),
      { log: createLogger('warn') },
    );
    const cert = selfSignedCert(dir, openssl.path);
    httpsPort = await freePort();
    httpPort = await freePort();
    const conf = deriveNginxConf(readFileSync(join(repoRoot(), 'deploy/nginx.conf'), 'utf8'), {
      httpPort,
      httpsPort,
      upstream: `127.0.0.1:${bridge.ports.http}`,
      ...cert,
      longTimeout: `${READ_TIMEOUT_S}s`,
    });
    const started = await startNginx(conf, httpsPort);
    if ('skip' in started) {
      skip = started.skip;
      return;
    }
    nginx = started;
  });

  after(async () => {
    for (const s of sockets) s.terminate();
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    await nginx?.stop();
    await bridge?.close();
  });

  test('plain HTTP redirects to HTTPS; /healthz answers through TLS', async (t) => {
    if (skip) return t.skip(skip);
    const redirect = await fetch(`http://127.0.0.1:${httpPort}/healthz`, { redirect: 'manual' });
    assert.equal(redirect.status, 301);
    assert.match(redirect.headers.get('location') ?? '', /^https:\/\//);
    const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      httpsGet({ host: '127.0.0.1', port: httpsPort, path: '/healthz', rejectUnauthorized: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      }).on('error', reject);
    });
    assert.equal(body.status, 200);
  });

  test('MQTT over WebSocket: publishes pass, and an idle connection outlives the read timeout by keepalive', async (t) => {
    if (skip) return t.skip(skip);
    const client = await connectDevice(1);
    await publish(client, 1, 20.5);
    let closed = false;
    client.once('close', () => {
      closed = true;
    });
    await idle(IDLE_MS);
    assert.equal(
      closed,
      false,
      `closed while idle (nginx proxy_read_timeout ${READ_TIMEOUT_S}s, keepalive 1 s)`,
    );
    await publish(client, 2, 20.6); // PUBACK through nginx: still the same live connection
    assert.equal(client.connected, true);
    const rejected = (await bridge!.metrics.rejected.get()).values.reduce((n, v) => n + v.value, 0);
    assert.equal(rejected, 0, 'the bridge refused the test payloads');
    await client.endAsync();
  });

  test('without heartbeats nginx cuts the idle connection (the timeout under test is real)', async (t) => {
    if (skip) return t.skip(skip);
    // Keepalive 60 s: no PINGREQ within nginx's 2 s read timeout.
    const client = await connectDevice(60);
    const started = Date.now();
    await waitEvent(client as unknown as EventEmitter, 'close', READ_TIMEOUT_S * 1000 * 4);
    const after = Date.now() - started;
    assert.ok(after >= READ_TIMEOUT_S * 1000 * 0.9, `closed after ${after} ms, before the read timeout`);
  });

  test('/live WebSocket: subscribe, receive telemetry, and stay open past the read timeout thanks to pings', async (t) => {
    if (skip) return t.skip(skip);
    const device = await connectDevice(1);
    const ws = new WebSocket(
      `wss://127.0.0.1:${httpsPort}/live?token=${encodeURIComponent(token)}`,
      'telemetry.v1.json',
      {
        rejectUnauthorized: false,
      },
    );
    sockets.push(ws);
    const messages: Array<{ type: string; device?: string; values?: Record<string, number> }> = [];
    ws.on('message', (data) => messages.push(JSON.parse(String(data))));
    let pings = 0;
    ws.on('ping', () => pings++);
    let closed = false;
    ws.on('close', () => {
      closed = true;
    });
    await waitEvent(ws, 'open');
    assert.equal(ws.protocol, 'telemetry.v1.json');
    ws.send(JSON.stringify({ type: 'subscribe', id: 'r1', feeds: [`telemetry/${DEVICE}`] }));
    await waitFor('subscribed', () => messages.some((m) => m.type === 'subscribed'));
    await publish(device, 10, 30.25);
    await waitFor('telemetry through nginx', () =>
      messages.some((m) => m.type === 'telemetry' && m.values?.['temperature_c'] === 30.25),
    );
    await idle(IDLE_MS);
    assert.equal(closed, false, 'the live WebSocket was closed while idle');
    assert.ok(pings >= 2, `only ${pings} pings in ${IDLE_MS} ms`);
    await publish(device, 11, 31.5);
    await waitFor('telemetry after the idle period', () =>
      messages.some((m) => m.type === 'telemetry' && m.values?.['temperature_c'] === 31.5),
    );
    ws.close();
    await device.endAsync();
  });

  test('/live/sse: events arrive unbuffered and the stream outlives the read timeout', async (t) => {
    if (skip) return t.skip(skip);
    const device = await connectDevice(1);
    const path = `/live/sse?feeds=${encodeURIComponent(`telemetry/${DEVICE}`)}&token=${encodeURIComponent(token)}`;
    let text = '';
    let ended = false;
    const req = httpsGet({ host: '127.0.0.1', port: httpsPort, path, rejectUnauthorized: false });
    const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', reject);
    });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /text\/event-stream/);
    res.on('data', (c: Buffer) => {
      text += c.toString();
    });
    res.on('end', () => {
      ended = true;
    });
    res.on('error', () => {
      ended = true;
    });
    // One small event must get through while the stream stays open: a buffering proxy holds it back.
    await publish(device, 20, 40.75);
    await waitFor('an SSE event through nginx', () => text.includes('40.75'), { timeoutMs: 5000 });
    await idle(IDLE_MS);
    assert.equal(ended, false, 'the SSE stream ended while idle');
    await publish(device, 21, 41.25);
    await waitFor('an SSE event after the idle period', () => text.includes('41.25'), { timeoutMs: 5000 });
    req.destroy();
    await device.endAsync();
  });
});
