/**
 * Reconnection delays: exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff And Jitter"): delay = random(0, min(cap, base · 2^attempt)). Full jitter spreads a fleet
 * of browsers that lost the same server over the whole window, so a restarted bridge is not hit by
 * all of them at once.
 */

export interface BackoffOptions {
  /** Window of the first retry, ms. Default 500. */
  readonly baseMs?: number;
  /** Largest window, ms. Default 30 000. */
  readonly capMs?: number;
}

export const DEFAULT_BACKOFF = { baseMs: 500, capMs: 30_000 } as const;

/** The upper bound of the window for retry number `attempt` (0-based), ms. */
export function backoffWindow(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? DEFAULT_BACKOFF.baseMs;
  const cap = options.capMs ?? DEFAULT_BACKOFF.capMs;
  // 2^attempt overflows to Infinity past ~1023; min() keeps it at the cap. Clamp attempt ≥ 0.
  return Math.min(cap, base * 2 ** Math.max(0, attempt));
}

/**
 * The delay before retry number `attempt`, ms: uniform in [0, window). `random` returns [0, 1)
 * like Math.random (injected so tests can pin it).
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  return Math.floor(random() * backoffWindow(attempt, options));
}
