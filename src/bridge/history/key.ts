/**
 * Room: bridge/history. The ordering key of the history store: the one ordering of every streamed event (contract §5:
 * "one ordering for all feeds"), in a form both live brokers' cursors map onto.
 *
 * A key is a pair of non-negative safe integers `(major, minor)`, compared major first:
 * - memory broker (one instance): cursor `<epoch>-<position>` → `(position, 0)`. The epoch names the
 *   key space: the store keeps it in its data directory, and positions continue across restarts
 *   (see `engine.ts`, "reservation"), so a cursor from before a restart still resumes.
 * - Redis broker (cluster): cursor = stream ID `<ms>-<seq>` → `(ms, seq)`. The key space is the
 *   stream (its Redis and key), which all instances share.
 * A store holds keys of one key space only (its `meta` file says which); cursors of another space are
 * unknown, which the caller answers with `gap`.
 */

export interface HistoryKey {
  readonly major: number;
  readonly minor: number;
}

/** Which broker assigns keys: this process (`local`, memory broker) or a shared stream (`external`). */
export type KeySpace =
  | { readonly type: 'local' }
  | {
      readonly type: 'external';
      /** Identity of the stream, e.g. `redis://host:6379/0 telebridge:live:stream`; a change resets the store. */
      readonly stream: string;
    };

export function compareKeys(a: HistoryKey, b: HistoryKey): number {
  return a.major - b.major || a.minor - b.minor;
}

const LOCAL_CURSOR_RE = /^([0-9a-z]{1,32})-([0-9]{1,15})$/;
const STREAM_ID_RE = /^([0-9]{1,15})-([0-9]{1,15})$/;

/**
 * The key of a cursor string, or undefined when it is malformed or of another key space (another
 * epoch: the cursor was issued before the store was reset, or by another instance).
 * @param epoch the store's epoch (local key space); undefined for stream IDs
 */
export function parseCursor(text: string, epoch: string | undefined): HistoryKey | undefined {
  if (epoch !== undefined) {
    const m = LOCAL_CURSOR_RE.exec(text);
    return m && m[1] === epoch ? { major: Number(m[2]), minor: 0 } : undefined;
  }
  const m = STREAM_ID_RE.exec(text);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

/** The cursor string of a key: `<epoch>-<major>` (local) or `<major>-<minor>` (stream ID). */
export function formatCursor(key: HistoryKey, epoch: string | undefined): string {
  return epoch !== undefined ? `${epoch}-${key.major}` : `${key.major}-${key.minor}`;
}
