/**
 * Reconnect delays: exponential backoff with FULL jitter (AWS Architecture Blog, "Exponential Backoff
 * And Jitter"): `delay = random(0, min(capMs, baseMs * 2^attempt))`. Full jitter spreads a fleet that
 * lost its broker at the same instant over the whole window, so the broker never sees one herd.
 *
 * The attempt counter grows on every failed or short-lived connection and is reset only after a
 * connection stayed up for `stableMs`: a broker that accepts and then drops at once keeps the delays
 * growing instead of being hammered at `baseMs`.
 */

export interface BackoffOptions {
  /** First window, ms. Default 1000. */
  readonly baseMs?: number;
  /** Largest window, ms. Default 30 000. */
  readonly capMs?: number;
  /** A connection up this long resets the attempt counter, ms. Default 10 000. */
  readonly stableMs?: number;
  /** Uniform [0, 1) source; injectable for tests. Default Math.random. */
  readonly random?: () => number;
}

export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly stableMs: number;
  private readonly random: () => number;
  private attemptCount = 0;
  private connectedAt: number | undefined;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 1000;
    this.capMs = options.capMs ?? 30_000;
    this.stableMs = options.stableMs ?? 10_000;
    this.random = options.random ?? Math.random;
    if (!(this.baseMs > 0) || !(this.capMs >= this.baseMs) || !(this.stableMs >= 0)) {
      throw new RangeError(`backoff: need 0 < baseMs <= capMs and stableMs >= 0`);
    }
  }

  /** Failed or dropped attempts since the last stable connection. */
  get attempt(): number {
    return this.attemptCount;
  }

  /** The current window, ms: min(cap, base * 2^attempt). */
  window(): number {
    // 2^attempt overflows to Infinity long after the cap is reached; min() keeps it finite.
    return Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attemptCount, 1024));
  }

  /** The delay before the next attempt, ms, drawn from [0, window); counts the attempt. */
  next(): number {
    const delay = Math.floor(this.random() * this.window());
    this.attemptCount++;
    return delay;
  }

  /** The connection is up (CONNACK accepted) at `now` (ms). */
  connected(now: number = Date.now()): void {
    this.connectedAt = now;
  }

  /** The connection ended at `now`: a stable one resets the counter. */
  disconnected(now: number = Date.now()): void {
    if (this.connectedAt !== undefined && now - this.connectedAt >= this.stableMs) this.attemptCount = 0;
    this.connectedAt = undefined;
  }

  /** Forget all history (a deliberate restart, e.g. the `reboot` command). */
  reset(): void {
    this.attemptCount = 0;
    this.connectedAt = undefined;
  }
}
