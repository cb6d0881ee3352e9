/**
 * Room: bridge/history. A counting semaphore: at most `max` reads of the store at once, the others
 * queued in order (the worker's engine, and the main thread's resume reads in live/history-source.ts).
 */
export class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}

  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await f();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}
