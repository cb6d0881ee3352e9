import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { FLOOD_DISCONNECT_AFTER, MAX_WAITING, PublishPace } from './publish-rate.js';

// Mocked timers and a clock that moves with them: `advance` is time passing.
let now = 0;
const clock = () => now;
function advance(ms: number): void {
  now += ms;
  mock.timers.tick(ms);
}
beforeEach(() => {
  now = 0;
  mock.timers.enable({ apis: ['setTimeout'] });
});
afterEach(() => mock.timers.reset());

test('QoS 1/2: the burst goes at once, the rest one token apart, in the order sent', () => {
  const pace = new PublishPace(10, 2, new PassThrough(), clock); // a token every 100 ms
  const ran: number[] = [];
  const results = [1, 2, 3, 4, 5].map((i) => pace.pace(() => ran.push(i)));
  assert.deepEqual(results, ['now', 'now', 'waits', 'waits', 'waits']);
  assert.deepEqual(ran, [1, 2]);
  assert.equal(pace.backlog, 3);
  advance(99);
  assert.deepEqual(ran, [1, 2], 'not before its token is earned');
  advance(1);
  assert.deepEqual(ran, [1, 2, 3]);
  advance(100);
  advance(100);
  assert.deepEqual(ran, [1, 2, 3, 4, 5]);
  assert.equal(pace.backlog, 0);
});

test('a late timer releases everything due at once, and later slots keep their spacing', () => {
  const pace = new PublishPace(10, 1, new PassThrough(), clock);
  const ran: number[] = [];
  for (let i = 1; i <= 5; i++) pace.pace(() => ran.push(i));
  // The event loop was busy: nothing fired until 250 ms.
  now += 250;
  mock.timers.tick(250);
  assert.deepEqual(ran, [1, 2, 3], 'the ones due at 100 and 200 ms');
  advance(49);
  assert.deepEqual(ran, [1, 2, 3]);
  advance(1);
  assert.deepEqual(ran, [1, 2, 3, 4], 'due at 300 ms, not 350');
});

test('a message arriving while others wait queues behind them, even once a token is back', () => {
  const pace = new PublishPace(10, 1, new PassThrough(), clock);
  const ran: string[] = [];
  pace.pace(() => ran.push('a'));
  pace.pace(() => ran.push('b')); // due at 100
  now += 150; // the timer has not run yet
  assert.equal(
    pace.pace(() => ran.push('c')),
    'waits',
  );
  mock.timers.tick(150);
  assert.deepEqual(ran, ['a', 'b'], 'b first; c is due at 200');
  advance(50);
  assert.deepEqual(ran, ['a', 'b', 'c']);
});

test('QoS 0: passes on a token, dropped without one or while QoS 1/2 wait; a flood in a row is told', () => {
  const pace = new PublishPace(10, 2, new PassThrough(), clock);
  assert.equal(pace.admit(), 'pass');
  assert.equal(pace.admit(), 'pass');
  assert.equal(pace.admit(), 'drop');
  advance(100);
  assert.equal(pace.admit(), 'pass', 'a token earned');
  // A QoS 1 waiting holds the bucket: QoS 0 does not jump ahead of it.
  pace.pace(() => {});
  pace.pace(() => {});
  assert.equal(pace.backlog, 2);
  advance(100);
  assert.equal(pace.backlog, 1);
  assert.equal(pace.admit(), 'drop');
  advance(100);
  assert.equal(pace.backlog, 0);
  // Dropped in a row: the last one of FLOOD_DISCONNECT_AFTER is a flood.
  const results = Array.from({ length: FLOOD_DISCONNECT_AFTER }, () => pace.admit());
  assert.deepEqual(results.slice(0, -1), Array(FLOOD_DISCONNECT_AFTER - 1).fill('drop'));
  assert.equal(results.at(-1), 'flood');
  // Anything let through in between starts the count again.
  for (let i = 0; i < FLOOD_DISCONNECT_AFTER - 1; i++) assert.equal(pace.admit(), 'drop');
  advance(100);
  assert.equal(pace.admit(), 'pass');
  for (let i = 0; i < FLOOD_DISCONNECT_AFTER - 1; i++) assert.equal(pace.admit(), 'drop');
});

test('close: what waits never runs, and nothing is scheduled any more', () => {
  const pace = new PublishPace(10, 1, new PassThrough(), clock);
  let ran = 0;
  for (let i = 0; i < 3; i++) pace.pace(() => ran++);
  assert.equal(ran, 1);
  pace.close();
  advance(1_000);
  assert.equal(ran, 1);
  assert.equal(pace.backlog, 0);
  assert.equal(
    pace.pace(() => ran++),
    'overflow',
  );
});

test('a message run from the queue may close the pace (its connection went): the rest never runs', () => {
  const pace = new PublishPace(10, 1, new PassThrough(), clock);
  const ran: number[] = [];
  pace.pace(() => ran.push(1));
  pace.pace(() => {
    ran.push(2);
    pace.close();
  });
  pace.pace(() => ran.push(3));
  now += 500;
  mock.timers.tick(500);
  assert.deepEqual(ran, [1, 2]);
});

test(`at most MAX_WAITING (${MAX_WAITING}) wait; beyond that the caller closes the connection`, () => {
  const pace = new PublishPace(1, 1, new PassThrough(), clock);
  let ran = 0;
  for (let i = 0; i <= MAX_WAITING; i++)
    assert.notEqual(
      pace.pace(() => ran++),
      'overflow',
    );
  assert.equal(pace.backlog, MAX_WAITING);
  assert.equal(
    pace.pace(() => ran++),
    'overflow',
  );
  advance(1_000);
  assert.equal(ran, 2, 'the one that went at once, and the first in line');
  assert.equal(pace.backlog, MAX_WAITING - 1);
  pace.close();
});

test('the connection is held while messages wait: its reader gets nothing, then "readable" once none wait', async () => {
  const conn = new PassThrough();
  const pace = new PublishPace(10, 1, conn, clock);
  pace.pace(() => {});
  conn.write('a');
  assert.equal(conn.read()?.toString(), 'a', 'not held while nothing waits');
  pace.pace(() => {}); // waits for 100 ms
  conn.write('b');
  assert.equal(conn.read(), null, 'held');
  assert.equal(conn.readableLength, 1, 'what arrives is buffered in the stream (up to its high-water mark)');
  let readable = 0;
  conn.on('readable', () => readable++);
  advance(100);
  assert.equal(pace.backlog, 0);
  await new Promise(process.nextTick);
  assert.ok(readable >= 1, "the reader is told to pull again ('readable')");
  assert.equal(conn.read()?.toString(), 'b');
  pace.close();
});

test('close lets go of the connection', () => {
  const conn = new PassThrough();
  const pace = new PublishPace(10, 1, conn, clock);
  pace.pace(() => {});
  pace.pace(() => {});
  conn.write('x');
  assert.equal(conn.read(), null);
  pace.close();
  assert.equal(conn.read()?.toString(), 'x');
});
