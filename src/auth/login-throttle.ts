/**
 * Room: auth. Slows failed logins per address without slowing anyone else.
 *
 * - An address with no recent failure may have `cleanConcurrency` checks running at once (a fleet
 *   behind one NAT address logs in at the speed of the hash, not one at a time).
 * - After a failure its checks run one at a time, each after a wait that doubles per failure
 *   (100 ms up to 5 s): a password guesser gets a handful of guesses a second at most, and holds at
 *   most one of libuv's hashing threads, so other addresses' logins are not delayed.
 * - An address with `maxQueued` checks waiting is refused at once with "server busy" (CONNACK 3),
 *   which does not count as a failure: the client retries after its backoff.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export const LOGIN_THROTTLE = {
  cleanConcurrency: 2,
  baseDelayMs: 100,
  maxDelayMs: 5000,
  /** Checks one address may have waiting; more are refused as busy. */
  maxQueued: 64,
  /** Failures are forgotten after this long without one. */
  forgetAfterMs: 10 * 60 * 1000,
  maxAddresses: 100_000,
} as const;

/** The outcome of a throttled login. */
export type Throttled<T> =
  | { readonly busy: true }
  | { readonly busy: false; readonly identity: T | undefined };

interface AddressState {
  failures: number;
  lastFailureAt: number;
  running: number;
  waiting: Array<() => void>;
}

export class LoginThrottle {
  private readonly states = new Map<string, AddressState>();

  /** Runs `attempt` in the address's turn; `identity` undefined means the credentials were wrong. */
  async run<T>(address: string, attempt: () => Promise<T | undefined>): Promise<Throttled<T>> {
    const state = this.state(address);
    if (state.waiting.length >= LOGIN_THROTTLE.maxQueued) return { busy: true };
    await this.turn(state);
    try {
      if (state.failures > 0) {
        // Unref'd: logins waiting out a back-off must not keep a stopped bridge's process alive.
        await sleep(
          Math.min(LOGIN_THROTTLE.maxDelayMs, LOGIN_THROTTLE.baseDelayMs * 2 ** (state.failures - 1)),
          undefined,
          { ref: false },
        );
      }
      const identity = await attempt();
      if (identity === undefined) {
        state.failures++;
        state.lastFailureAt = Date.now();
      } else if (state.failures > 0) {
        state.failures--;
      }
      return { busy: false, identity };
    } finally {
      state.running--;
      this.next(state);
    }
  }

  private limit(state: AddressState): number {
    return state.failures > 0 ? 1 : LOGIN_THROTTLE.cleanConcurrency;
  }

  private turn(state: AddressState): Promise<void> {
    if (state.running < this.limit(state) && state.waiting.length === 0) {
      state.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      state.waiting.push(() => {
        state.running++;
        resolve();
      }),
    );
  }

  private next(state: AddressState): void {
    while (state.waiting.length > 0 && state.running < this.limit(state)) state.waiting.shift()!();
  }

  private state(address: string): AddressState {
    let state = this.states.get(address);
    if (state && state.failures > 0 && Date.now() - state.lastFailureAt > LOGIN_THROTTLE.forgetAfterMs) {
      state.failures = 0;
    }
    if (!state) {
      if (this.states.size >= LOGIN_THROTTLE.maxAddresses) this.sweep();
      state = { failures: 0, lastFailureAt: 0, running: 0, waiting: [] };
      this.states.set(address, state);
    }
    return state;
  }

  private sweep(): void {
    for (const [address, state] of this.states) {
      if (state.running === 0 && state.waiting.length === 0 && state.failures === 0)
        this.states.delete(address);
    }
    if (this.states.size >= LOGIN_THROTTLE.maxAddresses) this.states.clear();
  }
}
