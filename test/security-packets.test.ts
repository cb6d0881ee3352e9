/**
 * Packet size (issue 5, points 1 and 7): a logged-in device that announces a 200 MB PUBLISH is cut
 * off at the fixed header, over TCP and over WebSocket with the header and body split across tiny
 * frames, and the bridge's memory grows by less than 20 MB while the attacker keeps sending.
 *
 * The bridge runs in its own process (`src/main.ts`), so its memory is measured alone: the kernel's
 * peak resident set (VmHWM) is reset before each attack and read after it.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { FileRegistry } from '../src/auth/registry-file.js';
import { bridgeCommand } from './support/bridge-process.js';
import { freePort, httpOk, type RunningProcess, startProcess, tempDir } from './support/services.js';
import { waitEvent, waitFor } from './support/wait.js';

const ANNOUNCED = 200 * 1024 * 1024;
const MB = 1024 * 1024;
const MAX_PACKET_BYTES = 65_536;
let bridge: RunningProcess;
let ports: { mqtt: number; http: number };
let secret: string;

before(async () => {
  const dataDir = tempDir('security-packets');
  const registry = await FileRegistry.open(dataDir);
  secret = await registry.addDevice('big-1');
  ports = { mqtt: await freePort(), http: await freePort() };
  bridge = await startProcess({
    name: 'bridge',
    ...bridgeCommand(),
    dir: dataDir,
    env: {
      BRIDGE_MQTT_PORT: String(ports.mqtt),
      BRIDGE_HTTP_PORT: String(ports.http),
      BRIDGE_DATA_DIR: dataDir,
      BRIDGE_MAX_PACKET_BYTES: String(MAX_PACKET_BYTES),
      LOG_LEVEL: 'warn',
    },
    ready: () => httpOk(`http://127.0.0.1:${ports.http}/healthz`),
  });
});
after(() => bridge?.stop());

const connectBytes = () =>
  mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    clientId: 'big-1',
    username: 'big-1',
    password: Buffer.from(secret),
  });

/** Fixed header + topic of a PUBLISH whose remaining length announces `ANNOUNCED` bytes. */
function bigPublishHead(): Buffer {
  const bytes = [0x30];
  let n = ANNOUNCED;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    bytes.push(b);
  } while (n > 0);
  const topic = Buffer.from('devices/big-1/telemetry');
  return Buffer.concat([Buffer.from(bytes), Buffer.from([0, topic.length]), topic]);
}

/** The bridge process's resident set now and its peak since the last `resetPeak`, bytes. */
function memory(): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${bridge.child.pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** `bridge_connections{listener}` from the bridge's /metrics. */
async function connections(listener: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${ports.http}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`bridge_connections{listener="${listener}"}`));
  return Number(line?.split(' ')[1] ?? 0);
}

/** Resets the kernel's peak-RSS mark of the bridge process (proc(5): clear_refs, value 5). */
function resetPeak(): void {
  writeFileSync(`/proc/${bridge.child.pid}/clear_refs`, '5');
}

test('TCP: a 200 MB PUBLISH is cut at its header; memory grows < 20 MB', async () => {
  const socket: Socket = netConnect(ports.mqtt, '127.0.0.1');
  await waitEvent(socket, 'connect');
  socket.on('error', () => {});
  const received: Buffer[] = [];
  socket.on('data', (d) => received.push(d));
  socket.write(connectBytes());
  await waitFor('CONNACK 0', () => Buffer.concat(received).equals(Buffer.from([0x20, 2, 0, 0])));
  let closed = false;
  socket.once('close', () => {
    closed = true;
  });

  const before = memory().rss;
  resetPeak();
  socket.write(bigPublishHead());
  // Keep sending the announced body in 64 KiB chunks until the bridge hangs up (bounded by the announcement).
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  let sent = 0;
  while (!closed && sent < ANNOUNCED) {
    if (!socket.write(chunk))
      await Promise.race([waitEvent(socket, 'drain', 10_000), waitEvent(socket, 'close', 10_000)]);
    sent += chunk.length;
  }
  await waitFor('the bridge to close the connection', () => closed);
  const growth = memory().peak - before;
  console.log(
    `tcp: sent ${(sent / MB).toFixed(1)} MB of the body before the close; peak rss growth ${(growth / MB).toFixed(1)} MB`,
  );
  assert.ok(sent < 20 * MB, `the bridge read ${sent} bytes before closing`);
  assert.ok(growth < 20 * MB, `rss grew by ${growth} bytes`);
  await waitFor('no tcp connection left', async () => (await connections('tcp')) === 0);
});

test('WebSocket: the same packet split across 1-byte and 1 KiB frames is cut; memory grows < 20 MB', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${ports.http}/mqtt`, 'mqtt');
  await waitEvent(ws, 'open');
  ws.on('error', () => {});
  const received: Buffer[] = [];
  ws.on('message', (d: Buffer) => received.push(d));
  // CLOSING counts: the bridge's close frame has arrived, later sends go nowhere.
  let closed = false;
  ws.once('close', () => {
    closed = true;
  });
  const cut = () => closed || ws.readyState !== WebSocket.OPEN;
  const send = (b: Buffer) => new Promise<void>((resolve) => ws.send(b, { binary: true }, () => resolve()));
  // Even CONNECT goes one byte a frame: the guard and Aedes see the stream, not the frames.
  for (const byte of connectBytes()) await send(Buffer.from([byte]));
  await waitFor('CONNACK 0', () => Buffer.concat(received).equals(Buffer.from([0x20, 2, 0, 0])));

  const before = memory().rss;
  resetPeak();
  for (const byte of bigPublishHead()) {
    if (cut()) break;
    await send(Buffer.from([byte]));
  }
  const frame = Buffer.alloc(1024, 0x41);
  let sent = 0;
  // Bounded: at most 20 MB of 1 KiB frames, awaiting each batch of 64 so the socket cannot run ahead.
  while (!cut() && sent < 20 * MB) {
    const batch: Promise<void>[] = [];
    for (let i = 0; i < 64; i++) batch.push(send(frame));
    await Promise.all(batch);
    sent += 64 * frame.length;
  }
  await waitFor('the bridge to close the WebSocket', () => closed);
  const growth = memory().peak - before;
  console.log(
    `ws: sent ${(sent / MB).toFixed(2)} MB of body frames before the close; peak rss growth ${(growth / MB).toFixed(1)} MB`,
  );
  assert.ok(sent < 20 * MB, `the bridge read ${sent} bytes of body before closing`);
  assert.ok(growth < 20 * MB, `rss grew by ${growth} bytes`);
  await waitFor('no ws connection left', async () => (await connections('ws')) === 0);
});

test('WebSocket: one frame over BRIDGE_MAX_PACKET_BYTES is refused by ws maxPayload (1009)', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${ports.http}/mqtt`, 'mqtt');
  await waitEvent(ws, 'open');
  ws.on('error', () => {});
  const closing = waitEvent(ws, 'close');
  ws.send(Buffer.alloc(MAX_PACKET_BYTES + 1));
  const [code] = await closing;
  assert.equal(code, 1009);
});
