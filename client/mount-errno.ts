// FUSE errno mapping: what a failed mount operation tells the kernel.
import { constants as osConstants } from 'node:os';
import { GfsError } from '../shared/errors.js';

const E = osConstants.errno;

/** GfsError codes (and node errors) to negative errnos for FUSE. */
export function toErrno(e: unknown): number {
  if (typeof e === 'number') return e < 0 ? e : -e;
  if (e instanceof GfsError) {
    switch (e.code) {
      case 'NOT_FOUND':
        return -E.ENOENT;
      case 'EXISTS':
        return -E.EEXIST;
      case 'NOT_EMPTY':
        return -E.ENOTEMPTY;
      case 'IS_A_DIRECTORY':
        return -E.EISDIR;
      case 'NOT_A_DIRECTORY':
        return -E.ENOTDIR;
      case 'INVALID_PATH':
      case 'BAD_REQUEST':
        return -E.EINVAL;
      case 'NAME_TOO_LONG':
        return -E.ENAMETOOLONG;
      case 'NO_SPACE':
        return -E.ENOSPC;
      case 'RECORD_TOO_LARGE':
      case 'PAYLOAD_TOO_LARGE':
        return -E.EFBIG;
      default:
        return -E.EIO;
    }
  }
  return -E.EIO;
}
