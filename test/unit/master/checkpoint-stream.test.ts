import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadLinesCheckpoint, namespaceOf } from '../../../master/checkpoint-stream.js';
import { Namespace, type NamespaceSnapshot, type Op } from '../../../master/core/namespace.js';
import { NamespaceLoader, namespaceLines } from '../../../master/core/namespace-lines.js';
import { linesCheckpointHeader, writeCheckpointLines } from '../../../master/oplog-lines.js';
import { checkpointFileName, logFileName, OpLog } from '../../../master/oplog.js';
import { isGfsError } from '../../../shared/errors.js';

// Checkpoints as lines (issue 17): the namespace written entry by entry and read back entry by
// entry, equal to the snapshot form; a file without its trailer is passed over by recovery; a
// damaged line is refused.

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gfs-ckpt-lines-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function run(ns: Namespace, op: Op | undefined): void {
  if (op) ns.apply(JSON.parse(JSON.stringify({ ...op, rid: `c:${ns.appliedIndex}` })) as Op);
}

/** A namespace with a bit of everything a checkpoint holds. */
function sample(): Namespace {
  const ns = new Namespace();
  run(ns, ns.checkMkdir('/d/e', true, 1, { mode: 0o750, uid: 5, gid: 6 }));
  run(ns, ns.checkCreate('/d/f', 3, 2));
  run(ns, ns.checkAllocate('/d/f', 2, 3));
  run(ns, ns.checkLink('/d/f', '/d/e/g', 4));
  run(ns, ns.checkLink('/d/f', '/h', 4));
  run(ns, ns.checkSymlink('/l', 'd/f', 5));
  run(ns, ns.checkMknod('/p', 'fifo', 0, 5));
  run(ns, ns.checkCreate('/gone', 3, 6));
  run(ns, ns.checkTrash('/gone', '/.trash/6_x/gone', false, 6));
  run(ns, ns.checkSnapshot('/d', '/s', 7));
  const [h0, h1] = ns.getFile('/d/f').chunks;
  run(ns, { op: 'version', handle: h0!, version: 5, pendingFrom: 4 });
  run(ns, { op: 'version', handle: h1!, version: 3, pendingFrom: 2 });
  run(ns, { op: 'bumped', handle: h1!, version: 3, servers: ['cs1', 'cs2'] });
  run(ns, { op: 'epoch', epoch: 3, t: 8 });
  return ns;
}

const canon = (s: NamespaceSnapshot) => ({ ...s, nodes: [...s.nodes].sort(([a], [b]) => (a < b ? -1 : 1)), links: s.links && [...s.links].sort(([a], [b]) => (a < b ? -1 : 1)) });

test('lines round trip: the loaded namespace equals the original, hard links one node again', () => {
  const ns = sample();
  const loader = new NamespaceLoader(new Namespace());
  for (const line of namespaceLines(ns)) loader.add(JSON.parse(line));
  const back = loader.finish();
  assert.deepEqual(canon(back.snapshot()), canon(ns.snapshot()));
  assert.equal(back.get('/h'), back.get('/d/f'));
  assert.equal(back.get('/d/e/g'), back.get('/d/f'));
  assert.equal(back.nextIno, ns.nextIno);
  // and it goes on exactly as the original
  for (const n of [ns, back]) run(n, n.checkLink('/d/f', '/k', 9));
  assert.deepEqual(canon(back.snapshot()), canon(ns.snapshot()));
});

test('the loader refuses what is not a checkpoint line', () => {
  const refuses = (lines: unknown[]) =>
    assert.throws(
      () => {
        const l = new NamespaceLoader(new Namespace());
        for (const x of lines) l.add(x);
        l.finish();
      },
      (e: unknown) => isGfsError(e, 'CORRUPT'),
    );
  const s = ['s', { nextHandle: '1', epoch: 1, appliedIndex: 0, nextIno: 1 }];
  refuses([]);
  refuses([['n', '/', { type: 'dir' }]]); // no "s" first
  refuses([s, ['x', 1]]);
  refuses([s, ['c', 'ab', 'one', 1]]);
  refuses([s, ['l', '/a', 7]]); // a link of a node it does not hold
  refuses([s, { complete: true }]);
});

test('a file of lines: written durably, read back whole; without its trailer recovery passes it over; a damaged line is refused', async () => {
  await withDir(async (dir) => {
    const ns = sample();
    const path = join(dir, checkpointFileName(2));
    const { bytes } = await writeCheckpointLines(path, 2, 1234, namespaceLines(ns));
    const text = await readFile(path, 'utf8');
    assert.equal(Buffer.byteLength(text), bytes);
    assert.deepEqual(await linesCheckpointHeader(path), { logSeq: 2, createdAtMs: 1234 });
    assert.deepEqual(canon((await loadLinesCheckpoint(path)).snapshot()), canon(ns.snapshot()));

    // A torn file (no trailer) is not whole.
    await truncate(path, bytes - 10);
    assert.ok((await linesCheckpointHeader(path)) instanceof Error);
    // One line damaged in the middle: refused as CORRUPT when read.
    await writeFile(path, text.replace('"n","/d/f"', '"n",/d/f"'));
    await assert.rejects(loadLinesCheckpoint(path), (e: unknown) => isGfsError(e, 'CORRUPT'));
    // A line missing (the trailer's count disagrees): refused.
    const lines = text.split('\n');
    await writeFile(path, [...lines.slice(0, 3), ...lines.slice(4)].join('\n'));
    await assert.rejects(loadLinesCheckpoint(path), (e: unknown) => isGfsError(e, 'CORRUPT'));
  });
});

test('recovery takes the newest whole checkpoint of lines, and passes a torn one over for the one before', async () => {
  await withDir(async (dir) => {
    const ns = new Namespace();
    const { oplog } = await OpLog.open({ dir, checkpointLogBytes: 1 << 30, apply: (rec) => ns.apply(rec as Op) });
    await oplog.append(ns.checkMkdir('/a', false, 1));
    await oplog.append(ns.checkCreate('/a/f', 3, 2));
    await oplog.close();
    // checkpoint 1 of the state so far: with log 1 kept, recovery may use it or replay.
    const ck1 = join(dir, checkpointFileName(1));
    await writeCheckpointLines(ck1, 1, 1, namespaceLines(new Namespace()));
    const ck2 = join(dir, checkpointFileName(2));
    await writeCheckpointLines(ck2, 2, 2, namespaceLines(ns));
    await writeFile(join(dir, logFileName(2)), '');
    let { oplog: o2, recovery } = await OpLog.open({ dir, checkpointLogBytes: 1 << 30, apply: () => undefined });
    assert.deepEqual((await namespaceOf(recovery.checkpoint)).snapshot(), ns.snapshot(), 'the newest whole checkpoint');
    await o2.close();
    // Torn: recovery goes back to checkpoint 1 and replays log 1 on it.
    await truncate(ck2, 40);
    ({ oplog: o2, recovery } = await OpLog.open({ dir, checkpointLogBytes: 1 << 30, apply: () => undefined }));
    const again = await namespaceOf(recovery.checkpoint);
    for (const r of recovery.records) again.apply(r as Op);
    assert.deepEqual(again.snapshot(), ns.snapshot());
    await o2.close();
  });
});
