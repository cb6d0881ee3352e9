/**
 * The connection caps: counted in at admission, out once at the connection's close.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { ConnectionLimiter } from './connection-limiter.js';

test('per-address and total caps; a close releases its connection once, and only an admitted one', () => {
  const limiter = new ConnectionLimiter(3, 2);
  const conns = Array.from({ length: 4 }, () => new PassThrough());
  assert.equal(limiter.admit(conns[0]!, '10.0.0.1'), true);
  assert.equal(limiter.admit(conns[1]!, '10.0.0.1'), true);
  assert.equal(limiter.admit(conns[2]!, '10.0.0.1'), false, 'over the per-address cap');
  assert.equal(limiter.admit(conns[3]!, '10.0.0.2'), true);
  assert.equal(limiter.open, 3);
  const refused = new PassThrough();
  assert.equal(limiter.admit(refused, '10.0.0.3'), false, 'over the total cap');
  refused.emit('close');
  conns[2]!.emit('close');
  assert.equal(limiter.open, 3, 'a refused connection releases nothing');

  conns[0]!.emit('close');
  conns[0]!.emit('close');
  assert.equal(limiter.open, 2, 'released once');
  assert.equal(limiter.admit(new PassThrough(), '10.0.0.1'), true);
  assert.equal(limiter.admit(new PassThrough(), '10.0.0.1'), false);
});
