import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ControlMessage } from '../../../web/client/protocol.js';
import type { LiveEvent } from './broker.js';
import { MemoryLiveBroker } from './broker-memory.js';
import { LiveSession, type LiveTransport } from './session.js';

/** A transport whose buffer the test controls. */
class FakeTransport implements LiveTransport {
  buffered = 0;
  readonly sent: { event?: LiveEvent; bytes?: Buffer; control?: ControlMessage }[] = [];
  closedWith: number | undefined;
  bufferedAmount(): number {
    return this.buffered;
  }
  sendEvent(event: LiveEvent, snapshot: boolean): void {
    const bytes = snapshot ? event.snapshotJson() : event.json;
    this.buffered += bytes.length;
    this.sent.push({ event, bytes });
  }
  sendControl(message: ControlMessage): void {
    this.sent.push({ control: message });
  }
  close(code: number): void {
    this.closedWith = code;
  }
  seqs(): number[] {
    return this.sent.filter((s) => s.event).map((s) => JSON.parse(String(s.bytes)).seq);
  }
}

const ALL = [{ kind: undefined, device: undefined }];

function setup(limits = { softLimitBytes: 1000, hardLimitBytes: 5000 }) {
  const broker = new MemoryLiveBroker({ historyCount: 1000, historyBytes: 1 << 20 });
  const sessions: LiveSession[] = [];
  broker.onMessage((e) => {
    for (const s of sessions) s.deliver(e);
  });
  const open = () => {
    const transport = new FakeTransport();
    const ends: string[] = [];
    const session = new LiveSession(broker, transport, ALL, limits, (why) => ends.push(why));
    sessions.push(session);
    return { transport, session, ends };
  };
  const publish = (device: string, seq: number) =>
    broker.publish({
      kind: 'telemetry',
      device,
      time: seq,
      body: { seq, time: seq, values: { v: seq }, labels: {} },
    });
  return { broker, open, publish };
}

test('serialise once: every client is handed the same bytes', () => {
  const { open, publish } = setup();
  const a = open();
  const b = open();
  a.session.subscribe('1', ['telemetry/+'], undefined);
  b.session.subscribe('1', ['#'], undefined);
  publish('d1', 1);
  const ea = a.transport.sent.at(-1)!.bytes!;
  const eb = b.transport.sent.at(-1)!.bytes!;
  assert.equal(ea, eb, 'the very same Buffer object');
});

test('past the soft limit: newest per feed, in cursor order, flushed once drained', () => {
  const { open, publish } = setup();
  const { transport, session } = open();
  session.subscribe('1', ['telemetry/+'], undefined);
  transport.buffered = 2000; // over the soft limit
  publish('a', 1);
  publish('b', 2);
  publish('a', 3);
  publish('c', 4);
  assert.deepEqual(transport.seqs(), []);
  session.onWritten(); // still over half the soft limit: nothing yet
  assert.deepEqual(transport.seqs(), []);
  transport.buffered = 0;
  session.onWritten();
  assert.deepEqual(transport.seqs(), [2, 3, 4], 'b, a (newest), c — in cursor order');
  publish('a', 5);
  assert.deepEqual(transport.seqs(), [2, 3, 4, 5], 'direct again once flushed');
});

test('past the hard limit (buffered + conflated): closed with 1013, once', () => {
  const { open, publish } = setup({ softLimitBytes: 100, hardLimitBytes: 1000 });
  const { transport, session, ends } = open();
  session.subscribe('1', ['telemetry/+'], undefined);
  transport.buffered = 500;
  for (let i = 0; i < 50; i++) publish(`dev${i}`, i);
  assert.equal(transport.closedWith, 1013);
  assert.deepEqual(ends, ['overflow']);
  assert.ok(session.isEnded);
  session.end();
  assert.deepEqual(ends, ['overflow'], 'onEnd once');
});

test('replay is paced by the buffer and resumes on onWritten; no duplicates with live filters', () => {
  // A replay reads on below a quarter of the soft limit (300 bytes here).
  const { open, publish } = setup({ softLimitBytes: 1200, hardLimitBytes: 100_000 });
  const first = open();
  first.session.subscribe('1', ['telemetry/a'], undefined);
  publish('a', 1);
  const since = first.transport.sent.at(-1)!.event!.cursor;
  for (let i = 2; i <= 40; i++) publish(i % 2 ? 'a' : 'b', i);

  const { transport, session } = open();
  session.subscribe('r', ['telemetry/b'], undefined); // live already: b's are not replayed again
  transport.sent.length = 0;
  session.subscribe('r2', ['telemetry/+'], since);
  // Paused after a few messages (buffer over a quarter of the soft limit).
  const firstRound = transport.seqs().length;
  assert.ok(firstRound > 0 && firstRound < 20, `${firstRound} before pausing`);
  publish('a', 41); // arrives mid-replay: comes from the history, once
  for (let i = 0; i < 100 && !transport.sent.some((s) => s.control?.['type'] === 'replayed'); i++) {
    transport.buffered = 0;
    session.onWritten();
  }
  const replayed = transport.sent.find((s) => s.control?.type === 'replayed')!.control!;
  const seqs = transport.seqs();
  assert.deepEqual(seqs, [3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41]);
  assert.equal(replayed.type === 'replayed' && replayed.count, 20);
  publish('a', 42);
  publish('b', 43);
  assert.deepEqual(transport.seqs().slice(-2), [42, 43]);
});

test('events lost by the broker: gap for each live subscription, fresh snapshots, stale conflated ones dropped', () => {
  const { open, publish } = setup();
  const { transport, session } = open();
  session.subscribe('s1', ['telemetry/a'], undefined);
  session.subscribe('s2', ['telemetry/b', 'telemetry/c'], undefined);
  publish('a', 1);
  publish('b', 2);
  transport.buffered = 2000; // over the soft limit: the next one is conflated
  publish('a', 3);
  transport.buffered = 0;
  transport.sent.length = 0;
  session.interrupted();
  const controls = transport.sent.filter((s) => s.control).map((s) => s.control);
  assert.deepEqual(controls, [
    { type: 'gap', id: 's1' },
    { type: 'gap', id: 's2' },
  ]);
  const snapshots = transport.sent.filter((s) => s.event).map((s) => JSON.parse(String(s.bytes)));
  assert.deepEqual(
    snapshots.map((m) => [m.type, m.device, m.seq]),
    [
      ['snapshot', 'b', 2],
      ['snapshot', 'a', 3],
    ],
  );
  session.onWritten();
  assert.equal(transport.seqs().length, 2, 'the conflated a:3 is not sent again after its snapshot');
  session.unsubscribe('u', ['telemetry/a']);
  transport.sent.length = 0;
  session.interrupted();
  assert.deepEqual(
    transport.sent.filter((s) => s.control).map((s) => s.control),
    [{ type: 'gap', id: 's2' }],
    'an unsubscribed feed is not named',
  );
});
