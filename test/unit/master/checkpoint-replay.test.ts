import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCheckpointInWorker, replayNamespace } from '../../../master/checkpoint-replay.js';
import { loadLinesCheckpoint, namespaceOf } from '../../../master/checkpoint-stream.js';
import { Namespace, type NamespaceSnapshot, type Op } from '../../../master/core/namespace.js';
import { checkpointFileName, OpLog } from '../../../master/oplog.js';
import { isGfsError } from '../../../shared/errors.js';
import { pick, rng } from '../../../shared/rng.js';

// Issue 17: the master's checkpoint is built from the files in a worker thread (the event loop only
// switches logs). What it writes must be exactly the live state at the switch, and what a restart
// rebuilds from it plus the later logs must equal the live state at the end.

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gfs-ckreplay-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A seeded mix of every kind of namespace mutation, checked by the live namespace before logging, as the master does. */
async function workload(ns: Namespace, oplog: OpLog, seed: number, steps: number, t0: number): Promise<void> {
  const r = rng(seed);
  let t = t0;
  const append = async (op: Op | undefined) => {
    if (op !== undefined) await oplog.append(op);
  };
  for (let i = 0; i < steps; i++) {
    t++;
    const files = [...ns.nodes.entries()].filter(([p, n]) => n.type === 'file' && !p.startsWith('/.trash')).map(([p]) => p);
    const dirs = ns.subtree('/').filter((p) => ns.get(p)?.type === 'dir' && !p.startsWith('/.trash'));
    try {
      const kind = pick(r, ['mkdir', 'create', 'create', 'allocate', 'allocate', 'bump', 'rename', 'trash', 'delete', 'snapshot'] as const);
      if (kind === 'mkdir') await append(ns.checkMkdir(`${pick(r, dirs)}/d${i}`.replace('//', '/'), true, t));
      else if (kind === 'create') await append(ns.checkCreate(`${pick(r, dirs)}/f${i}`.replace('//', '/'), 3, t));
      else if (files.length === 0) continue;
      else if (kind === 'allocate') await append(ns.checkAllocate(pick(r, files), Math.floor(r() * 3), t));
      else if (kind === 'bump') {
        const handles = [...ns.chunks.keys()];
        if (handles.length === 0) continue;
        const h = pick(r, handles);
        const v = ns.chunks.get(h)!.version;
        await append({ op: 'version', handle: h, version: v + 1, pendingFrom: v });
        await append({ op: 'bumped', handle: h, version: v + 1, servers: ['cs1', 'cs2'] });
      } else if (kind === 'rename') await append(ns.checkRename(pick(r, files), `/r${i}`, t));
      else if (kind === 'trash') await append(ns.checkTrash(pick(r, files), `/.trash/${t}/x${i}`, false, t));
      else if (kind === 'delete') await append(ns.checkDelete(pick(r, files), false, t));
      else await append(ns.checkSnapshot(pick(r, files), `/s${i}`, t));
    } catch (e) {
      if (!isGfsError(e)) throw e; // a refused mutation (name taken, ...) is never logged
    }
  }
}

function json(s: NamespaceSnapshot): string {
  return JSON.stringify(s);
}

test('a checkpoint built from the files equals the live state at the switch; a restart from it equals the live state', async () => {
  await withDir(async (dir) => {
    const ns = new Namespace();
    const { oplog } = await OpLog.open({ dir, checkpointLogBytes: 4096, apply: (rec) => ns.apply(rec as Op) });
    await workload(ns, oplog, 7, 300, 1_000);
    // The live state at the moment of the switch (nothing is appended meanwhile in this test).
    const atSwitch = json(ns.snapshot());
    let job: { baseSeq: number | undefined; newSeq: number } | undefined;
    await oplog.checkpoint({
      fromFiles: async (j) => {
        job = j;
        return buildCheckpointInWorker(j);
      },
    });
    assert.equal(job?.baseSeq, undefined, 'the first checkpoint starts from log 1');
    const first = join(dir, checkpointFileName(job!.newSeq));
    assert.match(await readFile(first, 'utf8'), /^\{"format":2,.*\n(.*\n)+\{"complete":true,"lines":\d+\}\n$/, 'written as lines: header, entries, trailer');
    assert.equal(json((await loadLinesCheckpoint(first)).snapshot()), atSwitch, 'the worker rebuilt exactly the live state');

    // A second round on top of the first checkpoint, then a restart.
    await workload(ns, oplog, 8, 300, 5_000);
    const atSecond = json(ns.snapshot());
    let second: { baseSeq: number | undefined; newSeq: number } | undefined;
    await oplog.checkpoint({
      fromFiles: async (j) => {
        second = j;
        return buildCheckpointInWorker(j);
      },
    });
    assert.equal(second?.baseSeq, job!.newSeq, 'the next checkpoint builds on the previous one');
    const names = await readdir(dir);
    assert.ok(!names.includes(checkpointFileName(job!.newSeq)), 'the older checkpoint is deleted once the new one is durable');
    assert.equal(json((await loadLinesCheckpoint(join(dir, checkpointFileName(second!.newSeq)))).snapshot()), atSecond);
    await workload(ns, oplog, 9, 100, 9_000);
    const atEnd = json(ns.snapshot());
    await oplog.close();

    const { oplog: again, recovery } = await OpLog.open({ dir, checkpointLogBytes: 4096, apply: () => undefined });
    const restarted = await namespaceOf(recovery.checkpoint);
    for (const rec of recovery.records) restarted.apply(rec as Op);
    assert.equal(json(restarted.snapshot()), atEnd, 'checkpoint + later logs rebuild the live state');
    await again.close();
  });
});

test('appends go on while the worker builds the checkpoint: the live namespace is not paused for it', async () => {
  await withDir(async (dir) => {
    const ns = new Namespace();
    const { oplog } = await OpLog.open({ dir, checkpointLogBytes: 4096, apply: (rec) => ns.apply(rec as Op) });
    await workload(ns, oplog, 11, 200, 1_000);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const switched = new Promise<void>((r) => (started = r));
    let newSeq = 0;
    let atSwitch = '';
    const done = oplog.checkpoint({
      fromFiles: async (j) => {
        // Called right after the switch, before any later batch could be applied.
        atSwitch = json(ns.snapshot());
        newSeq = j.newSeq;
        started();
        await held; // the builder is still at work
        return buildCheckpointInWorker(j);
      },
    });
    await switched;
    // While the checkpoint is being built, mutations are logged and applied.
    const before = ns.appliedIndex;
    await workload(ns, oplog, 12, 50, 3_000);
    assert.ok(ns.appliedIndex > before, 'mutations applied while the checkpoint was being built');
    release();
    await done;
    assert.equal(json((await loadLinesCheckpoint(join(dir, checkpointFileName(newSeq)))).snapshot()), atSwitch, 'the checkpoint holds the state at the switch, not the later mutations');
    await oplog.close();
  });
});

test('a damaged closed log fails the checkpoint and deletes nothing', async () => {
  await withDir(async (dir) => {
    const ns = new Namespace();
    const { oplog } = await OpLog.open({ dir, checkpointLogBytes: 4096, apply: (rec) => ns.apply(rec as Op) });
    await workload(ns, oplog, 13, 100, 1_000);
    await assert.rejects(
      oplog.checkpoint({
        fromFiles: async (j) => {
          // Damage the log just closed: one byte in the middle of it.
          const path = join(j.dir, `oplog.${String(j.newSeq - 1).padStart(8, '0')}.log`);
          const { open } = await import('node:fs/promises');
          const fh = await open(path, 'r+');
          const size = (await fh.stat()).size;
          await fh.write(Buffer.from([0xff]), 0, 1, Math.floor(size / 2));
          await fh.close();
          return buildCheckpointInWorker(j);
        },
      }),
      /damaged|corrupt|crc/i,
    );
    const names = await readdir(dir);
    assert.ok(names.some((n) => n.startsWith('oplog.00000001')), 'the logs are kept');
    assert.ok(!names.some((n) => n.startsWith('checkpoint.')), 'no checkpoint written');
    await oplog.close();
  });
});

test('replayNamespace skips a record whose apply throws, as a restart does', async () => {
  await withDir(async (dir) => {
    const { oplog } = await OpLog.open({ dir, checkpointLogBytes: 1 << 20, apply: () => undefined });
    await oplog.append({ op: 'create', path: '/a', replication: 3, t: 1 });
    await oplog.append({ op: 'create', path: '/a', replication: 3, t: 2 });
    await oplog.append({ op: 'create', path: '/b', replication: 3, t: 3 });
    await oplog.close();
    const { ns, records, skipped } = await replayNamespace({ dir, baseSeq: undefined, newSeq: 2, createdAtMs: 0 });
    assert.equal(records, 3);
    assert.equal(skipped, 1);
    assert.equal(ns.appliedIndex, 3);
    assert.ok(ns.get('/a') && ns.get('/b'));
  });
});
