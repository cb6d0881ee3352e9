/**
 * Each fault flag of the simulator produces the rejection reason that contract §3 names, as seen by
 * a service user subscribed to `devices/+/errors`, and the normal stream of the device is untouched.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { SimDevice } from '../firmware-sim/device.js';
import { EXPECTED_REASON, FAULT_KINDS, FAULT_SEQ_BASE, type FaultKind } from '../firmware-sim/faults.js';
import { FileRegistry } from '../src/auth/registry-file.js';
import { decodeRejection, startTestBridge, type TestBridge } from './support/bridge.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

let tb: TestBridge | undefined;
let watcher: MqttClient | undefined;
const devices: SimDevice[] = [];
const dataDir = tempDir('sim-faults');

after(async () => {
  await Promise.all(devices.map((d) => d.stop()));
  watcher?.end(true);
  await tb?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('every fault flag produces the rejection reason the contract names', async () => {
  // A low per-device rate so that a burst of 30 messages is over it; the other devices stay under
  // it (one normal and one faulty message every 500 ms).
  // Credentials first: a running bridge re-reads its registry at most once a second.
  const registry = await FileRegistry.open(dataDir);
  const password = await registry.addUser('fault-watcher', { publish: [], subscribe: ['devices/+/errors'] });
  const secrets = new Map<FaultKind, string>();
  for (const kind of FAULT_KINDS) secrets.set(kind, await registry.addDevice(`fault-${kind}`));
  tb = await startTestBridge({ BRIDGE_DEVICE_RATE: '5', BRIDGE_DEVICE_BURST: '10' }, { dataDir });
  watcher = await tb.connect('tcp', { clientId: 'fault-watcher', username: 'fault-watcher', password });
  const seen = new Map<string, { seq: number; reason: string }[]>();
  watcher.on('message', (topic, payload) => {
    const id = topic.split('/')[1]!;
    const list = seen.get(id) ?? [];
    list.push(decodeRejection(payload));
    seen.set(id, list);
  });
  await watcher.subscribeAsync('devices/+/errors', { qos: 1 });

  const byKind = new Map<FaultKind, SimDevice>();
  for (const kind of FAULT_KINDS) {
    const id = `fault-${kind}`;
    const device = new SimDevice({
      id,
      secret: secrets.get(kind)!,
      url: tb.mqttUrl(kind === 'oversize' ? 'ws' : 'tcp'),
      intervalMs: 500,
      faults: { rates: { [kind]: 1 }, burstSize: 30 },
    });
    devices.push(device);
    byKind.set(kind, device);
  }
  await Promise.all(devices.map((d) => d.start()));

  for (const kind of FAULT_KINDS) {
    const device = byKind.get(kind)!;
    const want = EXPECTED_REASON[kind];
    await waitFor(`${kind}: a Rejection '${want}' on devices/${device.id}/errors`, () =>
      seen.get(device.id)?.some((r) => r.reason === want),
    );
    await waitFor(`${kind}: the device counted it`, () => (device.rejectionsByReason[want] ?? 0) > 0);
  }
  await Promise.all(devices.map((d) => d.drain(10_000)));

  for (const kind of FAULT_KINDS) {
    const device = byKind.get(kind)!;
    const rejections = seen.get(device.id) ?? [];
    const reasons = new Set(rejections.map((r) => r.reason));
    assert.deepEqual([...reasons], [EXPECTED_REASON[kind]], `${kind}: only '${EXPECTED_REASON[kind]}'`);
    if (kind !== 'malformed' && kind !== 'oversize' && kind !== 'burst') {
      // Messages refused before decoding (too large, undecodable, over the rate) are reported with
      // seq 0; the others carry the fault space's seqs.
      assert.ok(
        rejections.every((r) => r.seq > FAULT_SEQ_BASE),
        `${kind}: rejected seqs are from the fault space`,
      );
    }
    if (kind !== 'burst') {
      assert.equal(device.stats.unexpectedRejections, 0, `${kind}: the normal stream was not rejected`);
      assert.equal(
        device.stats.samplesAcked,
        device.stats.samples,
        `${kind}: every real sample acknowledged`,
      );
      assert.ok(device.stats.faultsSent >= 1);
    }
    assert.equal(device.connState, 'online', `${kind}: the bridge kept the connection`);
  }
});
