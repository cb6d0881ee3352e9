/**
 * Room: shared. MQTT topic names and filters (MQTT 3.1.1 §4.7): matching a topic against a filter, and whether one
 * filter covers another (every topic the inner one matches, the outer one matches too). Used for
 * device and user rights, the schema registry, and the live channel's feed scopes.
 */

/** A device id (contract §3); it is one topic level, so it holds no `/`, `+` or `#`. */
export const DEVICE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** True when `topic` matches `filter` (`+` one level, `#` the rest, including the parent level). */
export function topicMatches(filter: string, topic: string): boolean {
  // [MQTT-4.7.2-1] wildcards at the first level do not match topics that start with '$'.
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** True when every topic matched by `inner` is matched by `outer`. */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split('/');
  const n = inner.split('/');
  for (let i = 0; i < o.length; i++) {
    const level = o[i];
    if (level === '#') return !(i === 0 && n[0]?.startsWith('$'));
    if (i >= n.length) return false;
    const other = n[i];
    if (other === '#') return false;
    if (level === '+') {
      if (i === 0 && other?.startsWith('$')) return false;
      continue;
    }
    if (other === '+' || level !== other) return false;
  }
  return o.length === n.length;
}

/** A topic filter as MQTT 3.1.1 allows it: `#` last and alone in its level, `+` alone in its level. */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  return levels.every((level, i) => {
    if (level.includes('#')) return level === '#' && i === levels.length - 1;
    if (level.includes('+')) return level === '+';
    return true;
  });
}

/**
 * The level of `topic` that stands where `filter` has its first `+`, e.g. the device id of
 * `devices/d1/telemetry` under `devices/+/telemetry`. Undefined when the filter has no `+`.
 */
export function wildcardLevel(filter: string, topic: string): string | undefined {
  const index = filter.split('/').indexOf('+');
  return index < 0 ? undefined : topic.split('/')[index];
}
