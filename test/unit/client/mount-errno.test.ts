import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { toErrno } from '../../../client/mount-errno.js';
import { GfsError, type ErrorCode } from '../../../shared/errors.js';

const E = constants.errno;

test('GfsError codes map to the errnos the kernel passes on; anything else is EIO', () => {
  const cases: [ErrorCode, number][] = [
    ['NOT_FOUND', E.ENOENT],
    ['EXISTS', E.EEXIST],
    ['NOT_EMPTY', E.ENOTEMPTY],
    ['IS_A_DIRECTORY', E.EISDIR],
    ['NOT_A_DIRECTORY', E.ENOTDIR],
    ['NAME_TOO_LONG', E.ENAMETOOLONG],
    ['NO_SPACE', E.ENOSPC],
    ['FILE_TOO_LARGE', E.EFBIG],
    ['BAD_REQUEST', E.EINVAL],
    ['UNAVAILABLE', E.EIO],
  ];
  for (const [code, errno] of cases) assert.equal(toErrno(new GfsError(code, 'x')), -errno, code);
  assert.equal(toErrno(new GfsError('constructor' as ErrorCode, 'a code named like an Object key')), -E.EIO);
  assert.equal(toErrno(E.EACCES), -E.EACCES, 'an errno passes as a negative one');
  assert.equal(toErrno(-E.EPERM), -E.EPERM);
  assert.equal(toErrno(new Error('anything')), -E.EIO);
});
