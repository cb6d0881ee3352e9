import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as wsModule from 'ws';
import { WS_BINARY, WS_TEXT, wsFrame } from './ws-frame.js';

/** ws's own framing (exported, untyped): what `ws.send(data)` writes, uncompressed, from a server. */
const { Sender } = wsModule as unknown as {
  Sender: { frame(data: Buffer, options: Record<string, unknown>): Buffer[] };
};

test('wsFrame writes the bytes ws writes for a server message, text and binary, at every length class', () => {
  for (const opcode of [WS_TEXT, WS_BINARY] as const) {
    for (const len of [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]) {
      const payload = Buffer.alloc(len, 0x61);
      const expected = Buffer.concat(
        Sender.frame(payload, { fin: true, opcode, rsv1: false, mask: false, readOnly: false }),
      );
      assert.deepEqual(wsFrame(payload, opcode), expected, `opcode ${opcode}, length ${len}`);
    }
  }
});
