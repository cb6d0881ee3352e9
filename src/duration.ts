/**
 * Room: shared. Durations as people write them: a whole number and a unit, `ms`, `s`, `m`, `h` or
 * `d` (`500ms`, `90s`, `1h`, `7d`), as InfluxQL and Prometheus write them. Read by the
 * BRIDGE_HISTORY_* variables, `/live`'s `history` and `/api/history`'s `step`; written back in the
 * largest unit that divides the value.
 */

const DURATION_RE = /^([0-9]{1,15})(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** The duration in ms, or undefined when `text` is not one (`0` alone is accepted: zero). */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const m = DURATION_RE.exec(text);
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** `90000` → `90s`, `3600000` → `1h`: the largest unit that divides `ms` exactly. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
