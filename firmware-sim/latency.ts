/**
 * A small mergeable latency histogram: logarithmic buckets 5 % wide from 0.05 ms to ~2 h, so p50/p99
 * stay within 5 % whatever the count, in constant memory, and workers can send theirs to the main
 * thread as a plain array to be added up.
 */
const MIN_MS = 0.05;
const GROWTH = 1.05;
const BUCKETS = 400; // 0.05 * 1.05^400 ≈ 1.5e7 ms

export class LatencyHistogram {
  readonly counts: number[];
  total = 0;

  constructor(counts?: readonly number[]) {
    this.counts = counts ? [...counts] : new Array<number>(BUCKETS).fill(0);
    this.total = this.counts.reduce((a, b) => a + b, 0);
  }

  record(ms: number): void {
    const i = ms <= MIN_MS ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(ms / MIN_MS) / Math.log(GROWTH)));
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.total++;
  }

  merge(other: { readonly counts: readonly number[] }): void {
    for (let i = 0; i < BUCKETS; i++) {
      const c = other.counts[i] ?? 0;
      this.counts[i] = (this.counts[i] ?? 0) + c;
      this.total += c;
    }
  }

  /** The q-quantile (0..1), ms (upper edge of its bucket); undefined when empty. */
  quantile(q: number): number | undefined {
    if (this.total === 0) return undefined;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return MIN_MS * GROWTH ** i;
    }
    return MIN_MS * GROWTH ** (BUCKETS - 1);
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
  }
}
