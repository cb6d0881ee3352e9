/**
 * Browsers (issue 5, points 5 and 7) against the real bridge: an expired token, a revoked token and
 * a foreign Origin are refused on `/live` (no upgrade) and `/live/sse`; a connection whose token
 * expires while it is open is closed (1008).
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { openTokenService, type TokenService } from '../src/auth/tokens.js';
import { startTestBridge, type TestBridge } from './support/bridge.js';
import { waitEvent, waitFor } from './support/wait.js';

const ALLOWED = 'https://dash.example';
let t: TestBridge;
let tokens: TokenService;

before(async () => {
  t = await startTestBridge({ BRIDGE_ALLOWED_ORIGINS: ALLOWED, BRIDGE_LIVE_PING_MS: '250' });
  tokens = await openTokenService(t.dataDir);
});
after(() => t.close());

/** Opens /live; resolves 'open' or the HTTP status of the refused upgrade. */
async function upgrade(token: string, origin?: string): Promise<number | 'open'> {
  const ws = new WebSocket(`ws://127.0.0.1:${t.bridge.ports.http}/live?token=${encodeURIComponent(token)}`, {
    ...(origin ? { origin } : {}),
  });
  ws.on('error', () => {});
  return new Promise((resolve) => {
    ws.once('open', () => {
      ws.terminate();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
  });
}

async function sse(token: string, origin?: string): Promise<number> {
  const controller = new AbortController();
  const res = await fetch(
    `http://127.0.0.1:${t.bridge.ports.http}/live/sse?feeds=telemetry/%2B&token=${encodeURIComponent(token)}`,
    { headers: origin ? { origin } : {}, signal: controller.signal },
  );
  controller.abort();
  return res.status;
}

async function expiredToken(): Promise<string> {
  const { token, claims } = await tokens.create({ ttlSeconds: 1 });
  // Waits for the clock, not for the bridge: the token's own expiry (≤ 2 s).
  await waitFor('the token to expire', () => Date.now() / 1000 > claims.exp + 0.1, { timeoutMs: 5000 });
  return token;
}

test('a valid token from an allowed origin (or from a non-browser, no Origin) is let in', async () => {
  const { token } = await tokens.create();
  assert.equal(await upgrade(token, ALLOWED), 'open');
  assert.equal(await upgrade(token), 'open');
  assert.equal(await sse(token, ALLOWED), 200);
});

test('an expired token is refused: 401 on /live and /live/sse', async () => {
  const token = await expiredToken();
  assert.equal(await upgrade(token, ALLOWED), 401);
  assert.equal(await sse(token, ALLOWED), 401);
});

test('a revoked token is refused: 401 on /live and /live/sse', async () => {
  const { token } = await tokens.create();
  await tokens.revoke(token);
  assert.equal(await upgrade(token, ALLOWED), 401);
  assert.equal(await sse(token, ALLOWED), 401);
});

test('a foreign Origin is refused even with a valid token: 403 on /live and /live/sse', async () => {
  const { token } = await tokens.create();
  assert.equal(await upgrade(token, 'https://evil.example'), 403);
  assert.equal(await sse(token, 'https://evil.example'), 403);
  // Origins are compared exactly: scheme and port count.
  assert.equal(await upgrade(token, 'http://dash.example'), 403);
});

test('a garbage or forged token is refused', async () => {
  const { token } = await tokens.create();
  const [h, p, s] = token.split('.');
  const forged = `${h}.${Buffer.from(JSON.stringify({ feeds: ['#'], commands: true, exp: 4e9 })).toString('base64url')}.${s}`;
  assert.ok(p);
  for (const bad of ['x', forged, `${token}x`]) {
    assert.equal(await upgrade(bad, ALLOWED), 401);
    assert.equal(await sse(bad, ALLOWED), 401);
  }
});

test('an open /live connection is closed (1008) once its token expires', async () => {
  const { token } = await tokens.create({ ttlSeconds: 1 });
  const ws = new WebSocket(`ws://127.0.0.1:${t.bridge.ports.http}/live?token=${token}`, { origin: ALLOWED });
  ws.on('error', () => {});
  await waitEvent(ws, 'open');
  const [code] = await waitEvent(ws, 'close', 5000);
  assert.equal(code, 1008);
});
