// Unit tests of the client's reconnection delays: exponential window, cap, full jitter.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay, backoffWindow, DEFAULT_BACKOFF } from '../web/client/backoff.js';

describe('backoff', () => {
  it('doubles the window from the base and stops at the cap', () => {
    const opts = { baseMs: 100, capMs: 1000 };
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 10].map((a) => backoffWindow(a, opts)),
      [100, 200, 400, 800, 1000, 1000, 1000],
    );
  });

  it('never overflows for huge attempt counts and treats negative as 0', () => {
    assert.equal(backoffWindow(5000), DEFAULT_BACKOFF.capMs);
    assert.equal(backoffWindow(-3), DEFAULT_BACKOFF.baseMs);
  });

  it('full jitter: the delay spans [0, window) with the random source', () => {
    const opts = { baseMs: 100, capMs: 1000 };
    assert.equal(
      backoffDelay(3, opts, () => 0),
      0,
    );
    assert.equal(
      backoffDelay(3, opts, () => 0.5),
      400,
    );
    assert.equal(
      backoffDelay(3, opts, () => 0.999999),
      799,
    );
    assert.equal(
      backoffDelay(20, opts, () => 0.999999),
      999,
    );
  });

  it('with Math.random, delays are spread over the whole window (not clustered at its end)', () => {
    const opts = { baseMs: 1000, capMs: 1000 };
    const delays = Array.from({ length: 2000 }, () => backoffDelay(0, opts));
    assert.ok(delays.every((d) => d >= 0 && d < 1000));
    const low = delays.filter((d) => d < 250).length;
    const high = delays.filter((d) => d >= 750).length;
    // Each quarter holds ~500 of 2000; bounds are > 6 sigma wide.
    assert.ok(low > 350 && low < 650, `low quarter ${low}`);
    assert.ok(high > 350 && high < 650, `high quarter ${high}`);
  });
});
