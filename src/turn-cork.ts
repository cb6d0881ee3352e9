/**
 * Room: shared. One write per socket per event-loop turn for fan-out: a socket written to during a
 * turn stays corked until the turn's check phase (`setImmediate`), so every message a busy turn
 * fans out to it leaves in one `writev` instead of one system call per message, and an idle turn adds
 * no delay (the check phase follows the poll phase that did the writing). Used by `/live` and by MQTT
 * delivery; writes keep their order whatever is corked (a Writable buffers in order).
 */
import type { Writable } from 'node:stream';

/** Streams corked in this turn, each at most once: bounded by the open connections. */
const corked: Writable[] = [];

function uncorkAll(): void {
  // By index: a stream corked while this runs (an uncork's write cannot, but be safe) is uncorked too.
  for (let i = 0; i < corked.length; i++) corked[i]!.uncork();
  corked.length = 0;
}

/**
 * Corks `stream` until the end of this event-loop turn, unless it is corked already: `ws` and
 * mqtt-packet cork only around their own writes (ws within one call, mqtt-packet until the next
 * tick), so a stream that is still corked is one of this turn's, or is flushed within the tick.
 */
export function corkForTurn(stream: Writable): void {
  if (stream.writableCorked > 0) return;
  stream.cork();
  if (corked.push(stream) === 1) setImmediate(uncorkAll);
}
