import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpLog, logFileName } from '../../../master/oplog.js';
import { isGfsError } from '../../../shared/errors.js';
import { makeLogger } from '../../../shared/log.js';
import { fillDisk, mountTmpfs } from '../../helpers/tmpfs.js';

// The op log on a full disk (a 1 MiB tmpfs): appends are refused with NO_SPACE and leave no
// half-written record, the state is logged once and shown in stats, and appends work again by
// themselves once space returns. After a reopen every acknowledged record is there and nothing else.

interface Rec {
  id: number;
  pad: string;
}

/** Runs fn on a fresh tmpfs of sizeBytes; skips the test when this process cannot mount one. */
async function withTmpfs(t: TestContext, sizeBytes: number, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gfs-full-'));
  const m = mountTmpfs(dir, sizeBytes);
  if ('skip' in m) {
    await rmdir(dir);
    t.skip(m.skip);
    return;
  }
  try {
    await fn(dir);
  } finally {
    m.unmount();
    await rmdir(dir);
  }
}

/** Fills the disk with a file; returns its path. */
async function fill(dir: string): Promise<string> {
  const path = join(dir, 'filler');
  fillDisk(path);
  return path;
}

function capture() {
  const lines: string[] = [];
  const log = makeLogger('test', { format: 'json', destination: { write: (s: string) => void lines.push(s) } });
  return { log, count: (msg: string) => lines.filter((l) => l.includes(msg)).length };
}

/** A record bigger than a page, so writing it needs space the full disk does not have. */
const rec = (id: number): Rec => ({ id, pad: 'x'.repeat(12 * 1024) });

async function reopenIds(logDir: string): Promise<{ ids: number[]; dropped: number }> {
  const { oplog, recovery } = await OpLog.open({ dir: logDir, checkpointLogBytes: 1 << 30, apply: () => undefined });
  await oplog.close();
  return { ids: recovery.records.map((r) => (r as Rec).id), dropped: recovery.droppedTailBytes };
}

test('full disk: NO_SPACE, nothing half-written, logged once, resumes when space returns', async (t) => {
  await withTmpfs(t, 1024 * 1024, async (dir) => {
    const logDir = join(dir, 'log');
    const { log, count } = capture();
    const applied: number[] = [];
    const { oplog } = await OpLog.open({ dir: logDir, checkpointLogBytes: 1 << 30, apply: (r) => applied.push((r as Rec).id), log });
    for (let id = 0; id < 5; id++) await oplog.append(rec(id));
    const goodBytes = oplog.stats.logBytes;

    const filler = await fill(dir);
    const refused = await Promise.allSettled([5, 6, 7].map((id) => oplog.append(rec(id))));
    for (const r of refused) {
      assert.equal(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason as unknown;
      assert.ok(isGfsError(e, 'NO_SPACE') && e.status === 507, `refused with ${String(e)}`);
    }
    await assert.rejects(oplog.append(rec(8)), (e: unknown) => isGfsError(e, 'NO_SPACE'));
    assert.equal((await stat(join(logDir, logFileName(1)))).size, goodBytes, 'no half-written record');
    assert.equal(oplog.stats.logBytes, goodBytes);
    assert.equal(oplog.stats.noSpace, true);
    assert.equal(oplog.stats.noSpaceRefusals, 4);
    assert.ok(oplog.stats.noSpaceSinceMs! > 0);
    assert.equal(count('oplog: disk full'), 1, 'logged once, not per request');
    assert.deepEqual(applied, [0, 1, 2, 3, 4]);

    await rm(filler);
    await oplog.append(rec(9));
    assert.equal(oplog.stats.noSpace, false);
    assert.equal(count('oplog: space again'), 1);
    await oplog.append(rec(10));
    assert.deepEqual(applied, [0, 1, 2, 3, 4, 9, 10]);
    await oplog.close();

    assert.deepEqual(await reopenIds(logDir), { ids: [0, 1, 2, 3, 4, 9, 10], dropped: 0 });
  });
});

test('full disk with log replicas: the shipped batch is answered at once, held, and written once space returns; new appends get NO_SPACE', async (t) => {
  await withTmpfs(t, 1024 * 1024, async (dir) => {
    const logDir = join(dir, 'log');
    const { log, count } = capture();
    const shipped: number[] = [];
    const applied: number[] = [];
    const replicate = async (records: string[]) => {
      for (const r of records) shipped.push((JSON.parse(r) as Rec).id);
    };
    const { oplog } = await OpLog.open({ dir: logDir, checkpointLogBytes: 1 << 30, apply: (r) => applied.push((r as Rec).id), replicate, log });
    for (let id = 0; id < 3; id++) await oplog.append(rec(id));

    const filler = await fill(dir);
    // The replicas have record 3: its caller learns the outcome is unknown, and it is not dropped here.
    await assert.rejects(oplog.append(rec(3)), (e: unknown) => isGfsError(e, 'NO_SPACE') && e.detail?.outcomeUnknown === true);
    assert.equal(oplog.stats.noSpace, true);
    // Nothing may go ahead of it.
    await assert.rejects(oplog.append(rec(4)), (e: unknown) => isGfsError(e, 'NO_SPACE') && e.detail?.outcomeUnknown === undefined);
    assert.deepEqual(applied, [0, 1, 2]);
    assert.equal(count('oplog: disk full'), 1);

    await rm(filler);
    const until = Date.now() + 10_000;
    while (oplog.stats.noSpace) {
      assert.ok(Date.now() < until, 'the held batch was written after space returned');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(applied, [0, 1, 2, 3]);
    await oplog.append(rec(5));
    assert.deepEqual(shipped, [0, 1, 2, 3, 5], 'the held batch was shipped once');
    assert.equal(count('oplog: disk full'), 1, 'retries are not logged');
    await oplog.close();
    assert.deepEqual(await reopenIds(logDir), { ids: [0, 1, 2, 3, 5], dropped: 0 });
  });
});

test('full disk with replicate but no log replicas (hasLogReplicas false): refused, never held', async (t) => {
  await withTmpfs(t, 1024 * 1024, async (dir) => {
    const logDir = join(dir, 'log');
    const { oplog } = await OpLog.open({ dir: logDir, checkpointLogBytes: 1 << 30, apply: () => undefined, replicate: async () => undefined, hasLogReplicas: () => false });
    await oplog.append(rec(0));
    const filler = await fill(dir);
    await assert.rejects(oplog.append(rec(1)), (e: unknown) => isGfsError(e, 'NO_SPACE') && e.detail?.outcomeUnknown === undefined);
    await rm(filler);
    await oplog.append(rec(2));
    await oplog.close();
    assert.deepEqual(await reopenIds(logDir), { ids: [0, 2], dropped: 0 });
  });
});

test('a checkpoint on a full disk fails without leaving its temp file; the log goes on', async (t) => {
  await withTmpfs(t, 1024 * 1024, async (dir) => {
    const logDir = join(dir, 'log');
    const { oplog } = await OpLog.open({ dir: logDir, checkpointLogBytes: 1 << 30, apply: () => undefined });
    for (let id = 0; id < 3; id++) await oplog.append(rec(id));
    const filler = await fill(dir);
    await assert.rejects(oplog.checkpoint(() => ({ big: 'y'.repeat(256 * 1024) })), (e: unknown) => (e as { code?: string }).code === 'ENOSPC');
    assert.deepEqual((await readdir(logDir)).filter((n) => n.endsWith('.tmp') || n.startsWith('checkpoint')), [], 'no checkpoint or temp file left');
    await rm(filler);
    await oplog.append(rec(3));
    await oplog.close();
    assert.deepEqual(await reopenIds(logDir), { ids: [0, 1, 2, 3], dropped: 0 });
  });
});
