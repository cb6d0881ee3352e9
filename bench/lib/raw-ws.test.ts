import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { WebSocketServer } from 'ws';
import { waitFor } from '../../test/support/wait.js';
import { FrameSplitter, jsonNumberAfter, rawWebSocket } from './raw-ws.js';

test('raw client: handshake, subprotocol, frames of every length class, pings, masked sends', async (t) => {
  const http = createServer();
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false, handleProtocols: () => 'p1' });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    wss.close();
    http.close();
  });
  const fromClient: string[] = [];
  let pongs = 0;
  const payloads = [
    '{"seq":1}',
    'x'.repeat(125),
    'y'.repeat(126),
    'z'.repeat(70_000),
    '{"type":"telemetry","seq":123456}',
  ];
  wss.on('connection', (ws, req) => {
    assert.equal(req.url, '/live?token=abc');
    assert.equal(ws.protocol, 'p1');
    ws.on('message', (data) => fromClient.push(String(data)));
    ws.on('pong', () => pongs++);
    ws.ping();
    for (const p of payloads) ws.send(p);
  });
  const got: string[] = [];
  const port = (http.address() as AddressInfo).port;
  const ws = await rawWebSocket(
    { host: '127.0.0.1', port, path: '/live?token=abc', protocol: 'p1' },
    (b, s, e) => got.push(b.toString('utf8', s, e)),
  );
  ws.send('hello');
  ws.send('w'.repeat(300));
  await waitFor(
    'frames, client messages and the pong',
    () => got.length === payloads.length && fromClient.length === 2 && pongs === 1,
  );
  assert.deepEqual(got, payloads);
  assert.deepEqual(fromClient, ['hello', 'w'.repeat(300)]);
  ws.terminate();
  assert.equal(ws.closed, true);
});

test('raw client: a refused upgrade rejects with the status line', async (t) => {
  const http = createServer((_req, res) => {
    res.writeHead(401);
    res.end();
  });
  http.on('upgrade', (_req, socket) => socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n'));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.after(() => http.close());
  const port = (http.address() as AddressInfo).port;
  await assert.rejects(
    rawWebSocket({ host: '127.0.0.1', port, path: '/live' }, () => {}),
    /401 Unauthorized/,
  );
});

test('FrameSplitter: frames split at every byte boundary come out whole and in order', () => {
  const frame = (text: string) => {
    const body = Buffer.from(text);
    const len = body.length;
    const head = len < 126 ? Buffer.from([0x81, len]) : Buffer.from([0x81, 126, len >> 8, len & 0xff]);
    return Buffer.concat([head, body]);
  };
  const texts = ['{"seq":7}', 'a'.repeat(200), '{}'];
  const wire = Buffer.concat(texts.map(frame));
  for (let cut = 1; cut < wire.length; cut++) {
    const out: string[] = [];
    const s = new FrameSplitter(
      (b, st, en) => out.push(b.toString('utf8', st, en)),
      () => assert.fail('no control frames sent'),
    );
    s.push(wire, cut, 0);
    const tail = Buffer.concat([wire.subarray(cut), Buffer.from('junk past the length')]);
    s.push(tail, wire.length - cut, 0);
    assert.deepEqual(out, texts, `cut at ${cut}`);
  }
  const masked = Buffer.from([0x81, 0x81, 0, 0, 0, 0, 0x61]);
  assert.throws(
    () =>
      new FrameSplitter(
        () => {},
        () => {},
      ).push(masked, masked.length, 0),
    /masked/,
  );
  const fragment = Buffer.from([0x01, 1, 0x61]);
  assert.throws(
    () =>
      new FrameSplitter(
        () => {},
        () => {},
      ).push(fragment, fragment.length, 0),
    /fragmented/,
  );
});

test('jsonNumberAfter reads only inside the frame', () => {
  const key = Buffer.from('"seq":');
  const buf = Buffer.from('{"a":1}{"seq":42,"x":1}{"seq":');
  assert.equal(jsonNumberAfter(buf, 7, 23, key), 42);
  assert.equal(jsonNumberAfter(buf, 0, 7, key), -1); // the next frame's key does not count
  assert.equal(jsonNumberAfter(buf, 23, buf.length, key), -1); // no digits
});
