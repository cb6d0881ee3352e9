/**
 * Room: shared. JSON logs on stdout (pino). One root logger per process; modules take a child with their name so
 * every line says where it came from.
 */
import { type Logger, pino } from 'pino';

export type { Logger };

/** @example const log = createLogger('info').child({ module: 'broker' }); */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** Logs a message once per burst: the first occurrence, then a summary every `intervalMs`. */
export class BurstLogger {
  private suppressed = 0;
  private lastAt = 0;
  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 30_000,
  ) {}

  /** Returns true when the caller's line was written. */
  error(obj: object, msg: string): boolean {
    const now = Date.now();
    if (now - this.lastAt < this.intervalMs) {
      this.suppressed++;
      return false;
    }
    this.log.error({ ...obj, suppressed: this.suppressed }, msg);
    this.suppressed = 0;
    this.lastAt = now;
    return true;
  }

  /** The burst is over: next failure logs again at once. */
  reset(): void {
    this.lastAt = 0;
    this.suppressed = 0;
  }
}
