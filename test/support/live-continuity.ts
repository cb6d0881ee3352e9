/**
 * What a browser saw, checked for holes: per device, the simulated fleet's `counter` (+1 a sample)
 * must follow on from the subscription's snapshot and from one `telemetry` message to the next. A
 * jump is allowed only after the server said `gap` (the snapshots then are the state before the loss,
 * and each device's next telemetry starts afresh); a repeat is a device's resend after a reconnect
 * (duplicates are storage's business, not a hole).
 */
import type { LiveMessage } from './live-client.js';

export interface Continuity {
  /** Device → the highest counter seen (a snapshot's, until telemetry comes). */
  readonly last: Map<string, number>;
  /** `gap` messages received. */
  readonly gaps: number;
  /** Jumps not announced by a `gap`: `device: from → to`. Must be empty. */
  readonly holes: string[];
  /** Counters seen again (resends). */
  readonly repeats: number;
  /** `telemetry` messages. */
  readonly telemetry: number;
}

export function checkContinuity(messages: readonly LiveMessage[]): Continuity {
  /** Device → highest counter, and the gap count when it was last checked (older: starts afresh). */
  const state = new Map<string, { last: number; epoch: number }>();
  const holes: string[] = [];
  let gaps = 0;
  let repeats = 0;
  let telemetry = 0;
  for (const m of messages) {
    if (m.type === 'gap') {
      gaps++;
      continue;
    }
    if (m.type !== 'telemetry' && m.type !== 'snapshot') continue;
    const device = String(m['device']);
    const counter = Number((m['values'] as Record<string, number>)['counter']);
    const s = state.get(device);
    if (m.type === 'snapshot') {
      // Before any gap a snapshot is the state at subscribe time: telemetry follows on from it.
      if (!s) state.set(device, { last: counter, epoch: gaps === 0 ? 0 : -1 });
      continue;
    }
    telemetry++;
    if (!s || s.epoch < gaps) {
      state.set(device, { last: Math.max(s?.last ?? counter, counter), epoch: gaps });
      continue;
    }
    if (counter > s.last + 1) holes.push(`${device}: ${s.last} → ${counter}`);
    else if (counter <= s.last) repeats++;
    s.last = Math.max(s.last, counter);
  }
  return { last: new Map([...state].map(([d, s]) => [d, s.last])), gaps, holes, repeats, telemetry };
}
