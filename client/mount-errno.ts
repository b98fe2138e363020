// FUSE errno mapping: what a failed mount operation tells the kernel.
import { constants as osConstants } from 'node:os';
import { GfsError } from '../shared/errors.js';

const E = osConstants.errno;

/** The errno each GfsError code means to the kernel; any other code is EIO. */
const errnoOfCode: Readonly<Record<string, number>> = {
  NOT_FOUND: E.ENOENT, EXISTS: E.EEXIST, NOT_EMPTY: E.ENOTEMPTY, IS_A_DIRECTORY: E.EISDIR, NOT_A_DIRECTORY: E.ENOTDIR,
  INVALID_PATH: E.EINVAL, BAD_REQUEST: E.EINVAL, NAME_TOO_LONG: E.ENAMETOOLONG, NO_SPACE: E.ENOSPC,
  RECORD_TOO_LARGE: E.EFBIG, NOT_PERMITTED: E.EPERM, TOO_MANY_LINKS: E.EMLINK, PAYLOAD_TOO_LARGE: E.EFBIG, FILE_TOO_LARGE: E.EFBIG,
};

/** GfsError codes (and node errors) to negative errnos for FUSE. */
export function toErrno(e: unknown): number {
  if (typeof e === 'number') return e < 0 ? e : -e;
  if (e instanceof GfsError) return -(Object.hasOwn(errnoOfCode, e.code) ? errnoOfCode[e.code]! : E.EIO);
  return -E.EIO;
}
