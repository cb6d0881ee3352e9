/**
 * One simulated device against a plain Aedes broker (no bridge): connect/status/will, replay after a
 * broker outage with original timestamps and no seq gap, data kept while PUBACKs are withheld, and the
 * commands. The bridge-level behaviour is in sim-replay / sim-spread / sim-faults.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { Aedes, type PublishPacket } from 'aedes';
import mqtt from 'mqtt';
import { codec, type WireSample } from '../firmware-sim/codec.js';
import { SimDevice } from '../firmware-sim/device.js';
import { BUILTIN_SCHEMAS } from '../src/config.js';
import { loadSchemas } from '../src/schemas/registry.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const schemas = loadSchemas(BUILTIN_SCHEMAS);
const Telemetry = schemas.type('telemetry.v1.Telemetry');
const DeviceStatus = schemas.type('telemetry.v1.DeviceStatus');

interface Received {
  seq: number;
  samples: { time_unix_ms: number; values: Record<string, number> }[];
}

/** A restartable Aedes broker on a fixed port that records the telemetry it acknowledged. */
class TestBroker {
  aedes: Aedes | undefined;
  server: Server | undefined;
  sockets = new Set<Socket>();
  port = 0;
  readonly telemetry: Received[] = [];
  maxPayload = 0;
  readonly status: { state: number; retain: boolean }[] = [];
  connects: number[] = [];
  /** When true, telemetry is never acknowledged (a bridge whose spool is full). */
  withholdAcks = false;

  async start(): Promise<void> {
    const aedes = await Aedes.createBroker({
      authorizePublish: (_client, packet: PublishPacket, cb) => {
        if (this.withholdAcks && packet.topic.endsWith('/telemetry')) return; // never call back: no PUBACK
        if (packet.topic.endsWith('/telemetry')) {
          this.maxPayload = Math.max(this.maxPayload, (packet.payload as Buffer).length);
          const o = Telemetry.toObject(Telemetry.decode(packet.payload as Buffer), {
            longs: Number,
          }) as Received;
          this.telemetry.push({ seq: o.seq, samples: o.samples ?? [] });
        }
        if (packet.topic.endsWith('/status')) {
          const s = DeviceStatus.toObject(DeviceStatus.decode(packet.payload as Buffer)) as {
            state?: number;
          };
          this.status.push({ state: s.state ?? 0, retain: packet.retain });
        }
        cb(null);
      },
    });
    aedes.on('client', () => this.connects.push(Date.now()));
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      aedes.handle(socket);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.aedes = aedes;
    this.server = server;
  }

  /** Like a crashed broker: every socket destroyed, the port closed. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
    await new Promise<void>((resolve) => this.aedes?.close(() => resolve()));
    this.server = undefined;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }
}

/** Every seq 1..max exactly once (duplicates allowed only as exact re-sends), counters contiguous. */
function assertNoGaps(received: Received[]): { maxSeq: number; samples: number } {
  const bySeq = new Map<number, Received>();
  for (const r of received) {
    const prev = bySeq.get(r.seq);
    if (prev) assert.deepEqual(prev.samples, r.samples, `seq ${r.seq} re-sent with other samples`);
    bySeq.set(r.seq, r);
  }
  const seqs = [...bySeq.keys()].sort((a, b) => a - b);
  assert.deepEqual(
    seqs,
    Array.from({ length: seqs.length }, (_, i) => i + 1),
    'seqs 1..n without gaps',
  );
  const counters = seqs.flatMap((s) => bySeq.get(s)!.samples.map((x) => x.values['counter']));
  assert.deepEqual(
    counters,
    Array.from({ length: counters.length }, (_, i) => i + 1),
    'counters contiguous, in order',
  );
  const times = seqs.flatMap((s) => bySeq.get(s)!.samples.map((x) => x.time_unix_ms));
  for (let i = 1; i < times.length; i++) assert.ok(times[i]! >= times[i - 1]!, 'timestamps oldest first');
  return { maxSeq: seqs.at(-1) ?? 0, samples: counters.length };
}

const devices: SimDevice[] = [];
const brokers: TestBroker[] = [];
after(async () => {
  await Promise.all(devices.map((d) => d.stop()));
  await Promise.all(brokers.map((b) => (b.server ? b.stop() : undefined)));
});

test('connects, publishes a retained ONLINE status and telemetry; the will says OFFLINE', async () => {
  const broker = new TestBroker();
  brokers.push(broker);
  await broker.start();
  const device = new SimDevice({ id: 'dev-a', url: broker.url, intervalMs: 20 });
  devices.push(device);
  await device.start();
  await waitFor('5 telemetry messages', () => broker.telemetry.length >= 5);
  assert.deepEqual(broker.status[0], { state: 1, retain: true });
  const first = broker.telemetry[0]!.samples[0]!;
  assert.deepEqual(Object.keys(first.values).sort(), [
    'battery_pct',
    'counter',
    'humidity_pct',
    'temperature_c',
  ]);
  assert.ok(Math.abs(first.time_unix_ms - Date.now()) < 5000);

  // The will: a watcher sees the retained OFFLINE status once the device's socket dies.
  const watcher = await mqtt.connectAsync(broker.url, {
    protocolVersion: 4,
    clientId: 'watcher',
    reconnectPeriod: 0,
  });
  const offline = new Promise<number>((resolve) =>
    watcher.on('message', (_t, payload) => {
      const s = DeviceStatus.toObject(DeviceStatus.decode(payload)) as { state?: number };
      if (s.state === 2) resolve(s.state);
    }),
  );
  await watcher.subscribeAsync('devices/dev-a/status', { qos: 1 });
  device.dropConnection();
  assert.equal(await offline, 2);
  await watcher.endAsync();
  await waitFor('device back online', () => device.connState === 'online', { timeoutMs: 5000 });
  assert.ok(device.stats.reconnects >= 1);
  await device.stop();
});

test('after a broker outage the device replays its buffer in batches, oldest first, no seq gap', async () => {
  const broker = new TestBroker();
  brokers.push(broker);
  await broker.start();
  const device = new SimDevice({
    id: 'dev-b',
    url: broker.url,
    intervalMs: 10,
    batchSize: 50,
    backoff: { baseMs: 100, capMs: 400, stableMs: 1000 },
  });
  devices.push(device);
  await device.start();
  await waitFor('a few messages', () => broker.telemetry.length >= 10);
  await broker.stop();
  const samplesAtStop = device.stats.samples;
  await waitFor('150 samples buffered offline', () => device.stats.buffered >= 150, { timeoutMs: 10_000 });
  await broker.start();
  await waitFor('replay done', () => device.stats.buffered <= 2 && broker.telemetry.length > 10, {
    timeoutMs: 10_000,
  });
  await device.stop();
  const { samples } = assertNoGaps(broker.telemetry);
  assert.equal(samples, device.stats.samplesAcked);
  assert.ok(samples > samplesAtStop + 140);
  assert.ok(
    broker.telemetry.some((r) => r.samples.length === 50),
    'the backlog went out in full batches of batchSize',
  );
  assert.equal(device.stats.dropped, 0);
});

test('withheld PUBACKs keep the data on the device; it is re-sent with the same seq', async () => {
  const broker = new TestBroker();
  brokers.push(broker);
  await broker.start();
  const device = new SimDevice({
    id: 'dev-c',
    url: broker.url,
    intervalMs: 10,
    ackTimeoutMs: 300,
    maxInflight: 2,
    backoff: { baseMs: 50, capMs: 100 },
  });
  devices.push(device);
  await device.start();
  await waitFor('a few messages', () => broker.telemetry.length >= 5);
  broker.withholdAcks = true;
  await waitFor('data piling up on the device', () => device.stats.buffered >= 60, { timeoutMs: 5000 });
  assert.ok(device.stats.reconnects >= 1, 'reconnected after the ack timeout');
  broker.withholdAcks = false;
  await waitFor('backlog acknowledged', () => device.stats.buffered <= 2, { timeoutMs: 10_000 });
  await device.stop();
  assertNoGaps(broker.telemetry);
  assert.ok(device.stats.resent >= 1);
});

test('a bounded ring drops the oldest samples and counts them', async () => {
  const device = new SimDevice({ id: 'dev-d', url: 'mqtt://127.0.0.1:1', intervalMs: 5, bufferCapacity: 20 });
  devices.push(device);
  await device.start();
  await waitFor('ring overflow', () => device.stats.dropped >= 10, { timeoutMs: 5000 });
  assert.equal(device.stats.buffered, 20);
  assert.ok(device.stats.connectFailures >= 1);
  await device.stop();
});

test('commands: set_interval changes the rate, reboot reconnects and keeps seq', async () => {
  const broker = new TestBroker();
  brokers.push(broker);
  await broker.start();
  const device = new SimDevice({ id: 'dev-e', url: broker.url, intervalMs: 1000, backoff: { baseMs: 100 } });
  devices.push(device);
  await device.start();
  await waitFor('online', () => device.connState === 'online');
  const Command = schemas.type('telemetry.v1.Command');
  const send = (name: string, args: Record<string, string> = {}) =>
    new Promise<void>((resolve) =>
      broker.aedes!.publish(
        {
          cmd: 'publish',
          topic: 'devices/dev-e/commands',
          payload: Buffer.from(Command.encode({ id: `c-${name}`, name, args }).finish()),
          qos: 1,
          retain: false,
          dup: false,
        },
        () => resolve(),
      ),
    );
  await send('set_interval', { ms: '20' });
  await waitFor('faster telemetry', () => broker.telemetry.length >= 10, { timeoutMs: 3000 });
  assert.equal(device.intervalMs, 20);
  const seqBefore = device.lastSeq;
  const connects = broker.connects.length;
  await send('reboot');
  await waitFor(
    'reconnected after reboot',
    () => broker.connects.length > connects && device.connState === 'online',
    {
      timeoutMs: 5000,
    },
  );
  await waitFor('more telemetry', () => device.lastSeq > seqBefore + 5);
  assert.ok(
    broker.status.some((s) => s.state === 2),
    'OFFLINE status published before the reboot',
  );
  assert.equal(device.commandsByName['reboot'], 1);
  assert.equal(device.commandsByName['set_interval'], 1);
  await device.stop();
  assertNoGaps(broker.telemetry);
});

test('replay batches are valid Telemetry with original timestamps', () => {
  const c = codec();
  const samples: WireSample[] = [
    { time_unix_ms: 1_700_000_000_000, values: { a: 1 } },
    { time_unix_ms: 1_700_000_001_000, values: { a: 2 } },
  ];
  const o = Telemetry.toObject(Telemetry.decode(c.telemetry('d', 7, samples)), { longs: Number }) as Received;
  assert.equal(o.seq, 7);
  assert.deepEqual(
    o.samples.map((s) => s.time_unix_ms),
    [1_700_000_000_000, 1_700_000_001_000],
  );
});

test('replay batches stay under the payload limit; seq and counter survive a process restart', async () => {
  const broker = new TestBroker();
  brokers.push(broker);
  await broker.start();
  const dir = tempDir('sim-state');
  const stateFile = `${dir}/dev-f.json`;
  const make = () =>
    new SimDevice({
      id: 'dev-f',
      url: broker.url,
      intervalMs: 5,
      batchSize: 1000,
      maxPayloadBytes: 2048,
      labels: { site: 'x'.repeat(100) },
      stateFile,
      backoff: { baseMs: 50, capMs: 100 },
    });
  const first = make();
  devices.push(first);
  await first.start();
  await waitFor('online', () => first.connState === 'online');
  await broker.stop();
  await waitFor('200 samples buffered', () => first.stats.buffered >= 200, { timeoutMs: 5000 });
  await broker.start();
  await first.drain(10_000);
  await first.stop();
  assert.ok(broker.maxPayload <= 2048, `largest payload ${broker.maxPayload} bytes`);
  assert.ok(
    broker.telemetry.some((r) => r.samples.length > 5),
    'still batched',
  );
  const lastSeq = first.lastSeq;

  const second = make(); // a new process: state from the file
  devices.push(second);
  await second.start();
  await waitFor('more telemetry', () => second.lastSeq >= lastSeq + 3);
  await second.drain(5000);
  await second.stop();
  assertNoGaps(broker.telemetry);
  rmSync(dir, { recursive: true, force: true });
});
