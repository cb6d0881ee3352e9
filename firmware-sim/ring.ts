/**
 * A bounded FIFO ring: pushing into a full ring drops the oldest item and counts it. This is the
 * device's offline buffer: memory on a device is fixed, and recent data is worth more than old data.
 */
export class Ring<T> {
  private readonly items: (T | undefined)[];
  private head = 0;
  private count = 0;
  /** Items dropped because the ring was full, since creation. */
  dropped = 0;

  /** @param capacity most items held at once (≥ 1). */
  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('ring capacity must be an integer ≥ 1');
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Appends; when full, the oldest item is dropped (and returned). */
  push(item: T): T | undefined {
    let evicted: T | undefined;
    if (this.count === this.capacity) {
      evicted = this.shift();
      this.dropped++;
    }
    this.items[(this.head + this.count) % this.capacity] = item;
    this.count++;
    return evicted;
  }

  /** Removes and returns the oldest item. */
  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return item;
  }

  /** Removes and returns up to `n` oldest items, oldest first. */
  take(n: number): T[] {
    const out: T[] = [];
    while (out.length < n && this.count > 0) out.push(this.shift() as T);
    return out;
  }

  /** Puts items back at the front (oldest end), in order, as long as there is room. Returns how many fit. */
  unshift(items: readonly T[]): number {
    let fitted = 0;
    for (let i = items.length - 1; i >= 0 && this.count < this.capacity; i--) {
      this.head = (this.head - 1 + this.capacity) % this.capacity;
      this.items[this.head] = items[i];
      this.count++;
      fitted++;
    }
    return fitted;
  }
}
