/**
 * Room: auth. Browser tokens for the live channel: JWTs signed with HS256 (`jose`), carrying the feed filters the
 * holder may subscribe to and whether it may send commands.
 *
 * - The signing key is 32 random bytes, generated once in `<dataDir>/token-key` (mode 0600). Deleting
 *   the file invalidates every token issued so far.
 * - Revocation: `<dataDir>/revoked-tokens.json` maps jti → expiry (Unix s). It is re-read when its
 *   mtime changes, so `telebridge token revoke` takes effect in a running bridge without a restart.
 *   Entries are pruned once their token would have expired anyway.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJwt, errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import { isFeedPattern, parseFeedFilter } from '../feeds.js';

const ISSUER = 'telebridge';
const AUDIENCE = 'telebridge-live';
const KEY_FILE = 'token-key';
const REVOKED_FILE = 'revoked-tokens.json';
/** Default lifetime: 24 h. */
export const DEFAULT_TOKEN_TTL_S = 24 * 3600;
/** Longest lifetime: 365 days. A jti revoked without its token is kept this long. */
export const MAX_TOKEN_TTL_S = 365 * 24 * 3600;

export interface TokenClaims {
  readonly jti: string;
  /** Feed filters (contract §5), e.g. `['telemetry/+', 'status/#']`. */
  readonly feeds: readonly string[];
  /** May send `command` messages. */
  readonly commands: boolean;
  /** Expiry, Unix seconds. */
  readonly exp: number;
}

export interface CreateTokenOptions {
  /** Default `['#']`. Each must be a valid feed filter. */
  readonly feeds?: readonly string[];
  /** Default false. */
  readonly commands?: boolean;
  /** Lifetime in seconds; default 24 h, at most 365 days. */
  readonly ttlSeconds?: number;
}

export interface TokenService {
  create(options?: CreateTokenOptions): Promise<{ token: string; claims: TokenClaims }>;
  /** Throws TelebridgeError (E_TOKEN) when the token is malformed, badly signed, expired or revoked. */
  verify(token: string): Promise<TokenClaims>;
  /** True when the jti is on the revocation list (re-read when the file changed). */
  isRevoked(jti: string): Promise<boolean>;
  /** Revokes by jti or by the token itself; returns the jti. */
  revoke(tokenOrJti: string): Promise<string>;
}

/**
 * Opens (creating if needed) the key in `dataDir`.
 * @example
 * const tokens = await openTokenService(config.dataDir);
 * const { token } = await tokens.create({ feeds: ['telemetry/+'], ttlSeconds: parseTtl('12h') });
 */
export async function openTokenService(dataDir: string): Promise<TokenService> {
  await mkdir(dataDir, { recursive: true });
  const key = await loadOrCreateKey(join(dataDir, KEY_FILE));
  const revokedPath = join(dataDir, REVOKED_FILE);
  let revokedCache: { mtimeMs: number; size: number; entries: Map<string, number> } | undefined;

  async function revokedEntries(): Promise<Map<string, number>> {
    let info: { mtimeMs: number; size: number };
    try {
      info = await stat(revokedPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw err;
    }
    if (revokedCache && revokedCache.mtimeMs === info.mtimeMs && revokedCache.size === info.size) {
      return revokedCache.entries;
    }
    const entries = parseRevoked(await readFile(revokedPath, 'utf8'));
    revokedCache = { mtimeMs: info.mtimeMs, size: info.size, entries };
    return entries;
  }

  const service: TokenService = {
    async create(options = {}) {
      const feeds = [...(options.feeds ?? ['#'])];
      if (feeds.length === 0 || feeds.length > 100) throw tokenError('a token needs 1 to 100 feed filters');
      for (const feed of feeds) {
        const parsed = parseFeedFilter(feed);
        if (!isFeedPattern(parsed)) throw tokenError(`invalid feed filter: ${parsed.error}`);
      }
      const ttl = options.ttlSeconds ?? DEFAULT_TOKEN_TTL_S;
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_S) {
        throw tokenError(`ttl must be 1 s to 365 days, got ${ttl}`);
      }
      const now = Math.floor(Date.now() / 1000);
      const claims: TokenClaims = {
        jti: randomUUID(),
        feeds,
        commands: options.commands === true,
        exp: now + ttl,
      };
      const token = await new SignJWT({ feeds: claims.feeds, commands: claims.commands })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt(now)
        .setExpirationTime(claims.exp)
        .setJti(claims.jti)
        .sign(key);
      return { token, claims };
    },

    async verify(token) {
      if (typeof token !== 'string' || token.length === 0 || token.length > 8192)
        throw tokenError('no token');
      let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
      try {
        ({ payload } = await jwtVerify(token, key, {
          algorithms: ['HS256'],
          issuer: ISSUER,
          audience: AUDIENCE,
          requiredClaims: ['exp', 'jti'],
        }));
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) throw tokenError('token expired');
        throw tokenError('invalid token');
      }
      const { feeds, commands, jti, exp } = payload as {
        feeds?: unknown;
        commands?: unknown;
        jti: string;
        exp: number;
      };
      if (
        !Array.isArray(feeds) ||
        !feeds.every((f) => typeof f === 'string' && isFeedPattern(parseFeedFilter(f)))
      ) {
        throw tokenError('invalid token: bad feeds claim');
      }
      if ((await revokedEntries()).has(jti)) throw tokenError('token revoked');
      return { jti, feeds: feeds as string[], commands: commands === true, exp };
    },

    async isRevoked(jti) {
      return (await revokedEntries()).has(jti);
    },

    async revoke(tokenOrJti) {
      let jti = tokenOrJti.trim();
      const now = Math.floor(Date.now() / 1000);
      let exp = now + MAX_TOKEN_TTL_S;
      if (jti.split('.').length === 3) {
        // A token: its signature is not checked (revoking a forged token is harmless).
        let payload: ReturnType<typeof decodeJwt>;
        try {
          payload = decodeJwt(jti);
        } catch {
          throw tokenError('not a token');
        }
        if (typeof payload.jti !== 'string') throw tokenError('the token has no jti');
        jti = payload.jti;
        if (typeof payload.exp === 'number') exp = payload.exp;
      }
      if (!jti || jti.length > 200) throw tokenError('no jti');
      // Read fresh (not the cache): another process may have revoked something meanwhile.
      let entries: Map<string, number>;
      try {
        entries = parseRevoked(readFileSync(revokedPath, 'utf8'));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        entries = new Map();
      }
      for (const [id, until] of entries) if (until < now) entries.delete(id);
      entries.set(jti, Math.max(exp, entries.get(jti) ?? 0));
      const tmp = `${revokedPath}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(Object.fromEntries(entries), null, 2)}\n`, { mode: 0o600 });
      renameSync(tmp, revokedPath);
      revokedCache = { ...statSync(revokedPath), entries };
      return jti;
    },
  };
  return service;
}

/**
 * Parses a lifetime: `90` or `90s` seconds, `30m`, `12h`, `7d`.
 * @throws TelebridgeError (E_USAGE) on anything else.
 */
export function parseTtl(text: string): number {
  const match = /^\s*(\d{1,9})\s*([smhd]?)\s*$/.exec(text);
  if (!match) throw new TelebridgeError(ERROR_CODES.usage, `invalid ttl '${text}': use e.g. 30m, 12h or 7d`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  const seconds = Number(match[1]) * unit;
  if (seconds < 1 || seconds > MAX_TOKEN_TTL_S) {
    throw new TelebridgeError(ERROR_CODES.usage, `invalid ttl '${text}': between 1 s and 365 d`);
  }
  return seconds;
}

async function loadOrCreateKey(path: string): Promise<Uint8Array> {
  try {
    await writeFile(path, randomBytes(32).toString('base64url'), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // EEXIST: it was made before (or by a concurrent process); read it.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const key = Buffer.from((await readFile(path, 'utf8')).trim(), 'base64url');
  if (key.length < 32) throw tokenError(`${path}: the token signing key is shorter than 32 bytes`);
  return new Uint8Array(key);
}

function parseRevoked(text: string): Map<string, number> {
  const entries = new Map<string, number>();
  if (!text.trim()) return entries;
  const raw = JSON.parse(text) as unknown;
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
    for (const [jti, exp] of Object.entries(raw)) if (typeof exp === 'number') entries.set(jti, exp);
  }
  return entries;
}

function tokenError(message: string): TelebridgeError {
  return new TelebridgeError(ERROR_CODES.token, message);
}
