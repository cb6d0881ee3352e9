/**
 * Fuzz of the `/live` message parser (issue 5, point 6), through the real endpoint: thousands of
 * random and mutated client frames (random text, random JSON, protocol-shaped objects with wrong
 * and right fields, binary frames). Each frame must get exactly one answer (`subscribed`,
 * `unsubscribed`, `ack` or `error`), the connection must stay usable, and nothing may crash or
 * reject unhandled. FUZZ_RUNS raises the count on demand; FUZZ_SEED replays a run.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import WebSocket from 'ws';
import { openTokenService } from '../src/auth/tokens.js';
import { encodeTelemetry, publishAcked, startTestBridge, type TestBridge } from './support/bridge.js';
import { waitEvent, waitFor } from './support/wait.js';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 3000);
const SEED = Number(process.env['FUZZ_SEED'] ?? Date.now() % 2 ** 31);
const ANSWERS = new Set(['subscribed', 'unsubscribed', 'ack', 'error']);
const STREAMED = new Set(['snapshot', 'telemetry', 'status', 'replayed', 'gap']);

let t: TestBridge;
const problems: unknown[] = [];
const onProblem = (err: unknown) => problems.push(err);

before(async () => {
  process.on('unhandledRejection', onProblem);
  process.on('uncaughtException', onProblem);
  // No inbound rate limit here: every frame must reach the parser.
  t = await startTestBridge({ BRIDGE_LIVE_RATE: '1000000', BRIDGE_LIVE_BURST: '1000000' });
});
after(async () => {
  await t.close();
  process.off('unhandledRejection', onProblem);
  process.off('uncaughtException', onProblem);
});

const feedLike = fc.oneof(
  fc.constantFrom(
    '#',
    '+/#',
    '+/+',
    'telemetry/+',
    'status/#',
    'telemetry/d1',
    'telemetry/d1/#',
    'a#',
    '#/x',
  ),
  fc
    .tuple(fc.constantFrom('telemetry', 'status', 'x', '+', '#', ''), fc.string({ maxLength: 70 }))
    .map(([k, d]) => `${k}/${d}`),
  fc.string({ maxLength: 200 }),
);
const shaped = fc.record(
  {
    type: fc.oneof(
      fc.constantFrom('subscribe', 'unsubscribe', 'command', 'SUBSCRIBE', '', 'ping'),
      fc.anything(),
    ),
    id: fc.oneof(
      fc.string({ minLength: 1, maxLength: 10 }),
      fc.string({ minLength: 120, maxLength: 140 }),
      fc.anything(),
    ),
    feeds: fc.oneof(fc.array(feedLike, { maxLength: 120 }), fc.anything()),
    since: fc.oneof(fc.constantFrom('0', '1-1', 'zzz', ''), fc.string({ maxLength: 120 }), fc.anything()),
    device: fc.oneof(fc.constantFrom('d1', 'x/y', ''), fc.string({ maxLength: 70 })),
    name: fc.oneof(fc.constantFrom('set_interval', '1bad'), fc.string({ maxLength: 70 })),
    args: fc.oneof(
      fc.dictionary(fc.string({ maxLength: 70 }), fc.string({ maxLength: 300 }), { maxKeys: 40 }),
      fc.anything(),
    ),
  },
  { requiredKeys: [] },
);
/** One client frame: text or binary. */
const frame: fc.Arbitrary<{ text?: string; binary?: Uint8Array }> = fc.oneof(
  { weight: 6, arbitrary: shaped.map((o) => ({ text: JSON.stringify(o) })) },
  { weight: 2, arbitrary: fc.json().map((text) => ({ text })) },
  { weight: 2, arbitrary: fc.string({ maxLength: 300 }).map((text) => ({ text })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((binary) => ({ binary })) },
  // Mutations of a valid message: truncated or with one character replaced.
  {
    weight: 2,
    arbitrary: fc.tuple(fc.nat(60), fc.string({ minLength: 1, maxLength: 1 })).map(([at, c]) => {
      const valid = '{"type":"subscribe","id":"r1","feeds":["telemetry/+"]}';
      return { text: at % 2 ? valid.slice(0, at) : valid.slice(0, at) + c + valid.slice(at + 1) };
    }),
  },
);

test(`${RUNS} random and mutated frames: one answer each, no crash, the connection stays usable`, async () => {
  const tokens = await openTokenService(t.dataDir);
  const { token } = await tokens.create({ feeds: ['#'], commands: true });
  const ws = new WebSocket(`ws://127.0.0.1:${t.bridge.ports.http}/live?token=${token}`);
  await waitEvent(ws, 'open');
  let answers = 0;
  let closed = false;
  const bad: string[] = [];
  ws.on('close', () => {
    closed = true;
  });
  ws.on('message', (data, isBinary) => {
    const text = String(data);
    let m: { type?: unknown };
    try {
      m = JSON.parse(text) as { type?: unknown };
    } catch {
      bad.push(text);
      return;
    }
    if (isBinary || typeof m.type !== 'string') bad.push(text);
    else if (ANSWERS.has(m.type)) answers++;
    else if (!STREAMED.has(m.type)) bad.push(text);
  });

  const frames = fc
    .sample(frame, { numRuns: RUNS * 2, seed: SEED })
    .filter(
      (f) =>
        (f.text === undefined || Buffer.byteLength(f.text) <= 4096) && !(f.text === undefined && !f.binary),
    )
    .slice(0, RUNS);
  console.log(`seed ${SEED}: ${frames.length} frames`);
  // Sent in windows of 100 so that answers keep up and the send buffer stays small.
  for (let i = 0; i < frames.length; i += 100) {
    for (const f of frames.slice(i, i + 100)) {
      if (f.binary) ws.send(f.binary, { binary: true });
      else ws.send(f.text!, { binary: false });
    }
    await waitFor(
      `answers to the first ${Math.min(i + 100, frames.length)} frames`,
      () => closed || answers >= Math.min(i + 100, frames.length),
    );
    assert.equal(closed, false, 'the bridge closed the connection');
  }
  assert.equal(answers, frames.length, 'one answer a frame');
  assert.deepEqual(bad.slice(0, 5), [], 'every server message is a JSON object of a known type');

  // Still usable: a valid subscription gets a reading.
  ws.send(JSON.stringify({ type: 'unsubscribe', id: 'u', feeds: [] }));
  ws.send(JSON.stringify({ type: 'subscribe', id: 'final', feeds: ['telemetry/fz-1'] }));
  const got: unknown[] = [];
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as { type: string; device?: string; id?: string; code?: string };
    got.push(m);
  });
  await waitFor('subscribed or a limit error', () => got.some((m) => (m as { id?: string }).id === 'final'));
  const final = got.find((m) => (m as { id?: string }).id === 'final') as { type: string; code?: string };
  // The fuzz may have filled the 100 feeds: then the limit holds, which is the other acceptable answer.
  assert.ok(final.type === 'subscribed' || final.code === 'too_many_subscriptions', JSON.stringify(final));
  if (final.type === 'subscribed') {
    const device = await t.connect('tcp', {
      clientId: 'fz-1',
      username: 'fz-1',
      password: await t.addDevice('fz-1'),
    });
    await publishAcked(device, 'devices/fz-1/telemetry', encodeTelemetry('fz-1', 1, [{ values: { t: 1 } }]));
    await waitFor('the reading', () => got.some((m) => (m as { type: string }).type === 'telemetry'));
  }
  ws.close();
  assert.deepEqual(problems, []);
});
