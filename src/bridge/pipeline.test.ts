/**
 * The pipeline's ordering promise with a durable sink that groups its writes (as the spool's group
 * commit does): nothing reaches the other sinks, and no verdict settles, before the write is safe.
 * End to end with MQTT, the spool and InfluxDB: test/ingest-storage.test.ts, test/durability-*.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IngestVerdict } from '../broker/ingest-port.js';
import { BUILTIN_SCHEMAS } from '../config.js';
import { createLogger } from '../log.js';
import { createMetrics } from '../metrics.js';
import { loadSchemas } from '../schemas/registry.js';
import { Pipeline } from './pipeline.js';
import type { Accepted, Sink } from './sink.js';

const schemas = loadSchemas(BUILTIN_SCHEMAS);
const Telemetry = schemas.type('telemetry.v1.Telemetry');

function payload(seq: number): Buffer {
  const sample = { time_unix_ms: Date.now(), values: { t: seq } };
  return Buffer.from(Telemetry.encode({ device_id: 'd1', seq, samples: [sample] }).finish());
}

/** A durable sink whose appends share one promise per group until `commit()` settles it. */
class GroupingSink implements Sink {
  readonly durable = true;
  private group: { promise: Promise<void>; resolve(): void; reject(err: Error): void } | undefined;
  accept(): Promise<void> {
    if (!this.group) {
      let resolve!: () => void;
      let reject!: (err: Error) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.group = { promise, resolve, reject };
    }
    return this.group.promise;
  }
  commit(err?: Error): void {
    const group = this.group;
    this.group = undefined;
    if (err) group?.reject(err);
    else group?.resolve();
  }
}

function pipelineWith(durable: Sink): { pipeline: Pipeline; seen: number[] } {
  const seen: number[] = [];
  const live: Sink = {
    durable: false,
    accept: (m: Accepted) => {
      if (m.kind === 'telemetry') seen.push(m.reading.seq);
    },
  };
  const pipeline = new Pipeline({
    config: { maxPayloadBytes: 16_384 },
    log: createLogger('silent'),
    metrics: createMetrics({ defaultMetrics: false }),
    schemas,
    sinks: [durable, live],
  });
  return { pipeline, seen };
}

const handle = (pipeline: Pipeline, seq: number) =>
  pipeline.handle('d1', 'devices/d1/telemetry', payload(seq)) as Promise<IngestVerdict>;

test('messages of one durable write share a verdict, reach the other sinks in order and only once safe', async () => {
  const durable = new GroupingSink();
  const { pipeline, seen } = pipelineWith(durable);
  const first = [1, 2, 3].map((seq) => handle(pipeline, seq));
  assert.ok(
    first.every((v) => v === first[0]),
    'one verdict for the group',
  );
  let settled = false;
  void first[0]!.then(() => {
    settled = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false, 'no verdict before the write is safe');
  assert.deepEqual(seen, [], 'nothing streamed before the write is safe');
  durable.commit();
  assert.deepEqual(await Promise.all(first), [{ route: 'relay' }, { route: 'relay' }, { route: 'relay' }]);
  assert.deepEqual(seen, [1, 2, 3]);

  // The next group waits on its own write; a failed write refuses every message of its group.
  const second = [4, 5].map((seq) => handle(pipeline, seq));
  assert.notEqual(second[0], first[0]);
  durable.commit(new Error('disk failed'));
  for (const verdict of second) await assert.rejects(verdict, /disk failed/);
  assert.deepEqual(seen, [1, 2, 3]);
});

test('a durable sink that returns an already settled promise again gets a verdict per batch, none lost', async () => {
  const done = Promise.resolve();
  const { pipeline, seen } = pipelineWith({ durable: true, accept: () => done });
  await handle(pipeline, 1);
  // Same promise, already settled and its batch delivered: this message must not join that batch.
  await handle(pipeline, 2);
  assert.deepEqual(seen, [1, 2]);
});
