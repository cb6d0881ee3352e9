/**
 * Room: broker. The dashboard's files (issue 3 point 8): `GET /` is web/index.html; `/assets/…` are the compiled
 * browser modules (dist/web/…), the dashboard's CSS (web/…), and uPlot's ES module and CSS under
 * `/assets/vendor/` (served from the installed `uplot` package, so it works after `npm ci` with no
 * network and without a copy step).
 *
 * - Only GET and HEAD (405 otherwise); only files with an allowed extension; no directory listing.
 * - No traversal: every path is resolved and must stay inside its root (404 otherwise, the same
 *   answer as a missing file so probing learns nothing).
 * - `Cache-Control: no-cache` with a strong ETag (size + mtime): files are not content-hashed, so
 *   browsers revalidate (a cheap 304) and never run a stale dashboard after an upgrade.
 * - Files are read asynchronously, at most `MAX_FILE_BYTES` each.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { projectRoot } from '../../paths.js';

/** The URL prefix of every dashboard asset. */
export const ASSET_PREFIX = '/assets/';

/** Largest file served, bytes (uPlot's module is ~145 KB). */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** uPlot's files by their name under /assets/vendor/. */
const VENDOR_FILES: Readonly<Record<string, string>> = {
  'uPlot.esm.js': 'uPlot.esm.js',
  'uPlot.min.css': 'uPlot.min.css',
};

/**
 * The page's policy: scripts and styles from this origin only, WebSocket to this host (ws: and wss:
 * because 'self' does not cover them in every browser), nothing framed.
 */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'";

export interface DashboardRoots {
  /** Source folder with index.html and the CSS (the package's `web/`). */
  readonly webDir: string;
  /** Compiled browser modules (the package's `dist/web/`). */
  readonly compiledDir: string;
  /** uPlot's `dist/` folder; undefined when the package is not installed (vendor paths then 404). */
  readonly uplotDir: string | undefined;
}

/** The package's own folders (the same from src/ through tsx and from dist/). */
export function defaultRoots(): DashboardRoots {
  const dir = projectRoot();
  let uplotDir: string | undefined;
  try {
    uplotDir = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
  } catch {
    uplotDir = undefined;
  }
  return { webDir: join(dir, 'web'), compiledDir: join(dir, 'dist', 'web'), uplotDir };
}

export type DashboardHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

/**
 * A request handler for `/` and `/assets/…`: returns false (and does nothing) for other paths, true
 * when it answers.
 *
 * @example
 * const serveDashboard = createDashboardHandler();
 * http.createServer((req, res) => { if (!serveDashboard(req, res)) notFound(res); });
 */
export function createDashboardHandler(roots: DashboardRoots = defaultRoots()): DashboardHandler {
  const webDir = resolve(roots.webDir);
  const compiledDir = resolve(roots.compiledDir);
  const uplotDir = roots.uplotDir === undefined ? undefined : resolve(roots.uplotDir);

  return (req, res) => {
    const pathname = pathOf(req.url);
    if (pathname === undefined) return false;
    const isPage = pathname === '/' || pathname === '/index.html';
    if (!isPage && !pathname.startsWith(ASSET_PREFIX)) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return true;
    }
    const candidates = isPage
      ? [join(webDir, 'index.html')]
      : assetCandidates(pathname.slice(ASSET_PREFIX.length));
    void send(req, res, candidates, isPage);
    return true;
  };

  function assetCandidates(encoded: string): string[] {
    let rel: string;
    try {
      rel = decodeURIComponent(encoded);
    } catch {
      return [];
    }
    if (rel.includes('\0') || rel.includes('\\') || !(extname(rel) in CONTENT_TYPES)) return [];
    if (rel.startsWith('vendor/')) {
      const file = VENDOR_FILES[rel.slice('vendor/'.length)];
      return file && uplotDir ? [join(uplotDir, file)] : [];
    }
    // Compiled modules first, then sources (CSS, images). TypeScript sources never match: .ts is
    // not an allowed extension.
    return [inside(compiledDir, rel), inside(webDir, rel)].filter((p): p is string => p !== undefined);
  }
}

/** The dashboard handler over the package's own folders (created on first use). */
export function serveDashboard(req: IncomingMessage, res: ServerResponse): boolean {
  defaultHandler ??= createDashboardHandler();
  return defaultHandler(req, res);
}
let defaultHandler: DashboardHandler | undefined;

/** `root/rel` when it stays inside root, else undefined. */
function inside(root: string, rel: string): string | undefined {
  const path = resolve(root, `.${sep}${rel}`);
  return path.startsWith(root + sep) ? path : undefined;
}

/** The raw path of a request URL (no query), still percent-encoded; undefined when unparsable. */
function pathOf(url: string | undefined): string | undefined {
  if (!url?.startsWith('/')) return undefined;
  const end = url.search(/[?#]/);
  return end === -1 ? url : url.slice(0, end);
}

async function send(
  req: IncomingMessage,
  res: ServerResponse,
  candidates: string[],
  isPage: boolean,
): Promise<void> {
  try {
    for (const path of candidates) {
      const info = await stat(path).catch(() => undefined);
      if (!info?.isFile() || info.size > MAX_FILE_BYTES) continue;
      const etag = `"${createHash('sha1').update(`${path}:${info.size}:${info.mtimeMs}`).digest('base64url')}"`;
      const headers: Record<string, string> = {
        'Content-Type': CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
        'Cache-Control': 'no-cache',
        ETag: etag,
        'X-Content-Type-Options': 'nosniff',
      };
      if (isPage) {
        headers['Content-Security-Policy'] = CSP;
        headers['Referrer-Policy'] = 'no-referrer'; // the URL carries the token
        headers['X-Frame-Options'] = 'DENY';
      }
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, headers);
        res.end();
        return;
      }
      const body = await readFile(path);
      headers['Content-Length'] = String(body.length);
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-cache' });
    res.end('not found\n');
  } catch {
    if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end();
  }
}
