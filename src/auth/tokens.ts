/**
 * Room: auth. Browser tokens for the live channel: JWTs signed with HS256 (`jose`), carrying the feed filters the
 * holder may subscribe to and whether it may send commands.
 *
 * - The signing key is 32 random bytes, generated once by the store (`TokenStore`: the data directory,
 *   or Redis in cluster mode). Replacing it invalidates every token issued so far.
 * - Revocation: jti → expiry, kept by the store and seen by a running bridge without a restart
 *   (`telebridge token revoke`). Entries are pruned once their token would have expired anyway.
 */
import { randomUUID } from 'node:crypto';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import { isFeedPattern, parseFeedFilter } from '../feeds.js';
import { type TokenStore, tokenError } from './token-store.js';
import { FileTokenStore } from './token-store-file.js';

const ISSUER = 'telebridge';
const AUDIENCE = 'telebridge-live';
/**
 * jose, loaded at the first token operation: the CLI's registry commands open the token service
 * with the registry (open-auth.ts) and must not pay for jose's ~150 modules (contract §1: 2 s).
 */
let jose: typeof import('jose') | undefined;
const loadJose = async (): Promise<typeof import('jose')> => {
  jose ??= await import('jose');
  return jose;
};

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
  /** True when the jti is on the revocation list. */
  isRevoked(jti: string): Promise<boolean>;
  /** Revokes by jti or by the token itself; returns the jti. */
  revoke(tokenOrJti: string): Promise<string>;
}

/**
 * Opens (creating if needed) the key in `dataDir`: the token service of one instance.
 * @example
 * const tokens = await openTokenService(config.dataDir);
 * const { token } = await tokens.create({ feeds: ['telemetry/+'], ttlSeconds: parseTtl('12h') });
 */
export async function openTokenService(dataDir: string): Promise<TokenService> {
  return createTokenService(await FileTokenStore.open(dataDir));
}

/** The token service over a store (its key must exist). */
export function createTokenService(store: TokenStore): TokenService {
  const keyOf = (): Uint8Array => {
    const key = store.signingKey();
    if (!key) throw tokenError('no token signing key');
    return key;
  };
  keyOf();

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
      const { SignJWT } = jose ?? (await loadJose());
      const token = await new SignJWT({ feeds: claims.feeds, commands: claims.commands })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt(now)
        .setExpirationTime(claims.exp)
        .setJti(claims.jti)
        .sign(keyOf());
      return { token, claims };
    },

    async verify(token) {
      if (typeof token !== 'string' || token.length === 0 || token.length > 8192)
        throw tokenError('no token');
      const { jwtVerify, errors } = jose ?? (await loadJose());
      let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
      try {
        ({ payload } = await jwtVerify(token, keyOf(), {
          algorithms: ['HS256'],
          issuer: ISSUER,
          audience: AUDIENCE,
          requiredClaims: ['exp', 'jti'],
        }));
      } catch (err) {
        if (err instanceof errors.JWTExpired) throw tokenError('token expired');
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
      if (await store.isRevoked(jti)) throw tokenError('token revoked');
      return { jti, feeds: feeds as string[], commands: commands === true, exp };
    },

    isRevoked: (jti) => store.isRevoked(jti),

    async revoke(tokenOrJti) {
      let jti = tokenOrJti.trim();
      let exp = Math.floor(Date.now() / 1000) + MAX_TOKEN_TTL_S;
      if (jti.split('.').length === 3) {
        // A token: its signature is not checked (revoking a forged token is harmless).
        const { decodeJwt } = jose ?? (await loadJose());
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
      await store.revoke(new Map([[jti, exp]]));
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
