/** Text formatting for the dashboard, DOM-free (unit-tested under Node). */

/** "now", "12 s", "3 min", "2 h", "4 d" ago; "—" when never seen. */
export function lastSeenText(lastSeen: number | undefined, now: number): string {
  if (lastSeen === undefined) return '—';
  const s = Math.max(0, Math.round((now - lastSeen) / 1000));
  if (s < 2) return 'now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}
