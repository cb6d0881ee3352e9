/**
 * Rates for the dashboard header. DOM-free (unit-tested under Node).
 *
 * - Messages: counted from the stream itself (one `telemetry` message a sample), over a sliding
 *   window of one-second buckets.
 * - Rejections are not on any live feed (contract §5 has only telemetry and status), so the page
 *   reads the bridge's own counter `bridge_rejected_total` from `/metrics` (same origin) every few
 *   seconds and shows its rate; where `/metrics` is not reachable it shows "n/a".
 */

/** Events per second over the last `windowS` whole seconds. Memory: `windowS` numbers. */
export class RateMeter {
  private readonly buckets: number[];
  private currentSecond = 0;
  private firstSecond = 0;

  constructor(private readonly windowS = 10) {
    this.buckets = new Array<number>(windowS).fill(0);
  }

  add(count: number, nowMs: number): void {
    this.roll(nowMs);
    const i = this.currentSecond % this.windowS;
    this.buckets[i] = (this.buckets[i] ?? 0) + count;
  }

  /**
   * Per second, over the completed seconds of the window (the current partial second is excluded;
   * a meter younger than its window divides by the seconds it has seen).
   */
  rate(nowMs: number): number {
    this.roll(nowMs);
    const seconds = Math.min(this.windowS - 1, this.currentSecond - this.firstSecond);
    if (seconds <= 0) return 0;
    let sum = 0;
    for (let s = 1; s <= seconds; s++)
      sum += this.buckets[(this.currentSecond - s + this.windowS) % this.windowS] ?? 0;
    return sum / seconds;
  }

  private roll(nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    if (this.currentSecond === 0) {
      this.currentSecond = second;
      this.firstSecond = second;
    }
    const steps = Math.min(this.windowS, second - this.currentSecond);
    for (let s = 1; s <= steps; s++) this.buckets[(this.currentSecond + s) % this.windowS] = 0;
    if (second > this.currentSecond) this.currentSecond = second;
  }
}

/**
 * The sum of every `bridge_rejected_total{…}` sample in Prometheus text (0 when declared but not
 * yet counted), or undefined when the metric is absent (e.g. the text is not the bridge's).
 */
export function parseRejectedTotal(text: string): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith('bridge_rejected_total')) continue;
    const rest = line.slice('bridge_rejected_total'.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total = (total ?? 0) + value;
  }
  // A labelled counter with no sample yet shows only its HELP/TYPE lines: zero so far.
  if (total === undefined && text.includes('# TYPE bridge_rejected_total counter')) return 0;
  return total;
}

/** Rate between two readings of a counter; a counter reset (restart) gives 0, not a negative rate. */
export function counterRate(previous: { value: number; atMs: number }, value: number, atMs: number): number {
  const dt = (atMs - previous.atMs) / 1000;
  if (dt <= 0 || value < previous.value) return 0;
  return (value - previous.value) / dt;
}
