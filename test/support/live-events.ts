/**
 * Live broker events for tests: a telemetry event whose sequence number says which it is, and the
 * sequence numbers of what a broker returned.
 */
import type { LiveBroker, LiveEvent } from '../../src/bridge/live/broker.js';

/** Publishes telemetry `seq` of `device` (time = seq; `pad` makes the event bigger). */
export function publishSeq(broker: LiveBroker, device: string, seq: number, pad = ''): void {
  broker.publish({
    kind: 'telemetry',
    device,
    time: seq,
    body: { seq, time: seq, values: { v: seq }, labels: pad ? { pad } : {} },
  });
}

/** The telemetry sequence numbers of `events`, or 'gap'. */
export const seqs = (events: readonly LiveEvent[] | 'gap'): number[] | 'gap' =>
  events === 'gap' ? 'gap' : events.map((e) => JSON.parse(String(e.json)).seq as number);
