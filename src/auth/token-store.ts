/**
 * Room: auth. Where the signing key and the revocations are kept: the data directory (token-store-file.ts, one
 * instance) or Redis (token-store-redis.ts, cluster mode). One contract suite runs against both
 * (test/token-store-contract.test.ts).
 */
import { ERROR_CODES, TelebridgeError } from '../errors.js';

export interface TokenStore {
  /** The HS256 key; undefined only for a file store opened without making one (`registry import`). */
  signingKey(): Uint8Array | undefined;
  /** True when the jti is revoked (a revocation made anywhere is seen within about a second). */
  isRevoked(jti: string): Promise<boolean>;
  /** Revokes each jti until its expiry (Unix s); a later expiry wins; expired entries are pruned. */
  revoke(entries: ReadonlyMap<string, number>): Promise<void>;
  /** The revocations still in force: jti → expiry (Unix s). */
  revocations(): Promise<Map<string, number>>;
  /**
   * Takes `key` as the signing key where there is none yet, or always with `replace` (every token
   * signed with the previous key stops verifying). Resolves true when the store's key is `key`.
   */
  adoptKey(key: Uint8Array, replace: boolean): Promise<boolean>;
  close(): Promise<void>;
}

export function tokenError(message: string): TelebridgeError {
  return new TelebridgeError(ERROR_CODES.token, message);
}
