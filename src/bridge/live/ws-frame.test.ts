import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as wsModule from 'ws';
import type { LiveEvent } from './broker.js';
import { FrameCache, textFrame } from './ws-frame.js';

/** ws's own framing (exported, untyped): what `ws.send(data, { binary: false })` writes. */
const { Sender } = wsModule as unknown as {
  Sender: { frame(data: Buffer, options: Record<string, unknown>): Buffer[] };
};

test('textFrame writes the bytes ws writes for a server text message, at every length class', () => {
  for (const len of [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]) {
    const payload = Buffer.alloc(len, 0x61);
    const expected = Buffer.concat(
      Sender.frame(payload, { fin: true, opcode: 1, rsv1: false, mask: false, readOnly: false }),
    );
    assert.deepEqual(textFrame(payload), expected, `length ${len}`);
  }
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
