/**
 * Room: broker. The per-client publish rate (`BRIDGE_DEVICE_RATE` a second, burst `BRIDGE_DEVICE_BURST`), as
 * contract §3 has it: "Rate limits never lose what was acknowledged".
 *
 * QoS 1 and 2 are slowed, never dropped: a message over the rate waits here for its token before the
 * broker goes on with it, so its PUBACK (PUBREC) leaves at the allowed rate. While any waits, the
 * connection is held: its reader (Aedes: `conn.read(null)` on 'readable') gets nothing more, the
 * stream's buffer fills to its high-water mark, the socket stops reading (WebSocket: guard.ts pauses
 * `ws` too), and the device's own send queue holds the rest. Aedes's own pause between reads (it
 * reads the next chunk once every packet of the last one is handled, `nextBatch` in
 * aedes/lib/client.js) is not enough: every 'readable' event also counts as a handled packet there,
 * so a device sending small packets one by one (a frame each over WebSocket) would be read on.
 * What waits here is thus at most one read's packets; `MAX_WAITING` bounds it beyond that.
 *
 * QoS 0 has no acknowledgement and the sender asked for at most once: over the rate it is dropped
 * (the caller counts it as `rate_limited`), and a client whose messages are dropped
 * `FLOOD_DISCONNECT_AFTER` times in a row is a flood, which the caller disconnects.
 *
 * Transport policy only: no schema, storage or Aedes types, so an adapter in front of any ingest
 * port can use it.
 */
import type { Readable } from 'node:stream';
import { TokenBucket } from '../rate-limit.js';
import { holdReads, releaseReads } from './aedes-internals.js';

/** QoS 0 messages dropped in a row (nothing let through in between) that make a client a flood. */
export const FLOOD_DISCONNECT_AFTER = 100;

/**
 * Most messages one connection may have waiting. Far above one read's worth (a 64 KiB socket read
 * plus a 16 KiB stream buffer of ~25-byte PUBLISH packets is ~3 300), so it only trips when a
 * transport did not stop reading: then the connection is closed, unacknowledged, rather than
 * queueing without end.
 */
export const MAX_WAITING = 10_000;

export type Admission = 'pass' | 'drop' | 'flood';
export type Paced = 'now' | 'waits' | 'overflow';

interface Waiting {
  /** When its token is earned (the bucket's clock, ms). */
  readonly due: number;
  readonly go: () => void;
}

/** One connection's rate: made at its first limited PUBLISH, closed when it goes. */
export class PublishPace {
  private held = false;
  private readonly bucket: TokenBucket;
  /** Oldest first from `head` on; due times only grow, so `waiting[head]` is always the next one. */
  private readonly waiting: (Waiting | undefined)[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private droppedInARow = 0;
  private closed = false;

  /**
   * @param conn the connection's inbound stream, held while messages wait; its consumer must pull
   *   with `read()` when it emits 'readable' (paused mode), as Aedes does.
   */
  constructor(
    rate: number,
    burst: number,
    private readonly conn: Readable,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.bucket = new TokenBucket(rate, burst, now);
  }

  /**
   * QoS 1/2: calls `go` when this message's token is earned, after every message that came before
   * it (one queue per connection keeps the order it was sent in, [MQTT-4.6.0-6]). 'now': `go` ran
   * already; 'waits': it runs later (unless `close` comes first); 'overflow': it never runs, the
   * caller closes the connection.
   */
  pace(go: () => void): Paced {
    if (this.closed || this.backlog >= MAX_WAITING) return 'overflow';
    // Borrowed, not taken: a message behind others gets the slot after theirs, and slots keep
    // their spacing however late the timer fires.
    const wait = this.bucket.borrow();
    if (wait === 0 && this.backlog === 0) {
      this.droppedInARow = 0;
      go();
      return 'now';
    }
    this.waiting.push({ due: this.now() + wait, go });
    if (!this.held) this.hold();
    if (!this.timer) this.schedule();
    return 'waits';
  }

  /** QoS 0: 'pass' (a token was there), 'drop', or 'flood' (dropped, and one too many in a row). */
  admit(): Admission {
    // Never ahead of QoS 1/2 messages waiting for their tokens (they hold the bucket in debt).
    if (this.backlog === 0 && this.bucket.take()) {
      this.droppedInARow = 0;
      return 'pass';
    }
    if (++this.droppedInARow < FLOOD_DISCONNECT_AFTER) return 'drop';
    this.droppedInARow = 0;
    return 'flood';
  }

  /** Messages waiting for their token. */
  get backlog(): number {
    return this.waiting.length - this.head;
  }

  /** The connection is gone: what waits is never run (it was never acknowledged either). */
  close(): void {
    this.closed = true;
    if (this.held) releaseReads(this.conn, false);
    this.waiting.length = 0;
    this.head = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Its reader gets nothing; refills of the buffer go on (aedes-internals.ts). */
  private hold(): void {
    this.held = true;
    holdReads(this.conn);
  }

  /** Reads again: the reader pulls what was buffered meanwhile. */
  private unhold(): void {
    this.held = false;
    releaseReads(this.conn);
  }

  private schedule(): void {
    const next = this.waiting[this.head];
    if (!next) return;
    this.timer = setTimeout(releaseDue, Math.max(0, Math.ceil(next.due - this.now())), this);
  }

  /** Runs every message whose token is earned, then waits for the next. */
  release(): void {
    this.timer = undefined;
    const t = this.now();
    const { waiting } = this;
    while (!this.closed && this.head < waiting.length && waiting[this.head]!.due <= t) {
      const { go } = waiting[this.head]!;
      // Advanced before `go`: it may close this pace (its connection went meanwhile).
      waiting[this.head++] = undefined;
      this.droppedInARow = 0;
      go();
    }
    if (this.closed) return;
    if (this.head === waiting.length) {
      waiting.length = 0;
      this.head = 0;
      this.unhold();
    } else if (this.head >= 1024) {
      waiting.splice(0, this.head);
      this.head = 0;
    }
    if (!this.timer) this.schedule();
  }
}

function releaseDue(pace: PublishPace): void {
  pace.release();
}
