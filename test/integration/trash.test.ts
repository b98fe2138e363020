import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { GfsClient } from '../../client/client.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ChunksAnswer } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// Lazy deletion on a real cluster, through the CLI: `gfs rm` moves a file to
// the hidden trash (gone from `gfs ls`, listed by `gfs trash ls`, chunks
// kept), `gfs undelete` / `gfs trash restore` bring it back intact, `gfs rm
// --now` frees the chunks at once, and after the grace period the trash entry
// is reclaimed and its chunk files vanish from every chunkserver's disk
// (orphans deleted through heartbeat replies), even from a chunkserver that
// was down at the time.

const KiB = 1024;
const chunkSizeBytes = 256 * KiB;
const heartbeatMs = 200;
const deadMs = 1_500;
const leaseMs = 1_500;
const graceMs = 1_500;
const gcDeadlineMs = 20_000;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// One keep-alive pool for the whole file: closed once, after both clusters are gone.
after(() => closeRpc());

function helpers(get: () => TestCluster) {
  const gfs = async (args: string[], input?: Buffer): Promise<string> => {
    const r = await get().cli(args, input);
    assert.equal(r.code, 0, `gfs ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout.toString();
  };
  const gfsFails = async (args: string[], why: RegExp): Promise<void> => {
    const r = await get().cli(args);
    assert.notEqual(r.code, 0, `gfs ${args.join(' ')} succeeded`);
    assert.match(r.stderr, why);
    assert.equal(r.stderr.trim().split('\n').length, 1, `more than one line on stderr: ${r.stderr}`);
  };
  const handles = async (path: string): Promise<string[]> => {
    const a = await rpcJson<ChunksAnswer>(get().masterUrl, '/api/chunks', { path, startIndex: 0, count: 1000 });
    return a.chunks.map((c) => c.handle);
  };
  /** The chunkservers (by index) with a chunk file for handle on disk. */
  const onDisk = (handle: string): number[] =>
    get()
      .chunkservers.map((_, i) => i)
      .filter((i) => existsSync(join(get().dir, `cs${i}`, 'chunks', `${handle}.chunk`)));
  const counters = async () => ((await get().status()) as unknown as { counters: Record<string, number> }).counters;
  // Files are written and read back through the library (the CLI is what is tested for rm, undelete and trash).
  const put = async (path: string, size: number): Promise<string> => {
    const c = get().client();
    const data = randomBytes(size);
    await c.create(path);
    await c.write(path, 0, data);
    await c.sync(path);
    return sha256(data);
  };
  const getSha = async (path: string): Promise<string> => {
    const c = get().client();
    const size = (await c.stat(path)).sizeBytes;
    return sha256(await c.read(path, 0, size + 1));
  };
  return { gfs, gfsFails, handles, onDisk, counters, put, getSha };
}

describe('trash with the default grace period: delete, undelete, rm --now', { timeout: 180_000 }, () => {
  let cluster: TestCluster | undefined;
  const h = helpers(() => cluster!);

  before(async () => {
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, heartbeatMs, deadMs, leaseMs });
  });

  after(async () => {
    await cluster?.stop();
  });

  it('rm moves a file to the trash: hidden from ls, listed by trash ls, chunks kept; undelete brings back the same bytes', async () => {
    await h.gfs(['mkdir', '/t']);
    const sha = await h.put('/t/a', 2 * chunkSizeBytes + 1000);
    const chunks = await h.handles('/t/a');
    assert.equal(chunks.length, 3);

    await h.gfs(['rm', '/t/a']);
    assert.equal(await h.gfs(['ls', '/t']), '', 'ls still shows the deleted file');
    const root = await h.gfs(['ls', '/']);
    assert.doesNotMatch(root, /trash/, 'ls / shows the trash');
    assert.doesNotMatch(await h.gfs(['ls', '-R', '/']), /trash|\/t\/a/, 'ls -R / shows the trash');
    await h.gfsFails(['stat', '/t/a'], /no such file/);
    const trash = await h.gfs(['trash', 'ls']);
    assert.match(trash, / \/t\/a$/m, `trash ls: ${trash}`);
    // fsck of the namespace does not count it; its chunks are kept meanwhile.
    const fsck = await h.gfs(['fsck', '/']);
    assert.match(fsck, /files: 0 /);
    const beats = async () => (await Promise.all(cluster!.chunkservers.map((p) => rpcJson<{ counters: { heartbeats: number } }>(p!.url, '/debug/state')))).map((s) => s.counters.heartbeats);
    const b0 = await beats();
    await waitFor('three more heartbeats from every chunkserver', async () => (await beats()).every((b, i) => b >= b0[i]! + 3), 10_000, 100);
    for (const c of chunks) assert.equal(h.onDisk(c).length, 3, `chunk ${c} of a file in the trash lost replicas`);

    await h.gfs(['undelete', '/t/a']);
    assert.equal(await h.getSha('/t/a'), sha, 'undeleted file differs');
    assert.deepEqual(await h.handles('/t/a'), chunks);
    assert.equal((await h.gfs(['ls', '/t'])).trim(), 'a');
    assert.doesNotMatch(await h.gfs(['trash', 'ls']), /\/t\/a/);
    // Nothing is left behind in the trash.
    assert.equal(await h.gfs(['ls', '/.trash']), '', 'undelete left entries behind in the trash');
    assert.equal((await cluster!.cli(['fsck', '/'])).code, 0);

    // Same again with `trash restore`; undelete of something not in the trash fails with one line.
    await h.gfs(['rm', '/t/a']);
    await h.gfsFails(['undelete', '/t/never'], /nothing deleted at \/t\/never/);
    await h.gfs(['trash', 'restore', '/t/a']);
    assert.equal(await h.getSha('/t/a'), sha, 'restored file differs');
    await h.gfsFails(['undelete', '/t/a'], /nothing deleted/);
  });

  it('undelete into a path taken meanwhile fails and keeps the file in the trash; the latest deletion is restored first', async () => {
    const v1 = await h.put('/t/b', 1000);
    await h.gfs(['rm', '/t/b']);
    const v2 = await h.put('/t/b', chunkSizeBytes + 5);
    await h.gfsFails(['undelete', '/t/b'], /exists/);
    await h.gfs(['rm', '/t/b']);
    assert.equal((await h.gfs(['trash', 'ls'])).split('\n').filter((l) => l.endsWith(' /t/b')).length, 2);
    await h.gfs(['undelete', '/t/b']);
    assert.equal(await h.getSha('/t/b'), v2, 'undelete did not bring back the latest deletion');
    await h.gfs(['rm', '--now', '/t/b']);
    await h.gfs(['undelete', '/t/b']);
    assert.equal(await h.getSha('/t/b'), v1, 'the older deletion is not restorable after the newer one');
  });

  it('rm -r of a directory goes to the trash as a whole and comes back as a whole', async () => {
    await h.gfs(['mkdir', '-p', '/t/d/e']);
    const x = await h.put('/t/d/x', chunkSizeBytes + 1);
    const y = await h.put('/t/d/e/y', 10);
    await h.gfsFails(['rm', '/t/d'], /not empty/);
    await h.gfs(['rm', '-r', '/t/d']);
    assert.doesNotMatch(await h.gfs(['ls', '-R', '/t']), /\/t\/d/);
    assert.match(await h.gfs(['trash', 'ls']), / \/t\/d$/m);
    await h.gfs(['undelete', '/t/d']);
    assert.equal(await h.getSha('/t/d/x'), x);
    assert.equal(await h.getSha('/t/d/e/y'), y);
  });

  it('rm --now skips the trash: the chunk files leave every chunkserver at once', async () => {
    const before1 = await h.counters();
    await h.put('/t/now', 3 * chunkSizeBytes - 1);
    const chunks = await h.handles('/t/now');
    for (const c of chunks) assert.equal(h.onDisk(c).length, 3);
    await h.gfs(['rm', '--now', '/t/now']);
    assert.doesNotMatch(await h.gfs(['trash', 'ls']), /\/t\/now/);
    await h.gfsFails(['undelete', '/t/now'], /nothing deleted/);
    await waitFor('the chunk files of /t/now to be removed from every chunkserver', () => chunks.every((c) => h.onDisk(c).length === 0), gcDeadlineMs, 100);
    const after1 = await h.counters();
    assert.ok(after1.orphansDeleted! - before1.orphansDeleted! >= chunks.length * 3, `orphansDeleted went from ${before1.orphansDeleted} to ${after1.orphansDeleted}`);
    // The file restored earlier is untouched.
    assert.equal((await cluster!.cli(['fsck', '/'])).code, 0);
  });
});

describe(`trash reclaimed after a ${graceMs} ms grace period`, { timeout: 180_000 }, () => {
  let cluster: TestCluster | undefined;
  let client: GfsClient;
  const h = helpers(() => cluster!);

  before(async () => {
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, heartbeatMs, deadMs, leaseMs, trashGraceMs: graceMs });
    client = cluster.client();
  });

  after(async () => {
    await cluster?.stop();
  });

  it('a deleted file leaves the trash after the grace period and its chunk files leave every disk, even a chunkserver down at the time', async () => {
    await h.gfs(['mkdir', '/g']);
    const keep = await h.put('/g/keep', chunkSizeBytes + 77);
    await h.put('/g/a', 3 * chunkSizeBytes - 5);
    const chunks = await h.handles('/g/a');
    const keepChunks = await h.handles('/g/keep');
    const before1 = await h.counters();

    await client.delete('/g/a');
    const entry = (await client.trash()).find((e) => e.path === '/g/a');
    assert.ok(entry, 'the deleted file is not in the trash');
    assert.equal(entry.reclaimAtMs - entry.deletedAtMs, graceMs);
    // A chunkserver that is down while the file is reclaimed finds its chunks orphaned when it is back.
    const downIdx = 2;
    await cluster!.kill(cluster!.chunkservers[downIdx], 'SIGKILL');
    try {
      await waitFor('the trash entry to be reclaimed', async () => !(await client.trash()).some((e) => e.path === '/g/a'), gcDeadlineMs, 100);
      assert.doesNotMatch(await h.gfs(['trash', 'ls']), /\/g\/a/);
      await h.gfsFails(['undelete', '/g/a'], /nothing deleted/);
      await waitFor(
        'the chunk files of /g/a to be removed from the live chunkservers',
        () => chunks.every((c) => h.onDisk(c).every((i) => i === downIdx)),
        gcDeadlineMs,
        100,
      );
      for (const c of chunks) assert.deepEqual(h.onDisk(c), [downIdx], `chunk ${c} was not on the chunkserver that is down`);
    } finally {
      await cluster!.startChunkserver(downIdx);
    }
    await waitFor('the orphans on the restarted chunkserver to be removed', () => chunks.every((c) => h.onDisk(c).length === 0), gcDeadlineMs, 100);
    const after1 = await h.counters();
    assert.ok(after1.trashReclaimed! > before1.trashReclaimed!, 'trashReclaimed did not move');
    assert.ok(after1.orphansDeleted! - before1.orphansDeleted! >= chunks.length * 3, `orphansDeleted went from ${before1.orphansDeleted} to ${after1.orphansDeleted}`);
    // Nothing else was touched: the other file is whole, on all three servers, and the trash is empty.
    assert.equal(await h.getSha('/g/keep'), keep);
    for (const c of keepChunks) assert.equal(h.onDisk(c).length, 3);
    assert.equal(await h.gfs(['ls', '/.trash']), '');
    await waitFor('fsck healthy', async () => (await cluster!.cli(['fsck', '/'])).code === 0, gcDeadlineMs, 200);
  });
});
