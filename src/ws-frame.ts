/**
 * Room: shared. WebSocket framing for fan-out (RFC 6455 §5.2): a server's frames are unmasked, so one
 * message framed once can be written, as the same bytes, to every connection that did not negotiate
 * a compression extension. Used by `/live` (text frames of JSON) and `/mqtt` (binary frames of MQTT
 * packets). The frame is exactly what `ws`'s `Sender.frame` produces for an uncompressed final
 * frame, in one buffer instead of a header and the payload.
 */

/** RFC 6455 §5.2 opcodes of a data frame. */
export const WS_TEXT = 0x1;
export const WS_BINARY = 0x2;

/** One unmasked final frame (FIN, no RSV bits) with this opcode, holding `payload`. */
export function wsFrame(payload: Uint8Array, opcode: typeof WS_TEXT | typeof WS_BINARY): Buffer {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + len);
  frame[0] = 0x80 | opcode; // FIN | opcode
  if (head === 2) frame[1] = len;
  else if (head === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    frame.writeUInt32BE(len >>> 0, 6);
  }
  frame.set(payload, head);
  return frame;
}
