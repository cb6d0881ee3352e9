/**
 * Room: bridge/live. The checks shared by `/live` upgrades and `/live/sse`: Origin against the allow-list, and the
 * token from `?token=` or `Authorization: Bearer`.
 */
import type { IncomingMessage } from 'node:http';

/** The request's token: the `token` query parameter, else the Bearer credentials; undefined when none. */
export function tokenOf(req: IncomingMessage, url: URL): string | undefined {
  const query = url.searchParams.get('token');
  if (query) return query;
  const header = req.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match?.[1];
}

/**
 * True when the request may come from its Origin: the list is empty (any origin), the request has no
 * Origin header (not a browser: the token alone decides), or the Origin is listed exactly.
 */
export function originAllowed(req: IncomingMessage, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  return allowed.length === 0 || origin === undefined || allowed.includes(origin);
}

/** The request URL, parsed against a dummy base (only path and query are used). */
export function requestUrl(req: IncomingMessage): URL | undefined {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch {
    return undefined;
  }
}
