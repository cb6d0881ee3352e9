import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LiveEvent } from './broker.js';
import { FrameCache, textFrame } from './ws-frame.js';

test('textFrame is a final text frame (src/ws-frame.test.ts checks the framing against ws)', () => {
  assert.deepEqual(textFrame(Buffer.from('{}')), Buffer.from([0x81, 2, 0x7b, 0x7d]));
});

test('FrameCache frames each event once and reframes a different event', () => {
  const event = (json: string) => ({ json: Buffer.from(json) }) as LiveEvent;
  const a = event('{"type":"telemetry","seq":1}');
  const b = event('{"type":"telemetry","seq":2}');
  const cache = new FrameCache();
  const fa = cache.of(a);
  assert.equal(cache.of(a), fa, 'same buffer for every client of one event');
  assert.deepEqual(fa.subarray(2), a.json);
  assert.deepEqual(cache.of(b).subarray(2), b.json);
});
