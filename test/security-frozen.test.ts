/**
 * A frozen subscriber (issue 5, points 2 and 7): a raw TCP client that subscribes to a busy topic and
 * then stops reading, so its kernel buffers fill, must not delay the devices' PUBACKs or another
 * subscriber's deliveries, and is disconnected by the drain timeout (BRIDGE_DRAIN_TIMEOUT_MS).
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import {
  encodeTelemetry,
  publishAcked,
  startTestBridge,
  Telemetry,
  type TestBridge,
} from './support/bridge.js';
import { waitEvent, waitFor } from './support/wait.js';

const DRAIN_TIMEOUT_MS = 5000; // the default

function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(q * (sorted.length - 1))] ?? Number.NaN;
}

/** Runs the scenario on a fresh bridge with `env`; returns when the frozen one was dropped, ms after the first message. */
async function frozenScenario(env: Record<string, string>, paceMs = 0): Promise<number> {
  const t = await startTestBridge({
    BRIDGE_DEVICE_RATE: '0',
    BRIDGE_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
    ...env,
  });
  try {
    return await run(t, paceMs);
  } finally {
    await t.close();
  }
}

test('default limits: the frozen subscriber is dropped once 1 MiB is queued for it; nobody else waits', async () => {
  const droppedAfter = await frozenScenario({});
  assert.ok(droppedAfter < DRAIN_TIMEOUT_MS, `dropped after ${droppedAfter} ms`);
});

test('with a large queue allowance the drain timeout drops it; still nobody else waits', async () => {
  // Paced to ~300 messages/s once the frozen socket is full, so what is queued for it stays ~20 MB.
  const droppedAfter = await frozenScenario({ BRIDGE_SUBSCRIBER_BUFFER_BYTES: String(64 * 1024 * 1024) }, 2);
  assert.ok(droppedAfter >= DRAIN_TIMEOUT_MS, `dropped after ${droppedAfter} ms, before the drain timeout`);
});

async function run(t: TestBridge, paceMs: number): Promise<number> {
  const deviceSecret = await t.addDevice('busy-1');
  const svcSecret = await t.addUser('watch', { publish: [], subscribe: ['devices/#'] });

  // The frozen one: CONNECT, SUBSCRIBE, then never read again.
  let frozenGoneAt = 0;
  t.bridge.broker.aedes.on('clientDisconnect', (client) => {
    if (client.id === 'frozen') frozenGoneAt = performance.now();
  });
  const frozen = netConnect(t.bridge.ports.mqtt, '127.0.0.1');
  frozen.on('error', () => {});
  await waitEvent(frozen, 'connect');
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const got: string[] = [];
  parser.on('packet', (p) => got.push(p.cmd));
  frozen.on('data', (d) => parser.parse(d));
  frozen.write(
    mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      keepalive: 60,
      clientId: 'frozen',
      username: 'watch',
      password: Buffer.from(svcSecret),
    }),
  );
  frozen.write(
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: 'devices/+/telemetry', qos: 1 }],
    }),
  );
  await waitFor('SUBACK', () => got.includes('suback'));
  frozen.pause();

  const healthy = await t.connect('tcp', { clientId: 'healthy', username: 'watch', password: svcSecret });
  const sentAt = new Map<number, number>();
  const deliveryMs: number[] = [];
  healthy.on('message', (_topic, payload) => {
    const seq = Number(Telemetry.decode(payload).toJSON()['seq']);
    const at = sentAt.get(seq);
    if (at !== undefined) deliveryMs.push(performance.now() - at);
  });
  await new Promise((r) => healthy.subscribe('devices/+/telemetry', { qos: 1 }, r));
  const device = await t.connect('tcp', { clientId: 'busy-1', username: 'busy-1', password: deviceSecret });

  // ~14 KB messages: a few hundred fill the frozen socket's kernel buffers.
  const labels = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`l${i}`, 'v'.repeat(250)]));
  const values = Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`v${i}`, i]));
  const pubackMs: number[] = [];
  const start = performance.now();
  let seq = 0;
  let afterGone = 0;
  // Bounded: until 200 messages after the frozen one was dropped, at most 10,000 messages or 30 s.
  while (afterGone < 200 && seq < 10_000 && performance.now() - start < 30_000) {
    // Load shaping only (not synchronisation): a gentler stream once the kernel buffers are full.
    if (paceMs > 0 && seq > 800) await new Promise((r) => setTimeout(r, paceMs));
    seq++;
    const payload = encodeTelemetry('busy-1', seq, [{ values, labels }]);
    const at = performance.now();
    sentAt.set(seq, at);
    await publishAcked(device, 'devices/busy-1/telemetry', payload);
    pubackMs.push(performance.now() - at);
    if (frozenGoneAt) afterGone++;
  }
  await waitFor('the healthy subscriber to get every message', () => deliveryMs.length === seq, {
    timeoutMs: 10_000,
  });

  const report = (name: string, v: number[]) =>
    `${name} p50 ${percentile(v, 0.5).toFixed(1)} ms, p99 ${percentile(v, 0.99).toFixed(1)} ms, max ${Math.max(...v).toFixed(1)} ms`;
  console.log(`${seq} messages of ${encodeTelemetry('busy-1', 1, [{ values, labels }]).length} bytes`);
  console.log(report('PUBACK', pubackMs));
  console.log(report('healthy delivery', deliveryMs));
  console.log(
    `frozen subscriber dropped ${frozenGoneAt ? Math.round(frozenGoneAt - start) : 'never'} ms after the first message`,
  );

  assert.ok(frozenGoneAt > 0, 'the frozen subscriber was never disconnected');
  assert.ok(frozenGoneAt - start < DRAIN_TIMEOUT_MS + 10_000, 'the frozen subscriber was dropped too late');
  // "Not delayed": no acknowledgement and no delivery waited anywhere near the drain timeout.
  assert.ok(Math.max(...pubackMs) < 1000, report('PUBACK', pubackMs));
  assert.ok(Math.max(...deliveryMs) < 1000, report('healthy delivery', deliveryMs));
  frozen.destroy();
  return frozenGoneAt - start;
}
