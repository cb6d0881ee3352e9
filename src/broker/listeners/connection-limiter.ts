/**
 * Room: broker. Caps on connections in total and per remote address, shared by every listener (TCP, TLS,
 * WebSocket), checked before any byte of a new connection is read. 0 means unlimited.
 */
import type { Duplex } from 'node:stream';

/** Where an admitted connection keeps what its close releases (undefined once released). */
const kAdmitted = Symbol('telebridge.limiter.admitted');
type Admitted = Duplex & { [kAdmitted]?: { limiter: ConnectionLimiter; key: string } | undefined };

function releaseAdmitted(this: Admitted): void {
  const admitted = this[kAdmitted];
  if (!admitted) return;
  this[kAdmitted] = undefined;
  admitted.limiter.release(admitted.key);
}

export class ConnectionLimiter {
  private total = 0;
  private readonly perAddress = new Map<string, number>();

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerAddress: number,
  ) {}

  /**
   * Counts the connection in and releases it when `conn` closes; false (nothing counted) when over a
   * cap. The 'close' listener is one shared function and `conn` carries what it releases: a closure
   * per connection would be ~0.1 KiB of every idle one.
   */
  admit(conn: Duplex, address: string | undefined): boolean {
    const key = address ?? 'unknown';
    const count = this.perAddress.get(key) ?? 0;
    if (this.maxTotal > 0 && this.total >= this.maxTotal) return false;
    if (this.maxPerAddress > 0 && count >= this.maxPerAddress) return false;
    this.total++;
    this.perAddress.set(key, count + 1);
    const admitted = conn as Admitted;
    admitted[kAdmitted] = { limiter: this, key };
    // `on`, not `once`: a stream closes once, and `once` allocates a wrapper per connection.
    conn.on('close', releaseAdmitted);
    return true;
  }

  /** @internal */
  release(key: string): void {
    this.total--;
    const left = (this.perAddress.get(key) ?? 1) - 1;
    if (left <= 0) this.perAddress.delete(key);
    else this.perAddress.set(key, left);
  }

  get open(): number {
    return this.total;
  }
}
