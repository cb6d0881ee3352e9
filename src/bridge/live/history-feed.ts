/**
 * Room: bridge/live. The history store fed from the live broker's stream (issue 15): every event the
 * broker streams, keyed by its cursor, by its fields — the store never needs the JSON built for
 * browsers. In cluster mode every instance stores every event its reader reads from the Redis
 * stream, and tells the store where that stream is continuous (broker-redis.ts, StreamHistory).
 */
import type { StatusBody, TelemetryBody } from '../../../web/client/protocol.js';
import { formatCursor, parseCursor } from '../history/key.js';
import type { HistoryStore } from '../history/store.js';
import type { LiveEvent } from './broker.js';
import type { StreamHistory } from './broker-redis.js';

export class HistoryFeed implements StreamHistory {
  constructor(private readonly store: HistoryStore) {}

  /** The newest stream ID the store holds (Redis key space). */
  get resumeAfter(): string | undefined {
    const newest = this.store.info.newestKey;
    return newest && this.store.epoch === undefined ? formatCursor(newest, undefined) : undefined;
  }

  /** A broker listener: appends the event (never waits, never throws). */
  readonly append = (e: LiveEvent): void => {
    const { kind, device, time } = e;
    const fields = e.fields;
    if (typeof fields === 'string') {
      this.store.append({ kind, device, key: e.key, time, json: fields });
    } else if (kind === 'telemetry') {
      const t = fields as TelemetryBody;
      this.store.append({ kind, device, key: e.key, time, seq: t.seq, values: t.values, labels: t.labels });
    } else {
      const s = fields as StatusBody;
      this.store.append({ kind, device, key: e.key, time, state: s.state, firmware: s.firmware });
    }
  };

  continueAfter(id: string): void {
    const key = parseCursor(id, undefined);
    if (key) this.store.continueAfter(key);
  }

  breakContinuity(): void {
    this.store.breakContinuity();
  }
}
