/**
 * One error base with a stable code, and the catalogue of codes. Callers branch on `code`, never on
 * message text; messages are for people.
 */
export const ERROR_CODES = {
  config: 'E_CONFIG',
  registry: 'E_REGISTRY',
  schema: 'E_SCHEMA',
  storage: 'E_STORAGE',
  spoolFull: 'E_SPOOL_FULL',
  /** A history query with a malformed range (bounds, step, cursor, feeds). */
  historyRange: 'E_HISTORY_RANGE',
  /** A history query over a limit (window, points, readings). */
  historyLimit: 'E_HISTORY_LIMIT',
  token: 'E_TOKEN',
  usage: 'E_USAGE',
} as const;

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

export class TelebridgeError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = 'TelebridgeError';
  }
}

/** Bad configuration: start-up stops with this one line. */
export class ConfigError extends TelebridgeError {
  constructor(message: string) {
    super(ERROR_CODES.config, message);
    this.name = 'ConfigError';
  }
}
