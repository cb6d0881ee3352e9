/**
 * Room: bridge/live. WebSocket framing for the fan-out: a streamed message is framed once (RFC 6455 §5.2: FIN, text
 * opcode, no mask from a server, no RSV bits) and the same bytes are written to every connection
 * that did not negotiate permessage-deflate. The frame is exactly what `ws`'s `Sender.frame`
 * produces for `send(json, { binary: false })`, in one buffer instead of a header and the payload.
 */
import type { LiveEvent } from './broker.js';

/** One unmasked final text frame holding `payload` (UTF-8 JSON). */
export function textFrame(payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + len);
  frame[0] = 0x81; // FIN | text
  if (head === 2) frame[1] = len;
  else if (head === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    frame.writeUInt32BE(len >>> 0, 6);
  }
  payload.copy(frame, head);
  return frame;
}

/**
 * The frame of the event being fanned out: one slot, because the fan-out hands one event to every
 * client before the next (a replay or a conflation flush in between only costs a rebuild).
 */
export class FrameCache {
  private event: LiveEvent | undefined;
  private frame: Buffer = Buffer.alloc(0);

  of(event: LiveEvent): Buffer {
    if (event !== this.event) {
      this.frame = textFrame(event.json);
      this.event = event;
    }
    return this.frame;
  }
}
