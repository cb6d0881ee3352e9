/**
 * Waiting for events with timeouts, never sleeping as synchronisation.
 */
import { once, type EventEmitter } from 'node:events';

/** Polls `check` until it returns a truthy value, or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 25 } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Resolves with the event's arguments, or rejects after `timeoutMs`. */
export async function waitEvent(emitter: EventEmitter, event: string, timeoutMs = 10_000): Promise<unknown[]> {
  return once(emitter, event, { signal: AbortSignal.timeout(timeoutMs) }).catch((err: Error) => {
    if (err.name === 'AbortError') throw new Error(`timed out after ${timeoutMs} ms waiting for '${event}'`);
    throw err;
  });
}
