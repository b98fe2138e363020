import { test } from 'node:test';
import assert from 'node:assert/strict';
import { maxLinks, Namespace, type FileNode, type NamespaceSnapshot, type Op } from '../../../master/core/namespace.js';
import { run, throwsCode } from './core-fixture.js';

// Hard links in the namespace (issue 20): one node under several paths, its nlink, its data kept
// until the last name goes, and all of it through replay, checkpoints and snapshots.

function file(ns: Namespace, path: string): FileNode {
  return ns.getFile(path);
}

/** A snapshot with its lists in path order: a restored namespace holds the same state in another insertion order. */
function canon(s: NamespaceSnapshot): NamespaceSnapshot {
  const byPath = <T,>(a: [string, T][] | undefined) => a && [...a].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  return { ...s, nodes: byPath(s.nodes)!, links: byPath(s.links) };
}

function restore(ns: Namespace): Namespace {
  return Namespace.fromSnapshot(JSON.parse(JSON.stringify(ns.snapshot())) as NamespaceSnapshot);
}

test('link: one node under two names; attributes, chunks and times are shared; nlink counts names', () => {
  const ns = new Namespace();
  run(ns, ns.checkMkdir('/d', false, 1));
  run(ns, ns.checkCreate('/a', 3, 2, { mode: 0o640, uid: 7, gid: 8 }));
  run(ns, ns.checkAllocate('/a', 1, 3));
  run(ns, ns.checkLink('/a', '/d/b', 10));
  assert.equal(ns.get('/a'), ns.get('/d/b'), 'both names are one node');
  assert.deepEqual([file(ns, '/a').nlink, file(ns, '/a').ino], [2, 1]);
  assert.equal(file(ns, '/a').ctimeMs, 10, 'link moves the node\'s ctime');
  assert.deepEqual([ns.get('/d')!.mtimeMs, ns.get('/d')!.ctimeMs], [10, 10], 'and the new name\'s directory\'s mtime and ctime');
  // a change through either name shows through the other
  run(ns, ns.checkSetattr('/d/b', { mode: 0o600 }, 11));
  assert.equal(ns.get('/a')!.mode, 0o600);
  run(ns, ns.checkAllocate('/d/b', 2, 12));
  assert.equal(file(ns, '/a').chunks.length, 3);
  for (const h of file(ns, '/a').chunks) assert.equal(ns.chunks.get(h)!.refCount, 1, 'a link is not a copy: chunks are referenced once');
  // a third name, made from the second; the ino stays the node's
  run(ns, ns.checkLink('/d/b', '/c', 13));
  assert.deepEqual([file(ns, '/c').nlink, file(ns, '/c').ino], [3, 1]);
});

test('unlink of one name keeps the data for the others; the last name frees the chunks', () => {
  const ns = new Namespace();
  run(ns, ns.checkCreate('/a', 3, 1));
  run(ns, ns.checkAllocate('/a', 1, 2));
  const chunks = file(ns, '/a').chunks.slice();
  run(ns, ns.checkLink('/a', '/b', 3));
  run(ns, ns.checkDelete('/a', false, 4));
  assert.equal(ns.get('/a'), undefined);
  assert.deepEqual(file(ns, '/b').chunks, chunks);
  assert.deepEqual([file(ns, '/b').nlink, file(ns, '/b').ctimeMs], [1, 4], 'unlink drops nlink and moves the ctime of what remains');
  for (const h of chunks) assert.ok(ns.chunks.has(h));
  run(ns, ns.checkDelete('/b', false, 5));
  assert.equal(ns.chunks.size, 0, 'the last name took the chunks with it');
});

test('a recursive delete of a tree holding two names of a file frees it once; a name outside keeps it', () => {
  const ns = new Namespace();
  run(ns, ns.checkMkdir('/t', false, 1));
  run(ns, ns.checkCreate('/t/a', 3, 1));
  run(ns, ns.checkAllocate('/t/a', 0, 2));
  run(ns, ns.checkLink('/t/a', '/t/b', 3));
  run(ns, ns.checkLink('/t/a', '/out', 3));
  run(ns, ns.checkDelete('/t', true, 4));
  assert.equal(file(ns, '/out').nlink, 1);
  assert.equal(ns.chunks.size, 1);
  run(ns, ns.checkDelete('/out', false, 5));
  assert.equal(ns.chunks.size, 0);
});

test('rename keeps a linked node one node; the trash keeps a name (and the count) until reclaimed', () => {
  const ns = new Namespace();
  run(ns, ns.checkMkdir('/d', false, 1));
  run(ns, ns.checkCreate('/d/a', 3, 1));
  run(ns, ns.checkLink('/d/a', '/b', 2));
  run(ns, ns.checkRename('/d', '/e', 3));
  assert.equal(ns.get('/e/a'), ns.get('/b'));
  run(ns, ns.checkTrash('/e', '/.trash/1_x/e', true, 4));
  assert.equal(ns.get('/.trash/1_x/e/a'), ns.get('/b'));
  assert.equal(file(ns, '/b').nlink, 2);
  run(ns, ns.checkDelete('/.trash/1_x', true, 5));
  assert.equal(file(ns, '/b').nlink, 1);
});

test('link refuses: a directory (NOT_PERMITTED), a name that exists, a missing source or parent, past maxLinks', () => {
  const ns = new Namespace();
  run(ns, ns.checkMkdir('/d', false, 1));
  run(ns, ns.checkCreate('/f', 3, 1));
  run(ns, ns.checkSymlink('/l', 'f', 1));
  throwsCode(() => ns.checkLink('/d', '/d2', 2), 'NOT_PERMITTED');
  throwsCode(() => ns.checkLink('/f', '/d', 2), 'EXISTS');
  throwsCode(() => ns.checkLink('/f', '/', 2), 'EXISTS');
  throwsCode(() => ns.checkLink('/nope', '/x', 2), 'NOT_FOUND');
  throwsCode(() => ns.checkLink('/f', '/nope/x', 2), 'NOT_FOUND');
  throwsCode(() => ns.checkLink('/f', '/f/x', 2), 'NOT_A_DIRECTORY');
  // a symbolic link and a FIFO may have several names, as on Linux (link(2) does not follow)
  run(ns, ns.checkLink('/l', '/l2', 2));
  run(ns, ns.checkMknod('/p', 'fifo', 0, 2));
  run(ns, ns.checkLink('/p', '/p2', 2));
  assert.deepEqual([ns.get('/l2')!.type, ns.get('/p2')!.nlink], ['symlink', 2]);
  file(ns, '/f').nlink = maxLinks;
  throwsCode(() => ns.checkLink('/f', '/x', 3), 'TOO_MANY_LINKS');
});

test('links replay exactly and survive a checkpoint as one node, whichever name is first', () => {
  const ns = new Namespace();
  const log: Op[] = [];
  run(ns, ns.checkMkdir('/z', false, 1), log);
  run(ns, ns.checkCreate('/z/a', 3, 1), log);
  run(ns, ns.checkAllocate('/z/a', 0, 2), log);
  run(ns, ns.checkLink('/z/a', '/b', 3), log);
  run(ns, ns.checkLink('/z/a', '/c', 3), log);
  run(ns, ns.checkCreate('/other', 3, 4), log);
  run(ns, ns.checkLink('/other', '/other2', 5), log);
  run(ns, ns.checkDelete('/other2', false, 6), log);
  const replayed = new Namespace();
  for (const op of log) replayed.apply(op);
  assert.deepEqual(replayed.snapshot(), ns.snapshot());
  const snap = ns.snapshot();
  assert.equal(snap.links?.length, 2, 'two further names of one node');
  assert.equal(snap.nodes.filter(([, n]) => n.ino === 1).length, 1, 'the node itself once');
  const restored = restore(ns);
  assert.equal(restored.get('/b'), restored.get('/z/a'));
  assert.equal(restored.get('/c'), restored.get('/z/a'));
  assert.deepEqual(restored.snapshot(), snap);
  // the restored master goes on exactly as the first: same inos, same counts
  for (const n of [ns, restored]) {
    run(n, n.checkCreate('/n', 3, 7));
    run(n, n.checkLink('/n', '/n2', 8));
    run(n, n.checkDelete('/z/a', false, 9));
  }
  assert.deepEqual(canon(restored.snapshot()), canon(ns.snapshot()));
  assert.deepEqual([file(restored, '/n2').ino, file(restored, '/b').nlink], [3, 2]);
});

test('snapshot: names of one node inside the tree stay one node in the copy; a name outside is not the copy\'s', () => {
  const ns = new Namespace();
  const log: Op[] = [];
  run(ns, ns.checkMkdir('/src', false, 1), log);
  run(ns, ns.checkCreate('/src/a', 3, 1), log);
  run(ns, ns.checkAllocate('/src/a', 0, 2), log);
  run(ns, ns.checkLink('/src/a', '/src/b', 3), log);
  run(ns, ns.checkLink('/src/a', '/outside', 3), log);
  run(ns, ns.checkSnapshot('/src', '/snap', 4), log);
  const a = file(ns, '/snap/a');
  assert.equal(a, ns.get('/snap/b'));
  assert.notEqual(a, ns.get('/src/a'));
  assert.equal(a.nlink, 2, 'the copy has the two names copied');
  assert.notEqual(a.ino, file(ns, '/src/a').ino);
  assert.equal(file(ns, '/src/a').nlink, 3);
  assert.equal(ns.chunks.get(a.chunks[0]!)!.refCount, 2, 'the chunk is shared once with the copy, not once per name');
  // inos inside the tree: the copy's nodes are found by lock key too
  assert.deepEqual(ns.inosAt('/snap', true), [a.ino, a.ino]);
  assert.deepEqual(ns.inosAt('/src/a'), [file(ns, '/src/a').ino]);
  const replayed = new Namespace();
  for (const op of log) replayed.apply(op);
  assert.deepEqual(replayed.snapshot(), ns.snapshot());
  assert.deepEqual(restore(ns).snapshot(), ns.snapshot());
});
