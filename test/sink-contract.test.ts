/**
 * The Sink contract (src/bridge/sink.ts), one suite run against every implementation the pipeline
 * is given: storage (spool + InfluxDB writer, into a real InfluxDB 1.6) and the live hub (over the
 * in-memory and the Redis live broker, a real redis-server).
 *
 * - An accepted telemetry message comes out once per sample, a status change once, each exactly as
 *   accepted, in the order accepted.
 * - A durable sink's `accept` returns a promise that resolves once the message is safe; a
 *   non-durable one returns nothing and never waits.
 * - `rejected(samples)` keeps the loss ledger where the sink has one, and changes nothing else.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { LiveBroker, LiveEvent } from '../src/bridge/live/broker.js';
import { MemoryLiveBroker } from '../src/bridge/live/broker-memory.js';
import { LiveHub } from '../src/bridge/live/hub.js';
import type { Reading, StatusChange } from '../src/bridge/reading.js';
import type { Sink } from '../src/bridge/sink.js';
import { openStorage } from '../src/bridge/storage/open-storage.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createMetrics, type Metrics } from '../src/metrics.js';
import { RedisHealth } from '../src/redis.js';
import { contractSuite } from './support/contract.js';
import { type InfluxdServer, ledger, startInfluxd } from './support/influx.js';
import { openRedisLiveBroker } from './support/live-events.js';
import { type RedisServer, startRedis } from './support/redis.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

/** What came out of a sink, in a form every implementation can report. */
interface Observed {
  readonly kind: 'telemetry' | 'status';
  readonly device: string;
  readonly time: number;
  /** telemetry: the values; status: `{ online: 1 | 0 }`. */
  readonly values: Readonly<Record<string, number>>;
}

interface SinkUnderTest {
  readonly sink: Sink;
  readonly metrics: Metrics;
  /** Everything the sink has put out so far, oldest first. */
  observed(): Promise<Observed[]>;
  close(): Promise<void>;
}

const T0 = Date.UTC(2026, 10, 1);
const log = createLogger('silent');

function reading(device: string, seq: number, samples: number): Reading {
  return {
    deviceId: device,
    seq,
    receivedAt: Date.now(),
    samples: Array.from({ length: samples }, (_, i) => ({
      time: T0 + seq * 1000 + i,
      values: { temperature_c: seq + i / 10 },
      labels: {},
    })),
  };
}

const status = (device: string, online: boolean, time: number): StatusChange => ({
  deviceId: device,
  state: online ? 'online' : 'offline',
  firmware: '1.0.0',
  time,
});

function contract(name: string, open: () => Promise<SinkUnderTest | { skip: string }>): void {
  contractSuite(`Sink contract: ${name}`, open, ({ test, subject }) => {
    test('each sample and each status change comes out once, as accepted, in order', async () => {
      const s = subject();
      const messages = [
        { kind: 'telemetry', reading: reading('c-1', 1, 3) },
        { kind: 'status', status: status('c-1', true, T0 + 1500) },
        { kind: 'telemetry', reading: reading('c-2', 2, 1) },
      ] as const;
      for (const m of messages) await s.sink.accept(m);
      const expected: Observed[] = [
        ...[0, 1, 2].map((i) => ({
          kind: 'telemetry' as const,
          device: 'c-1',
          time: T0 + 1000 + i,
          values: { temperature_c: 1 + i / 10 },
        })),
        { kind: 'status', device: 'c-1', time: T0 + 1500, values: { online: 1 } },
        { kind: 'telemetry', device: 'c-2', time: T0 + 2000, values: { temperature_c: 2 } },
      ];
      const seen = await waitFor('5 messages out', async () => {
        const all = await s.observed();
        return all.length >= expected.length ? all : undefined;
      });
      assert.deepEqual(seen, expected);
    });

    test('a durable sink resolves once the message is safe; another never makes the caller wait', async () => {
      const s = subject();
      const before = (await s.observed()).length;
      const result = s.sink.accept({ kind: 'telemetry', reading: reading('c-3', 3, 1) });
      if (s.sink.durable) {
        assert.ok(result instanceof Promise, 'a durable sink returns a promise');
        await result;
      } else {
        assert.equal(result, undefined, 'a non-durable sink returns nothing');
      }
      await waitFor('the message out', async () => (await s.observed()).length === before + 1);
    });

    test('rejected samples keep the loss ledger balanced and put nothing out', async () => {
      const s = subject();
      const before = (await s.observed()).length;
      const l0 = await ledger(s.metrics.registry);
      s.sink.rejected?.(4);
      const l1 = await ledger(s.metrics.registry);
      if (s.sink.durable) assert.equal(l1.received - l0.received, 4, 'a durable sink counts them received');
      assert.equal(l1.received - l1.accounted, l0.received - l0.accounted, 'and accounted for');
      await s.sink.accept({ kind: 'telemetry', reading: reading('c-4', 4, 1) });
      await waitFor('the next message out', async () => (await s.observed()).length === before + 1);
    });
  });
}

contract('storage (spool + InfluxDB writer, InfluxDB 1.6)', async () => {
  const influx = await startInfluxd({ database: 'sink' });
  if ('skip' in influx) return influx;
  const dir = tempDir('sink-storage');
  const metrics = createMetrics({ defaultMetrics: false });
  const config = loadConfig({
    BRIDGE_DATA_DIR: dir,
    INFLUX_URL: influx.url,
    INFLUX_API: 'v1',
    INFLUX_DATABASE: 'sink',
    INFLUX_FLUSH_INTERVAL_MS: '20',
  });
  const storage = await openStorage({ config, log, metrics });
  assert.ok(storage);
  return {
    sink: storage,
    metrics,
    observed: () => readBack(influx),
    async close() {
      await storage.close(1000);
      await influx.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

/**
 * What InfluxDB holds, as the contract sees it. InfluxDB orders by time, not by arrival: the tests
 * give every message a later time than the one accepted before it, so time order is acceptance order.
 */
async function readBack(influx: InfluxdServer): Promise<Observed[]> {
  const telemetry = await influx.rows('SELECT device_id, temperature_c FROM telemetry', 'sink');
  const statuses = await influx.rows('SELECT device_id, online FROM device_status', 'sink');
  const all: Observed[] = [
    ...telemetry.map((r) => ({
      kind: 'telemetry' as const,
      device: String(r['device_id']),
      time: Number(r['time']),
      values: { temperature_c: Number(r['temperature_c']) },
    })),
    ...statuses.map((r) => ({
      kind: 'status' as const,
      device: String(r['device_id']),
      time: Number(r['time']),
      values: { online: r['online'] ? 1 : 0 },
    })),
  ];
  return all.sort((a, b) => a.time - b.time);
}

/** The live hub over a live broker, observed through the broker's events. */
function hubUnderTest(broker: LiveBroker, onClose: () => Promise<void>): SinkUnderTest {
  const metrics = createMetrics({ defaultMetrics: false });
  const hub = new LiveHub({ config: loadConfig({}), log, metrics, broker });
  const events: LiveEvent[] = [];
  broker.onMessage((e) => events.push(e));
  return {
    sink: hub,
    metrics,
    observed: async () =>
      events.map((e) => {
        const body = JSON.parse(String(e.json)) as { values?: Record<string, number>; state?: string };
        return {
          kind: e.kind,
          device: e.device,
          time: e.time,
          values: e.kind === 'telemetry' ? (body.values ?? {}) : { online: body.state === 'online' ? 1 : 0 },
        };
      }),
    async close() {
      await hub.close();
      await onClose();
    },
  };
}

contract('live hub (in-memory live broker)', async () =>
  hubUnderTest(new MemoryLiveBroker({ historyCount: 100, historyBytes: 1 << 20 }), async () => {}),
);

let redis: RedisServer | undefined;
contract('live hub (Redis live broker)', async () => {
  const started = await startRedis();
  if ('skip' in started) return started;
  redis = started;
  const health = new RedisHealth(log);
  const broker = await openRedisLiveBroker(started.url, health, { keyPrefix: 'sink-contract' });
  return hubUnderTest(broker, async () => {
    health.close();
    await redis?.stop();
  });
});
