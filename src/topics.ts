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
  // A scan of both strings, level by level, without splitting them: this runs for every PUBLISH
  // (rights, schema registry), and two arrays of substrings per call were a measurable share of
  // the ingest's garbage (issue 14).
  let f = 0;
  let t = 0;
  for (;;) {
    const fEnd = levelEnd(filter, f);
    const fLen = fEnd - f;
    if (fLen === 1 && filter.charCodeAt(f) === HASH) return true;
    if (t > topic.length) return false; // the topic has no level here
    const tEnd = levelEnd(topic, t);
    const plus = fLen === 1 && filter.charCodeAt(f) === PLUS;
    if (!plus && (fLen !== tEnd - t || !sameLevel(filter, f, topic, t, fLen))) return false;
    if (fEnd === filter.length) return tEnd === topic.length;
    f = fEnd + 1;
    t = tEnd + 1;
  }
}

const SLASH = 0x2f;
const PLUS = 0x2b;
const HASH = 0x23;

/** Index of the `/` that ends the level starting at `from`, or the string's length. */
function levelEnd(text: string, from: number): number {
  const i = text.indexOf('/', from);
  return i < 0 ? text.length : i;
}

/** True when `len` characters of `a` at `i` equal those of `b` at `j`. */
function sameLevel(a: string, i: number, b: string, j: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (a.charCodeAt(i + k) !== b.charCodeAt(j + k)) return false;
  return true;
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
  const plus = wildcardIndex(filter);
  if (plus < 0) return undefined;
  // The topic's level at the same depth as the filter's `+`.
  let depth = 0;
  for (let i = 0; i < plus; i++) if (filter.charCodeAt(i) === SLASH) depth++;
  let start = 0;
  for (; depth > 0; depth--) {
    const slash = topic.indexOf('/', start);
    if (slash < 0) return undefined;
    start = slash + 1;
  }
  return topic.slice(start, levelEnd(topic, start));
}

/** Index of the first level of `filter` that is `+`, or -1. */
function wildcardIndex(filter: string): number {
  for (let i = filter.indexOf('+'); i >= 0; i = filter.indexOf('+', i + 1)) {
    const alone =
      (i === 0 || filter.charCodeAt(i - 1) === SLASH) &&
      (i + 1 === filter.length || filter.charCodeAt(i + 1) === SLASH);
    if (alone) return i;
  }
  return -1;
}
