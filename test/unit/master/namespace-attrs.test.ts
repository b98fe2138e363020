import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Namespace, S_ISGID, S_ISUID, type FileNode, type NamespaceSnapshot, type Op } from '../../../master/core/namespace.js';
import { run, throwsCode } from './core-fixture.js';

// POSIX attributes in the namespace (issue 20): modes, owners, nanosecond times, symlinks, and the
// setattr/symlink records, through apply, replay, checkpoints and snapshots.

const y2100Ms = Date.UTC(2100, 0, 1, 0, 0, 0, 123);

test('create, mkdir and symlink take mode, uid and gid; defaults 0644/0755/0777 and 0:0', () => {
  const ns = new Namespace();
  run(ns, ns.checkMkdir('/d', false, 5, { mode: 0o750, uid: 1000, gid: 100 }));
  run(ns, ns.checkCreate('/d/x', 3, 6, { mode: 0o4755, uid: 1000, gid: 100 }));
  run(ns, ns.checkCreate('/plain', 3, 6));
  run(ns, ns.checkSymlink('/d/l', '../plain', 7, { uid: 1000, gid: 100 }));
  assert.deepEqual([ns.get('/d')!.mode, ns.get('/d')!.uid, ns.get('/d')!.gid], [0o750, 1000, 100]);
  assert.deepEqual([ns.get('/d/x')!.mode, ns.get('/d/x')!.uid], [0o4755, 1000]);
  assert.deepEqual([ns.get('/plain')!.mode, ns.get('/plain')!.uid, ns.get('/plain')!.gid], [0o644, 0, 0]);
  const l = ns.get('/d/l')!;
  assert.equal(l.type, 'symlink');
  assert.equal(l.type === 'symlink' && l.target, '../plain');
  assert.equal(l.mode, 0o777);
  // creation moves the parent's mtime and ctime
  assert.deepEqual([ns.get('/d')!.mtimeMs, ns.get('/d')!.ctimeMs], [7, 7]);
  throwsCode(() => ns.checkCreate('/e', 3, 8, { mode: 0o10000 }), 'BAD_REQUEST');
  throwsCode(() => ns.checkCreate('/e', 3, 8, { uid: -1 }), 'BAD_REQUEST');
  throwsCode(() => ns.checkSymlink('/d/l', 'x', 8), 'EXISTS');
  throwsCode(() => ns.checkSymlink('/nope/l', 'x', 8), 'NOT_FOUND');
  throwsCode(() => ns.checkSymlink('/m', 'y'.repeat(4097), 8), 'NAME_TOO_LONG');
  run(ns, ns.checkSymlink('/m', 'y'.repeat(4096), 8));
  // a symlink is not a file to read or write, nor a directory to create in
  throwsCode(() => ns.getFile('/d/l'), 'BAD_REQUEST');
  throwsCode(() => ns.checkCreate('/d/l/f', 3, 9), 'NOT_A_DIRECTORY');
});

test('setattr: chmod, chown and explicit nanosecond times past 2038; ctime is the record time', () => {
  const ns = new Namespace();
  run(ns, ns.checkCreate('/f', 3, 10));
  run(ns, ns.checkSetattr('/f', { mode: 0o600 }, 20, 5));
  assert.deepEqual([ns.get('/f')!.mode, ns.get('/f')!.ctimeMs, ns.get('/f')!.ctimeNs, ns.get('/f')!.mtimeMs], [0o600, 20, 5, 10]);
  run(ns, ns.checkSetattr('/f', { uid: 7, gid: 8 }, 30));
  assert.deepEqual([ns.get('/f')!.uid, ns.get('/f')!.gid, ns.get('/f')!.mode, ns.get('/f')!.ctimeMs], [7, 8, 0o600, 30]);
  // utimens with explicit times: mtime alone (atime omitted) keeps atime
  run(ns, ns.checkSetattr('/f', { mtime: { ms: y2100Ms, ns: 456_789 } }, 40));
  const f = ns.get('/f')!;
  assert.deepEqual([f.mtimeMs, f.mtimeNs, f.atimeMs, f.atimeNs, f.ctimeMs], [y2100Ms, 456_789, 10, 0, 40]);
  run(ns, ns.checkSetattr('/f', { atime: { ms: -86_400_000, ns: 1 } }, 50));
  assert.deepEqual([ns.get('/f')!.atimeMs, ns.get('/f')!.atimeNs, ns.get('/f')!.mtimeMs], [-86_400_000, 1, y2100Ms]);
  throwsCode(() => ns.checkSetattr('/f', { mtime: { ms: 1, ns: 1_000_000 } }, 60), 'BAD_REQUEST');
  throwsCode(() => ns.checkSetattr('/f', { mtime: { ms: 2 ** 60, ns: 0 } }, 60), 'BAD_REQUEST');
  throwsCode(() => ns.checkSetattr('/nope', { mode: 0o600 }, 60), 'NOT_FOUND');
});

test('chown of a file drops set-uid, and set-gid where group exec is set; directories keep them', () => {
  const ns = new Namespace();
  run(ns, ns.checkCreate('/x', 3, 1, { mode: 0o6755 }));
  run(ns, ns.checkCreate('/y', 3, 1, { mode: 0o2644 }));
  run(ns, ns.checkMkdir('/d', false, 1, { mode: 0o2775 }));
  run(ns, ns.checkSetattr('/x', { uid: 5 }, 2));
  run(ns, ns.checkSetattr('/y', { gid: 5 }, 2));
  run(ns, ns.checkSetattr('/d', { uid: 5 }, 2));
  assert.equal(ns.get('/x')!.mode, 0o755, 'set-uid and set-gid (group exec) dropped');
  assert.equal(ns.get('/y')!.mode, 0o2644, 'set-gid without group exec (a lock mark) stays');
  assert.equal(ns.get('/d')!.mode, 0o2775);
  // chmod alone keeps what it sets
  run(ns, ns.checkSetattr('/x', { mode: 0o4755 }, 3));
  assert.equal(ns.get('/x')!.mode & S_ISUID, S_ISUID);
});

test('entries made in a set-gid directory take its group; new directories keep the bit', () => {
  const ns = new Namespace();
  run(ns, ns.checkMkdir('/g', false, 1, { mode: 0o2775, uid: 0, gid: 50 }));
  run(ns, ns.checkCreate('/g/f', 3, 2, { uid: 1000, gid: 1000 }));
  run(ns, ns.checkMkdir('/g/sub/deeper', true, 3, { mode: 0o755, uid: 1000, gid: 1000 }));
  run(ns, ns.checkSymlink('/g/l', 'f', 4, { uid: 1000, gid: 1000 }));
  assert.equal(ns.get('/g/f')!.gid, 50);
  assert.equal(ns.get('/g/l')!.gid, 50);
  assert.equal(ns.get('/g/sub')!.gid, 50);
  assert.equal(ns.get('/g/sub')!.mode & S_ISGID, S_ISGID);
  assert.equal(ns.get('/g/sub/deeper')!.mode & S_ISGID, S_ISGID);
});

test('times: delete and rename move the parents\' mtime and ctime, rename the moved node\'s ctime, allocation a file\'s mtime and ctime', () => {
  const ns = new Namespace();
  run(ns, ns.checkMkdir('/a', false, 1));
  run(ns, ns.checkMkdir('/b', false, 1));
  run(ns, ns.checkCreate('/a/f', 3, 2));
  run(ns, ns.checkRename('/a/f', '/b/f', 5));
  assert.deepEqual([ns.get('/a')!.mtimeMs, ns.get('/a')!.ctimeMs, ns.get('/b')!.mtimeMs, ns.get('/b')!.ctimeMs], [5, 5, 5, 5]);
  assert.deepEqual([ns.get('/b/f')!.ctimeMs, ns.get('/b/f')!.mtimeMs], [5, 2]);
  run(ns, ns.checkAllocate('/b/f', 0, 7));
  assert.deepEqual([ns.get('/b/f')!.mtimeMs, ns.get('/b/f')!.ctimeMs], [7, 7]);
  run(ns, ns.checkDelete('/b/f', false, 9));
  assert.deepEqual([ns.get('/b')!.mtimeMs, ns.get('/b')!.ctimeMs], [9, 9]);
});

test('snapshot copies modes, owners, times (ns kept) and symlinks; the copies\' ctime is the snapshot\'s', () => {
  const ns = new Namespace();
  run(ns, ns.checkMkdir('/src', false, 1, { mode: 0o700, uid: 3, gid: 4 }));
  run(ns, ns.checkCreate('/src/f', 3, 2, { mode: 0o751, uid: 3, gid: 4 }));
  run(ns, ns.checkSetattr('/src/f', { mtime: { ms: y2100Ms, ns: 999_999 } }, 3));
  run(ns, ns.checkSymlink('/src/l', '/abs/target', 4, { uid: 3, gid: 4 }));
  run(ns, ns.checkSnapshot('/src', '/snap', 10));
  const f = ns.get('/snap/f')!;
  assert.deepEqual([f.mode, f.uid, f.gid, f.mtimeMs, f.mtimeNs, f.ctimeMs], [0o751, 3, 4, y2100Ms, 999_999, 10]);
  const l = ns.get('/snap/l')!;
  assert.deepEqual([l.type, l.type === 'symlink' ? l.target : undefined, l.uid], ['symlink', '/abs/target', 3]);
  assert.deepEqual([ns.get('/snap')!.mode, ns.get('/snap')!.uid], [0o700, 3]);
  // the copies are independent: a chmod of one leaves the other
  run(ns, ns.checkSetattr('/snap/f', { mode: 0o600 }, 11));
  assert.equal(ns.get('/src/f')!.mode, 0o751);
});

test('the new records replay exactly and survive a checkpoint (JSON) with ns and times past 2038', () => {
  const ns = new Namespace();
  const log: Op[] = [];
  run(ns, ns.checkMkdir('/d', false, 1, { mode: 0o711, uid: 9, gid: 9 }), log);
  run(ns, ns.checkCreate('/d/f', 2, 2, { mode: 0o640, uid: 9, gid: 10 }), log);
  run(ns, ns.checkSetattr('/d/f', { atime: { ms: y2100Ms, ns: 1 }, mtime: { ms: y2100Ms + 1, ns: 999_998 } }, 3, 77), log);
  run(ns, ns.checkSymlink('/d/l', 'f', 4), log);
  run(ns, ns.checkSetattr('/d/l', { uid: 11 }, 5), log);
  const replayed = new Namespace();
  for (const op of log) replayed.apply(op);
  assert.deepEqual(replayed.snapshot(), ns.snapshot());
  const restored = Namespace.fromSnapshot(JSON.parse(JSON.stringify(ns.snapshot())) as NamespaceSnapshot);
  assert.deepEqual(restored.snapshot(), ns.snapshot());
  const f = restored.get('/d/f')!;
  assert.deepEqual([f.atimeMs, f.atimeNs, f.mtimeMs, f.mtimeNs, f.ctimeMs, f.ctimeNs], [y2100Ms, 1, y2100Ms + 1, 999_998, 3, 77]);
  assert.equal(new Date(f.mtimeMs).getUTCFullYear(), 2100);
  assert.equal(restored.get('/d/l')!.uid, 11);
});

test('a checkpoint and a log written before modes were kept still load, with the old defaults', () => {
  // As the previous code wrote them: nodes with mtimeMs/ctimeMs only, records without mode/uid/gid.
  const old = {
    nodes: [
      ['/', { type: 'dir', mtimeMs: 0, ctimeMs: 0 }],
      ['/d', { type: 'dir', mtimeMs: 100, ctimeMs: 90 }],
      ['/d/f', { type: 'file', replication: 3, chunks: [], mtimeMs: 200, ctimeMs: 150 }],
    ],
    chunks: [],
    nextHandle: '1',
    appliedIndex: 3,
  } as unknown as NamespaceSnapshot;
  const ns = Namespace.fromSnapshot(JSON.parse(JSON.stringify(old)) as NamespaceSnapshot);
  const d = ns.get('/d')!;
  const f = ns.get('/d/f')!;
  assert.deepEqual([d.mode, d.uid, d.gid, d.atimeMs, d.mtimeNs], [0o755, 0, 0, 100, 0]);
  assert.deepEqual([f.mode, f.uid, f.gid, f.atimeMs, f.mtimeMs, f.ctimeMs, f.ctimeNs], [0o644, 0, 0, 200, 200, 150, 0]);
  const oldLog = [
    { op: 'mkdir', paths: ['/e'], t: 300 },
    { op: 'create', path: '/e/g', replication: 2, t: 301 },
  ] as Op[];
  for (const op of oldLog) ns.apply(op);
  assert.deepEqual([ns.get('/e')!.mode, ns.get('/e/g')!.mode, ns.get('/e/g')!.uid, ns.get('/e/g')!.atimeMs], [0o755, 0o644, 0, 301]);
  assert.equal(ns.appliedIndex, 5, 'each old record is one log index');
});

test('each new record moves the log index by exactly one', () => {
  const ns = new Namespace();
  run(ns, ns.checkCreate('/f', 3, 1));
  const before = ns.appliedIndex;
  run(ns, ns.checkSetattr('/f', { mode: 0o600, uid: 1, mtime: { ms: 5, ns: 5 } }, 2));
  run(ns, ns.checkSymlink('/l', 'f', 3));
  assert.equal(ns.appliedIndex, before + 2);
});

test('mknod: FIFOs, sockets and device nodes with mode, owner and rdev; replayed, checkpointed, snapshotted, refused when bad', () => {
  const ns = new Namespace();
  const log: Op[] = [];
  run(ns, ns.checkMkdir('/d', false, 1), log);
  run(ns, ns.checkMknod('/d/p', 'fifo', 0, 2, { mode: 0o620, uid: 5, gid: 6 }), log);
  run(ns, ns.checkMknod('/d/s', 'socket', 0, 3), log);
  run(ns, ns.checkMknod('/d/null', 'chardev', 259, 4, { mode: 0o666 }), log);
  run(ns, ns.checkMknod('/d/loop', 'blockdev', (7 << 8) | 1, 5), log);
  const p = ns.get('/d/p')!;
  assert.deepEqual([p.type, p.mode, p.uid, p.gid, 'rdev' in p ? p.rdev : undefined], ['fifo', 0o620, 5, 6, 0]);
  assert.deepEqual([ns.get('/d/s')!.type, ns.get('/d/s')!.mode], ['socket', 0o644]);
  const c = ns.get('/d/null')!;
  assert.deepEqual([c.type, 'rdev' in c ? c.rdev : undefined, c.mode], ['chardev', 259, 0o666]);
  // the parent moves; a special file is no regular file to read or write
  assert.deepEqual([ns.get('/d')!.mtimeMs, ns.get('/d')!.ctimeMs], [5, 5]);
  throwsCode(() => ns.getFile('/d/p'), 'BAD_REQUEST');
  throwsCode(() => ns.checkMknod('/d/p', 'fifo', 0, 6), 'EXISTS');
  throwsCode(() => ns.checkMknod('/nope/p', 'fifo', 0, 6), 'NOT_FOUND');
  throwsCode(() => ns.checkMknod('/d/q', 'fifo', 5, 6), 'BAD_REQUEST');
  throwsCode(() => ns.checkMknod('/d/q', 'door' as 'fifo', 0, 6), 'BAD_REQUEST');
  throwsCode(() => ns.checkMknod('/d/q', 'chardev', -1, 6), 'BAD_REQUEST');
  throwsCode(() => ns.checkCreate('/d/p/x', 3, 6), 'NOT_A_DIRECTORY');
  // chmod and rename work on them as on any node
  run(ns, ns.checkSetattr('/d/p', { mode: 0o600 }, 7), log);
  run(ns, ns.checkRename('/d/s', '/d/s2', 8), log);
  const replayed = new Namespace();
  for (const op of log) replayed.apply(op);
  assert.deepEqual(replayed.snapshot(), ns.snapshot());
  const restored = Namespace.fromSnapshot(JSON.parse(JSON.stringify(ns.snapshot())) as NamespaceSnapshot);
  assert.deepEqual(restored.snapshot(), ns.snapshot());
  run(ns, ns.checkSnapshot('/d', '/snap', 9));
  const copy = ns.get('/snap/null')!;
  assert.deepEqual([copy.type, 'rdev' in copy ? copy.rdev : undefined, ns.get('/snap/p')!.mode], ['chardev', 259, 0o600]);
  run(ns, ns.checkDelete('/d', true, 10));
  assert.equal(ns.get('/d/p'), undefined);
  assert.equal(ns.get('/snap/p')!.type, 'fifo');
});

test('truncate: the chunks past the new end leave the file (a snapshot keeps its own), mtime and ctime move, replay is exact', () => {
  const C = 1000;
  const ns = new Namespace();
  const log: Op[] = [];
  run(ns, ns.checkCreate('/f', 3, 1), log);
  run(ns, ns.checkAllocate('/f', 0, 2), log);
  run(ns, ns.checkAllocate('/f', 1, 2), log);
  run(ns, ns.checkAllocate('/f', 2, 2), log);
  const [h0, h1, h2] = (ns.get('/f') as FileNode).chunks;
  run(ns, ns.checkSnapshot('/f', '/snap', 3), log);
  // 1,001 bytes: chunk 1 holds the new end, chunk 2 goes (its snapshot copy stays)
  const op = ns.checkTruncate('/f', 1001, C, 10);
  assert.deepEqual(op, { op: 'truncate', path: '/f', chunks: 2, t: 10 });
  run(ns, op, log);
  const f = ns.get('/f') as FileNode;
  assert.deepEqual(f.chunks, [h0, h1]);
  assert.deepEqual([f.mtimeMs, f.ctimeMs], [10, 10]);
  assert.deepEqual((ns.get('/snap') as FileNode).chunks, [h0, h1, h2]);
  assert.equal(ns.chunks.get(h2!)!.refCount, 1, 'only the snapshot holds chunk 2 now');
  // a length past the file's chunks keeps them all; 0 keeps none, and an unshared chunk is gone
  assert.equal(ns.checkTruncate('/f', 10 * C, C, 11).chunks, 2);
  run(ns, ns.checkDelete('/snap', false, 12), log);
  run(ns, ns.checkTruncate('/f', 0, C, 13), log);
  assert.deepEqual((ns.get('/f') as FileNode).chunks, []);
  assert.equal(ns.chunks.size, 0, 'no chunk is left referenced');
  throwsCode(() => ns.checkTruncate('/f', -1, C, 14), 'BAD_REQUEST');
  throwsCode(() => ns.checkTruncate('/', 0, C, 14), 'IS_A_DIRECTORY');
  throwsCode(() => ns.checkTruncate('/nope', 0, C, 14), 'NOT_FOUND');
  const replayed = new Namespace();
  for (const o of log) replayed.apply(o);
  assert.deepEqual(replayed.snapshot(), ns.snapshot());
});
