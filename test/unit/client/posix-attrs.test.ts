import { test } from 'node:test';
import assert from 'node:assert/strict';
import { modeString, parseMode, parseOwner } from '../../../client/cli-attrs.js';
import { attrOf, toStat } from '../../../client/mount-attrs.js';
import { fuseTimeNow, fuseTimeOmit, utimensTimes } from '../../../client/mount-fs.js';

// The client side of POSIX attributes (issue 20): ls -l mode strings, chmod's and chown's
// arguments, how utimens times from FUSE are read, and the stat the kernel gets.

test('modeString prints what ls -l prints, set-id and sticky bits included', () => {
  assert.equal(modeString('file', 0o644), '-rw-r--r--');
  assert.equal(modeString('file', 0o4755), '-rwsr-xr-x');
  assert.equal(modeString('file', 0o2644), '-rw-r-Sr--');
  assert.equal(modeString('dir', 0o1777), 'drwxrwxrwt');
  assert.equal(modeString('dir', 0o1754), 'drwxr-xr-T');
  assert.equal(modeString('symlink', 0o777), 'lrwxrwxrwx');
});

test('parseMode: octal and symbolic as chmod takes them; bad ones refused', () => {
  assert.equal(parseMode('755', 0, false), 0o755);
  assert.equal(parseMode('04755', 0, false), 0o4755);
  assert.equal(parseMode('u+x', 0o644, false), 0o744);
  assert.equal(parseMode('go-w', 0o666, false), 0o644);
  assert.equal(parseMode('a=r', 0o4755, false), 0o444);
  assert.equal(parseMode('u=rwx,g=rx,o=', 0o777, false), 0o750);
  assert.equal(parseMode('+X', 0o644, true), 0o755, 'X on a directory');
  assert.equal(parseMode('+X', 0o644, false), 0o644, 'X on a file nobody may run');
  assert.equal(parseMode('u+s,+t', 0o755, false), 0o5755);
  assert.throws(() => parseMode('u+q', 0, false), /invalid mode/);
  assert.throws(() => parseMode('8', 0, false), /invalid mode/);
});

test('parseOwner: UID[:GID], :GID, names of this machine', () => {
  assert.deepEqual(parseOwner('1000:100'), { uid: 1000, gid: 100 });
  assert.deepEqual(parseOwner('7'), { uid: 7 });
  assert.deepEqual(parseOwner(':9'), { gid: 9 });
  assert.deepEqual(parseOwner('root:root'), { uid: 0, gid: 0 });
  assert.throws(() => parseOwner(':'), /invalid owner/);
  assert.throws(() => parseOwner('no-such-user-here'), /unknown user/);
});

test('utimensTimes: the fixed binding\'s NOW/OMIT, explicit ms, and the stock binding\'s blurred 1073 ms', () => {
  assert.deepEqual(utimensTimes(fuseTimeOmit, 981173106000), { mtime: { ms: 981173106000, ns: 0 } }, 'tar: atime omitted');
  assert.deepEqual(utimensTimes(fuseTimeNow, fuseTimeNow), { atime: 'now', mtime: 'now' });
  assert.deepEqual(utimensTimes(fuseTimeNow, fuseTimeOmit), { atime: 'now' });
  assert.deepEqual(utimensTimes(4102444801500, 4102444801500), { atime: { ms: 4102444801500, ns: 0 }, mtime: { ms: 4102444801500, ns: 0 } }, 'past 2038');
  assert.deepEqual(utimensTimes(1073, 1073), { atime: 'now', mtime: 'now' }, 'stock: NOW or OMIT, taken as now');
});

test('toStat: type bits from the node type, mode, owner and times as stored; symlink size is its target\'s', () => {
  const base = { sizeBytes: 0, replication: 3, chunkCount: 0, mtimeMs: 4102444801000, ctimeMs: 5000, path: '/x', name: 'x' };
  const f = toStat(attrOf({ ...base, type: 'file', mode: 0o4750, uid: 12, gid: 34, atimeMs: 7000 }), 99);
  assert.deepEqual([f.mode, f.uid, f.gid, f.size, f.nlink, f.atime, f.mtime, f.ctime], [0o104750, 12, 34, 99, 1, 7000, 4102444801000, 5000]);
  const l = toStat(attrOf({ ...base, type: 'symlink', target: 'é/x' }), 0);
  assert.deepEqual([l.mode, l.size], [0o120777, 4]);
  const d = toStat(attrOf({ ...base, type: 'dir' }), 0);
  assert.deepEqual([d.mode, d.uid, d.nlink, d.atime], [0o40755, 0, 2, 4102444801000], 'an old master: defaults, atime from mtime');
  assert.equal(toStat(attrOf({ ...base, type: 'file', mtimeMs: -5000 }), 0).mtime, 0, 'before 1970 shows as 1970 through fuse-native');
});
