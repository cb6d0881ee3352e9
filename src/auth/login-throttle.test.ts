import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { LOGIN_THROTTLE, LoginThrottle } from './login-throttle.js';

// The throttle's timers are unref'd (they must not keep a stopped bridge alive); keep the test's
// event loop running while it waits on them.
let keepAlive: NodeJS.Timeout;
before(() => {
  keepAlive = setInterval(() => {}, 1000);
});
after(() => clearInterval(keepAlive));

const gate = () => {
  let open!: () => void;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { open, opened };
};

test('a clean address runs a few checks at once; a failing one, one at a time and slower', async () => {
  const throttle = new LoginThrottle();
  let running = 0;
  let peak = 0;
  const g = gate();
  const check = (ok: boolean) => async () => {
    running++;
    peak = Math.max(peak, running);
    await g.opened;
    running--;
    return ok ? 'id' : undefined;
  };
  const clean = Array.from({ length: 6 }, () => throttle.run('a', check(true)));
  await new Promise((r) => setImmediate(r));
  assert.equal(peak, LOGIN_THROTTLE.cleanConcurrency);
  g.open();
  assert.ok((await Promise.all(clean)).every((r) => !r.busy && r.identity === 'id'));

  assert.deepEqual(await throttle.run('b', async () => undefined), { busy: false, identity: undefined });
  const started = performance.now();
  await throttle.run('b', async () => undefined);
  const waited = performance.now() - started;
  assert.ok(waited >= LOGIN_THROTTLE.baseDelayMs * 0.9, `waited ${waited} ms after one failure`);
  // Another address is not slowed by b's failures: started after b's next check (which waits on
  // b's back-off timer), c's check is done first. Order, not a wall-clock bound a busy machine breaks.
  const finished: string[] = [];
  const slowB = throttle.run('b', async () => undefined).then(() => finished.push('b'));
  const fastC = throttle.run('c', async () => 'ok').then(() => finished.push('c'));
  await Promise.all([slowB, fastC]);
  assert.deepEqual(finished, ['c', 'b']);
});

test('an address with too many checks waiting is told it is busy, without counting a failure', async () => {
  const throttle = new LoginThrottle();
  const g = gate();
  const pending = Array.from({ length: LOGIN_THROTTLE.cleanConcurrency + LOGIN_THROTTLE.maxQueued }, () =>
    throttle.run('x', async () => {
      await g.opened;
      return 'id';
    }),
  );
  assert.deepEqual(await throttle.run('x', async () => 'id'), { busy: true });
  g.open();
  assert.ok((await Promise.all(pending)).every((r) => !r.busy));
});
