// Errors that cross the wire. Every HTTP error body is `{error, code}`; the
// code is stable and machine-readable, the message is for people.

export type ErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHENTICATED'
  | 'INVALID_PATH'
  /** A name over 255 bytes, a path over 4096, a symlink target over 4096 (ENAMETOOLONG). */
  | 'NAME_TOO_LONG'
  | 'INVALID_HANDLE'
  | 'NOT_FOUND'
  | 'EXISTS'
  | 'NOT_A_DIRECTORY'
  | 'IS_A_DIRECTORY'
  | 'NOT_EMPTY'
  | 'NOT_PERMITTED'
  | 'TOO_MANY_LINKS'
  | 'NO_SPACE'
  | 'NO_REPLICAS'
  | 'SAFE_MODE'
  | 'LEASE_PENDING'
  | 'NOT_PRIMARY'
  | 'LEASE_EXPIRED'
  | 'STALE_VERSION'
  | 'UNKNOWN_DATA'
  | 'CORRUPT'
  | 'RECORD_TOO_LARGE'
  /** A file length past maxFileSizeBytes (EFBIG). */
  | 'FILE_TOO_LARGE'
  | 'OUT_OF_RANGE'
  | 'TOO_BUSY'
  | 'PAYLOAD_TOO_LARGE'
  | 'TRUNCATED'
  | 'UNAVAILABLE'
  | 'TIMEOUT'
  | 'READ_ONLY'
  | 'STALE_EPOCH'
  | 'LOG_GAP'
  | 'INTERNAL';

const statusByCode: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  INVALID_PATH: 400,
  NAME_TOO_LONG: 400,
  INVALID_HANDLE: 400,
  NOT_FOUND: 404,
  EXISTS: 409,
  NOT_A_DIRECTORY: 409,
  IS_A_DIRECTORY: 409,
  NOT_EMPTY: 409,
  /** An operation no caller may do (a hard link to a directory): EPERM through the mount. */
  NOT_PERMITTED: 403,
  /** A node at its most names (maxLinks): EMLINK through the mount. */
  TOO_MANY_LINKS: 409,
  NO_SPACE: 507,
  NO_REPLICAS: 503,
  SAFE_MODE: 503,
  LEASE_PENDING: 503,
  NOT_PRIMARY: 409,
  LEASE_EXPIRED: 409,
  STALE_VERSION: 409,
  UNKNOWN_DATA: 409,
  CORRUPT: 500,
  RECORD_TOO_LARGE: 413,
  FILE_TOO_LARGE: 400,
  OUT_OF_RANGE: 416,
  TOO_BUSY: 429,
  PAYLOAD_TOO_LARGE: 413,
  TRUNCATED: 400,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
  /** A shadow master: mutations go to the master it names. */
  READ_ONLY: 409,
  /** An order or answer from a master of an older epoch (a failed-over master that came back). */
  STALE_EPOCH: 409,
  /** A log replica missing records before the batch it was sent. */
  LOG_GAP: 409,
  INTERNAL: 500,
};

export class GfsError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra machine-readable detail (e.g. retryAfterMs for LEASE_PENDING). */
  readonly detail: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, detail?: Record<string, unknown>, status?: number) {
    super(message);
    this.name = 'GfsError';
    this.code = code;
    this.status = status ?? statusByCode[code];
    this.detail = detail;
  }

  toJSON(): Record<string, unknown> {
    return { error: this.message, code: this.code, ...(this.detail ?? {}) };
  }
}

export function isGfsError(e: unknown, code?: ErrorCode): e is GfsError {
  return e instanceof GfsError && (code === undefined || e.code === code);
}

/** Errors worth retrying: the cluster may answer differently a moment later. */
export function isRetryable(e: unknown): boolean {
  if (!(e instanceof GfsError)) return true; // network errors and the like
  return (
    e.status >= 500 ||
    e.code === 'NOT_PRIMARY' ||
    e.code === 'LEASE_EXPIRED' ||
    e.code === 'STALE_VERSION' ||
    e.code === 'UNKNOWN_DATA' ||
    e.code === 'TOO_BUSY'
  );
}

/** Asserts an invariant; a failure is a bug, never bad input. */
export function invariant(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(`invariant violated: ${message}`);
}
