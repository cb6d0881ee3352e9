/**
 * Slows failed logins per address. Attempts from one address run one at a time (so one address can
 * never occupy more than one of libuv's hashing threads), each failure doubles the wait before that
 * address's next attempt (100 ms up to 5 s), and an address with too many attempts queued is refused
 * at once. Other addresses are not affected.
 */
import { setTimeout as sleep } from 'node:timers/promises';

interface AddressState {
  failures: number;
  lastFailureAt: number;
  queued: number;
  tail: Promise<unknown>;
}

export const LOGIN_THROTTLE = {
  baseDelayMs: 100,
  maxDelayMs: 5000,
  /** Attempts one address may have waiting; more are refused without a check. */
  maxQueued: 16,
  /** Failures are forgotten after this long without one. */
  forgetAfterMs: 10 * 60 * 1000,
  maxAddresses: 100_000,
} as const;

export class LoginThrottle {
  private readonly states = new Map<string, AddressState>();

  /** Runs `attempt` in the address's turn; undefined (a failure) when the address is over its queue. */
  async run<T>(address: string, attempt: () => Promise<T | undefined>): Promise<T | undefined> {
    const state = this.state(address);
    if (state.queued >= LOGIN_THROTTLE.maxQueued) {
      state.failures++;
      state.lastFailureAt = Date.now();
      return undefined;
    }
    state.queued++;
    const turn = state.tail.then(async () => {
      if (state.failures > 0) {
        await sleep(
          Math.min(LOGIN_THROTTLE.maxDelayMs, LOGIN_THROTTLE.baseDelayMs * 2 ** (state.failures - 1)),
        );
      }
      const result = await attempt();
      if (result === undefined) {
        state.failures++;
        state.lastFailureAt = Date.now();
      } else {
        state.failures = 0;
      }
      return result;
    });
    state.tail = turn.catch(() => undefined);
    try {
      return await turn;
    } finally {
      state.queued--;
    }
  }

  private state(address: string): AddressState {
    let state = this.states.get(address);
    if (state && state.failures > 0 && Date.now() - state.lastFailureAt > LOGIN_THROTTLE.forgetAfterMs) {
      state.failures = 0;
    }
    if (!state) {
      if (this.states.size >= LOGIN_THROTTLE.maxAddresses) this.sweep();
      state = { failures: 0, lastFailureAt: 0, queued: 0, tail: Promise.resolve() };
      this.states.set(address, state);
    }
    return state;
  }

  private sweep(): void {
    for (const [address, state] of this.states) {
      if (state.queued === 0 && state.failures === 0) this.states.delete(address);
    }
    if (this.states.size >= LOGIN_THROTTLE.maxAddresses) this.states.clear();
  }
}
