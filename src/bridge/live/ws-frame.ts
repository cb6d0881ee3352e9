/**
 * Room: bridge/live. WebSocket framing for the fan-out: a streamed message is framed once (src/ws-frame.ts, text
 * opcode) and the same bytes are written to every connection that did not negotiate
 * permessage-deflate: exactly what `ws` writes for `send(json, { binary: false })`.
 */
import { WS_TEXT, wsFrame } from '../../ws-frame.js';
import type { LiveEvent } from './broker.js';

/** One unmasked final text frame holding `payload` (UTF-8 JSON). */
export function textFrame(payload: Buffer): Buffer {
  return wsFrame(payload, WS_TEXT);
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
