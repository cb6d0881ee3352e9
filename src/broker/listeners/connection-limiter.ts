/**
 * Room: broker. Caps on connections in total and per remote address, shared by every listener (TCP, TLS,
 * WebSocket), checked before any byte of a new connection is read. 0 means unlimited.
 */
export class ConnectionLimiter {
  private total = 0;
  private readonly perAddress = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerAddress: number,
  ) {}

  /** Counts the connection in and returns a release function, or undefined when over a cap. */
  admit(address: string | undefined): (() => void) | undefined {
    const key = address ?? 'unknown';
    const count = this.perAddress.get(key) ?? 0;
    if (this.maxTotal > 0 && this.total >= this.maxTotal) return undefined;
    if (this.maxPerAddress > 0 && count >= this.maxPerAddress) return undefined;
    this.total++;
    this.perAddress.set(key, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.perAddress.get(key) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(key);
      else this.perAddress.set(key, left);
    };
  }

  get open(): number {
    return this.total;
  }
}
