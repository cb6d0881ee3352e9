/**
 * Room: shared. Live feeds and feed filters (contract §5). A feed is `telemetry/<device>` or `status/<device>`;
 * a filter is an MQTT topic filter (`+` one level, `#` the rest, including the parent level) over
 * that two-level space.
 *
 * Because every feed has exactly two levels, every valid filter normalises to one pattern
 * `(kind | any, device | any)`: `#`, `+/#` and `+/+` are the same filter; `telemetry/#` is
 * `telemetry/+`; `telemetry/d1/#` is `telemetry/d1` (MQTT's `#` also matches its parent level).
 * Matching and scope checks are then exact and cheap, with no MQTT corner cases left over.
 */
import { DEVICE_ID_RE } from './topics.js';

export type FeedKind = 'telemetry' | 'status';

export const FEED_KINDS: readonly FeedKind[] = ['telemetry', 'status'];

/** A normalised filter: `undefined` stands for "any" (`+` or `#`). */
export interface FeedPattern {
  readonly kind: FeedKind | undefined;
  readonly device: string | undefined;
}

/** The longest filter string accepted (a device id is at most 64 characters). */
const MAX_FILTER_LENGTH = 128;

/**
 * Parses a feed filter into its pattern, or returns a reason why it is not one. Refused: empty,
 * invalid MQTT filters (`a#`, `#/x`, `te+`), unknown kinds, invalid device ids, and filters that can
 * match no feed (`telemetry`, `telemetry/d1/x`).
 * @example parseFeedFilter('telemetry/+') // { kind: 'telemetry', device: undefined }
 */
export function parseFeedFilter(filter: string): FeedPattern | { error: string } {
  if (typeof filter !== 'string' || filter.length === 0 || filter.length > MAX_FILTER_LENGTH) {
    return { error: 'a feed filter is a non-empty string of at most 128 characters' };
  }
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return { error: `'${filter}': '#' must be alone in the last level` };
    }
    if (level.includes('+') && level !== '+') return { error: `'${filter}': '+' must be alone in its level` };
  }
  // Drop a trailing '#' that follows a complete feed (it matches the parent level, i.e. the feed itself).
  if (levels.length === 3 && levels[2] === '#') levels.pop();
  if (levels.length > 2) return { error: `'${filter}': feeds have two levels, <kind>/<device>` };
  const [first, second] = levels as [string, string | undefined];
  if (first === '#') return { kind: undefined, device: undefined };
  if (second === undefined) return { error: `'${filter}' matches no feed: use '${first}/+' or '${first}/#'` };
  let kind: FeedKind | undefined;
  if (first === '+') kind = undefined;
  else if (first === 'telemetry' || first === 'status') kind = first;
  else return { error: `'${filter}': the feed kind is 'telemetry' or 'status'` };
  if (second === '+' || second === '#') return { kind, device: undefined };
  if (!DEVICE_ID_RE.test(second)) return { error: `'${filter}': '${second}' is not a valid device id` };
  return { kind, device: second };
}

export function isFeedPattern(value: FeedPattern | { error: string }): value is FeedPattern {
  return !('error' in value);
}

/** True when the feed of `kind` and `device` matches the pattern. */
export function patternMatches(pattern: FeedPattern, kind: FeedKind, device: string): boolean {
  return (
    (pattern.kind === undefined || pattern.kind === kind) &&
    (pattern.device === undefined || pattern.device === device)
  );
}

/** True when every feed matched by `inner` is matched by `outer` (the token scope check). */
export function patternCovers(outer: FeedPattern, inner: FeedPattern): boolean {
  return (
    (outer.kind === undefined || outer.kind === inner.kind) &&
    (outer.device === undefined || outer.device === inner.device)
  );
}

/** True when one of the scope's patterns covers `requested`. */
export function scopeCovers(scope: readonly FeedPattern[], requested: FeedPattern): boolean {
  return scope.some((outer) => patternCovers(outer, requested));
}

/** The feed name of a kind and device, e.g. `telemetry/d1`. */
export function feedName(kind: FeedKind, device: string): string {
  return `${kind}/${device}`;
}
