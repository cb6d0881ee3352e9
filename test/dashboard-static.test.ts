// The dashboard's static files (src/broker/listeners/static.ts) over a real HTTP server: content types,
// caching, 404 under /assets/, false for paths it does not own, and no directory traversal.
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDashboardHandler, defaultRoots } from '../src/broker/listeners/static.js';
import { tempDir } from './support/services.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request with the path sent byte for byte (fetch would normalise `..` away). */
function raw(
  port: number,
  path: string,
  method = 'GET',
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

async function listen(
  handler: ReturnType<typeof createDashboardHandler>,
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (!handler(req, res)) {
      res.writeHead(418);
      res.end('not mine');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

describe('dashboard static files (temporary roots)', () => {
  let dir: string;
  let server: Server;
  let port: number;

  before(async () => {
    dir = tempDir('static');
    const web = join(dir, 'pkg', 'web');
    const compiled = join(dir, 'pkg', 'dist', 'web');
    mkdirSync(join(web, 'dashboard'), { recursive: true });
    mkdirSync(join(compiled, 'dashboard'), { recursive: true });
    writeFileSync(join(web, 'index.html'), '<!doctype html><title>t</title>');
    writeFileSync(join(web, 'dashboard', 'dashboard.css'), 'body{}');
    writeFileSync(join(web, 'dashboard', 'main.ts'), 'secret source');
    writeFileSync(join(compiled, 'dashboard', 'main.js'), 'export {};');
    writeFileSync(join(dir, 'pkg', 'secret.css'), 'SECRET');
    writeFileSync(join(dir, 'secret.js'), 'SECRET');
    const handler = createDashboardHandler({
      webDir: web,
      compiledDir: compiled,
      uplotDir: defaultRoots().uplotDir,
    });
    ({ server, port } = await listen(handler));
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves / as HTML with no-cache, a CSP and an ETag; revalidation answers 304', async () => {
    const page = await raw(port, '/?token=abc');
    assert.equal(page.status, 200);
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(page.headers['cache-control'], 'no-cache');
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.match(page.body, /<title>t<\/title>/);
    const etag = String(page.headers['etag']);
    const again = await raw(port, '/', 'GET', { 'If-None-Match': etag });
    assert.equal(again.status, 304);
    assert.equal(again.body, '');
    const head = await raw(port, '/index.html', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  it('serves compiled modules and CSS with their content types', async () => {
    const js = await raw(port, '/assets/dashboard/main.js');
    assert.equal(js.status, 200);
    assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(js.body, 'export {};');
    const css = await raw(port, '/assets/dashboard/dashboard.css');
    assert.equal(css.status, 200);
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
  });

  it("serves uPlot's ES module and CSS from the installed package", async () => {
    const js = await raw(port, '/assets/vendor/uPlot.esm.js');
    assert.equal(js.status, 200);
    assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.match(js.body, /export \{ uPlot as default \}/);
    const css = await raw(port, '/assets/vendor/uPlot.min.css');
    assert.equal(css.status, 200);
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
    assert.equal(
      (await raw(port, '/assets/vendor/uPlot.cjs.js')).status,
      404,
      'only the listed vendor files',
    );
  });

  it('404 for unknown assets, TypeScript sources and directories under /assets/', async () => {
    for (const path of [
      '/assets/nope.js',
      '/assets/dashboard/main.ts',
      '/assets/dashboard/',
      '/assets/',
      '/assets/dashboard',
    ]) {
      const answer = await raw(port, path);
      assert.equal(answer.status, 404, path);
    }
  });

  it('refuses every traversal attempt with 404 and never leaks a file outside its root', async () => {
    const attempts = [
      '/assets/../secret.css',
      '/assets/../../secret.js',
      '/assets/dashboard/../../secret.css',
      '/assets/..%2fsecret.css',
      '/assets/..%2f..%2fsecret.js',
      '/assets/%2e%2e/%2e%2e/secret.js',
      '/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.js',
      '/assets/..%5c..%5csecret.js',
      '/assets/vendor/../../../package.json',
      '/assets/vendor/..%2f..%2fpackage.json',
      '/assets/dashboard/main.js%00.css',
      '/assets/%',
    ];
    for (const path of attempts) {
      const answer = await raw(port, path);
      assert.ok(answer.status === 404 || answer.status === 418, `${path}: ${answer.status}`);
      assert.doesNotMatch(answer.body, /SECRET|"name"/, path);
    }
  });

  it('returns false for paths it does not own, 405 for other methods on its own', async () => {
    for (const path of ['/live', '/metrics', '/healthz', '/assetsx/a.js', '/index.htm']) {
      assert.equal((await raw(port, path)).status, 418, path);
    }
    const post = await raw(port, '/', 'POST');
    assert.equal(post.status, 405);
    assert.equal(post.headers['allow'], 'GET, HEAD');
  });
});

describe('dashboard static files (package roots)', () => {
  it("finds the package's web/ and serves the real page and uPlot", async () => {
    const { server, port } = await listen(createDashboardHandler());
    try {
      const page = await raw(port, '/');
      assert.equal(page.status, 200);
      assert.match(page.body, /\/assets\/dashboard\/main\.js/);
      assert.equal((await raw(port, '/assets/dashboard/dashboard.css')).status, 200);
      assert.equal((await raw(port, '/assets/vendor/uPlot.esm.js')).status, 200);
    } finally {
      server.close();
    }
  });
});
