// Why the op log (master/oplog.ts) turns an append away, told apart from why an apply failed.
// A log replica (master/shadow.ts) must pass a refusal on to its master (the record is not in
// its log) but may ignore an apply error (the master's apply failed the same way), so refusals
// are marked here; the errno tests that sort a failed write into "disk full" or "log broken" and
// the messages a client sees for each live beside them.

import { GfsError } from '../shared/errors.js';
import { errorMessage } from './oplog-scan.js';

/** How long a batch already shipped to log replicas waits before its local write is tried again. */
export const NO_SPACE_RETRY_MS = 1_000;

/** Errors the op log itself refuses an append with (as opposed to what the caller's apply threw). */
const refusals = new WeakSet<object>();

/** Marks `e` as the log's own refusal (see isOpLogRefusal). */
export function refusal(e: GfsError): GfsError {
  refusals.add(e);
  return e;
}

/**
 * True when an append was refused by the log (not written: full disk, full queue, closed, unusable),
 * false when the record is in the log and only apply() failed. A log replica must pass the first
 * kind on to its master and may ignore the second (the master's apply failed the same way).
 */
export function isOpLogRefusal(e: unknown): boolean {
  return typeof e === 'object' && e !== null && refusals.has(e);
}

function errnoCode(e: unknown): unknown {
  return typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
}

export function isEnoent(e: unknown): boolean {
  return errnoCode(e) === 'ENOENT';
}

/** A full disk or an exhausted quota: nothing wrong with the log, just no room for more of it. */
export function isNoSpace(e: unknown): boolean {
  return errnoCode(e) === 'ENOSPC' || errnoCode(e) === 'EDQUOT';
}

/** After a failed write or fsync: nothing more may be logged. */
export function failedError(failure: unknown): GfsError {
  return refusal(new GfsError('INTERNAL', `oplog is unusable after a failed write: ${errorMessage(failure)}`));
}

export function closedError(): GfsError {
  return refusal(new GfsError('UNAVAILABLE', 'oplog is closed'));
}

/** The disk is full and this append was not written. */
export function noSpaceError(dir: string): GfsError {
  return refusal(new GfsError('NO_SPACE', `the master's disk is full: no room to log the mutation in ${dir}; free space there and retry`, { retryAfterMs: NO_SPACE_RETRY_MS }));
}

/** The disk is full, but the batch may be on the log replicas: it will be logged here once space returns. */
export function heldError(dir: string): GfsError {
  return refusal(
    new GfsError('NO_SPACE', `the master's disk is full (${dir}); this mutation may be on the log replicas already and will then be logged and applied here once space returns: outcome unknown until then`, {
      retryAfterMs: NO_SPACE_RETRY_MS,
      outcomeUnknown: true,
    }),
  );
}

/** A held batch given up (closing, or the log failed). */
export function heldAbandonedError(): GfsError {
  return refusal(new GfsError('UNAVAILABLE', 'oplog closed while waiting for disk space; the record may be on the log replicas, outcome unknown'));
}
