/**
 * Room: shared. A token bucket: `rate` tokens a second, at most `burst` saved up. Time is read lazily on `take`,
 * so an idle bucket costs nothing. Shared by the device publish pacing (src/broker/publish-rate.ts)
 * and the live channel's inbound limit.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.tokens = burst;
    this.last = this.now();
  }

  /** Takes `n` tokens if there are that many; false (and nothing taken) otherwise. */
  take(n = 1): boolean {
    this.refill();
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /**
   * Takes `n` tokens whether or not they are there: the bucket may go into debt, which later tokens
   * repay. Returns the milliseconds until the tokens taken are earned (0: they were there). Callers
   * that queue work for that moment get exact spacing however late their timers fire.
   */
  borrow(n = 1): number {
    this.refill();
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }
}
