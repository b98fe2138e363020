import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GfsClient, appendRecord, readRecords } from '../../client/client.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ChunksAnswer } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// Copy-on-write snapshots on a real cluster (issue 6): a snapshot shares
// every chunk; the first mutation of a shared chunk makes each chunkserver
// holding it copy it locally (chunk files on disk show exactly which), and no
// chunk data crosses the network for it (chunkserver byte counters); each
// side then reads exactly what was written to it. Snapshots taken under
// concurrent appends hold a prefix of the records, and everything survives a
// master SIGKILL (log replay rebuilds the reference counts).

const chunkSizeBytes = 256 * 1024;
const leaseMs = 1_500;
const replicas = 3;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('copy-on-write snapshots', { timeout: 120_000 }, () => {
  let cluster: TestCluster | undefined;
  let c: GfsClient;
  /** What each file must read as, for the restart test at the end. */
  const expected = new Map<string, Buffer>();

  before(async () => {
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, leaseMs, heartbeatMs: 200 });
    c = cluster.client();
  });

  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  /** Handle -> number of chunkservers with a .chunk file for it. */
  async function chunkFiles(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const cs of cluster!.chunkservers) {
      if (!cs) continue;
      for (const name of await readdir(join(cs.dir, 'chunks')).catch(() => [] as string[])) {
        if (!name.endsWith('.chunk')) continue;
        const h = name.slice(0, -'.chunk'.length);
        out.set(h, (out.get(h) ?? 0) + 1);
      }
    }
    return out;
  }
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

  /** Chunk data bytes that crossed the network into (pushes) or out of (reads) chunkservers. */
  async function netBytes(): Promise<{ pushReceived: number; readServed: number }> {
    let pushReceived = 0;
    let readServed = 0;
    for (const cs of cluster!.chunkservers) {
      const s = await rpcJson<{ bytes: { pushReceived: number; readServed: number } }>(cs!.url, '/debug/state');
      pushReceived += s.bytes.pushReceived;
      readServed += s.bytes.readServed;
    }
    return { pushReceived, readServed };
  }

  async function handles(path: string): Promise<string[]> {
    const a = await rpcJson<ChunksAnswer>(cluster!.masterUrl, '/api/chunks', { path, startIndex: 0, count: 1000 });
    return a.chunks.map((x) => x.handle);
  }

  async function snapshotCounters(): Promise<{ snapshots: number; copiesOnWrite: number; localCopies: number }> {
    const s = await rpcJson<{ snapshots: { snapshots: number; copiesOnWrite: number; localCopies: number } }>(cluster!.masterUrl, '/api/status');
    return s.snapshots;
  }

  async function assertReads(path: string, want: Buffer): Promise<void> {
    const st = await c.stat(path);
    assert.equal(st.sizeBytes, want.length, `size of ${path}`);
    const got = await c.read(path, 0, want.length + 1);
    assert.equal(got.length, want.length, `bytes read from ${path}`);
    assert.equal(sha(got), sha(want), `contents of ${path}`);
  }

  test('a file: both sides share chunks; the first write to a shared chunk copies it locally, once, on every holder', async () => {
    await c.mkdir('/t1', { parents: true });
    const src = '/t1/f';
    const snap = '/t1/f.snap';
    const data = randomBytes(4 * chunkSizeBytes + chunkSizeBytes / 2); // 4.5 chunks: the last one has room
    await c.create(src);
    await c.write(src, 0, data);
    const before = await handles(src);
    assert.equal(before.length, 5);
    const files0 = await chunkFiles();
    for (const h of before) assert.equal(files0.get(h), replicas, `chunk ${h} on every replica`);
    const counters0 = await snapshotCounters();

    const t0 = performance.now();
    await c.snapshot(src, snap);
    const snapMs = performance.now() - t0;
    assert.deepEqual(await handles(snap), before, 'the snapshot shares every chunk');
    assert.equal(total(await chunkFiles()), total(files0), 'a snapshot copies no data');
    await assertReads(snap, data);

    // Mutate both sides; count what crosses the network meanwhile.
    const net0 = await netBytes();
    const srcWant = Buffer.from(data);
    const snapWant = Buffer.from(data);
    // Writes above 64 KiB are pushed along the replica chain, smaller ones go inline with the request.
    // overwrite inside chunk 1 of the source: copy-on-write of chunk 1
    const w1 = randomBytes(100_000);
    await c.write(src, chunkSizeBytes + 100, w1);
    w1.copy(srcWant, chunkSizeBytes + 100);
    // record append to the source: its last chunk (4, shared) is copied
    const a1 = randomBytes(5000);
    assert.equal(await c.appendRaw(src, a1), data.length);
    // overwrite inside chunk 0 of the snapshot: copy-on-write of chunk 0
    const w2 = randomBytes(2000);
    await c.write(snap, 10, w2);
    w2.copy(snapWant, 10);
    // append to the snapshot: chunk 4 belongs to the snapshot alone now, no copy
    const a2 = randomBytes(3000);
    assert.equal(await c.appendRaw(snap, a2), data.length);
    // a second write to an already copied chunk copies nothing
    const w3 = randomBytes(70_000);
    await c.write(src, chunkSizeBytes + 5000, w3);
    w3.copy(srcWant, chunkSizeBytes + 5000);
    const net1 = await netBytes();

    assert.equal(net1.readServed - net0.readServed, 0, 'no chunkserver read chunk data from another for the copies');
    // Only the client's own (large) writes were pushed: each to every replica,
    // at least once and at most twice (the snapshot revoked the lease the
    // client had cached, so its first write after the snapshot is refused and
    // pushed again). A copy over the network would show as bytes served above.
    const written = w1.length + w3.length;
    const pushed = net1.pushReceived - net0.pushReceived;
    assert.ok(pushed >= replicas * written && pushed <= 2 * replicas * written, `pushed ${pushed} bytes for ${written} written`);
    assert.equal(pushed % (replicas * 10_000), 0, 'every push reached every replica (writes are multiples of 10 kB)');

    const srcAfter = await handles(src);
    const snapAfter = await handles(snap);
    assert.deepEqual(snapAfter.slice(1), before.slice(1), 'the snapshot keeps chunks 1-4');
    assert.notEqual(snapAfter[0], before[0], 'the snapshot copied chunk 0');
    assert.deepEqual(srcAfter.slice(0, 1).concat(srcAfter.slice(2, 4)), [before[0], before[2], before[3]], 'the source keeps chunks 0, 2, 3');
    assert.notEqual(srcAfter[1], before[1]);
    assert.notEqual(srcAfter[4], before[4]);
    const copies = [srcAfter[1]!, srcAfter[4]!, snapAfter[0]!];
    assert.equal(new Set([...copies, ...before]).size, before.length + 3);

    const files1 = await chunkFiles();
    assert.equal(total(files1) - total(files0), 3 * replicas, 'three chunks copied, on each of their replicas');
    for (const h of copies) assert.equal(files1.get(h), replicas, `copy ${h} made on every holder`);
    for (const h of before) assert.equal(files1.get(h), replicas, `original ${h} still there`);
    const counters1 = await snapshotCounters();
    assert.equal(counters1.snapshots - counters0.snapshots, 1);
    assert.equal(counters1.copiesOnWrite - counters0.copiesOnWrite, 3);
    assert.equal(counters1.localCopies - counters0.localCopies, 3 * replicas);

    const srcFinal = Buffer.concat([srcWant, a1]);
    const snapFinal = Buffer.concat([snapWant, a2]);
    await assertReads(src, srcFinal);
    await assertReads(snap, snapFinal);
    expected.set(src, srcFinal);
    expected.set(snap, snapFinal);
    // a fresh client (no cached locations) sees the same
    const fresh = cluster!.client();
    assert.equal(sha(await fresh.read(snap, 0, snapFinal.length)), sha(snapFinal));
    assert.equal(sha(await fresh.read(src, 0, srcFinal.length)), sha(srcFinal));
    assert.ok(snapMs < leaseMs + 3_000, `snapshot took ${snapMs.toFixed(0)} ms`);
  });

  test('a directory tree: every file shared, each side mutated independently; the CLI', async () => {
    await c.mkdir('/t2/dir/sub', { parents: true });
    const files: Record<string, Buffer> = {
      '/t2/dir/a': randomBytes(2 * chunkSizeBytes + 1234),
      '/t2/dir/sub/b': randomBytes(50_000),
      '/t2/dir/sub/c': Buffer.alloc(0),
    };
    for (const [p, d] of Object.entries(files)) {
      await c.create(p);
      if (d.length) await c.write(p, 0, d);
    }
    const files0 = await chunkFiles();
    const r = await cluster!.cli(['snapshot', '/t2/dir', '/t2/copy']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, 0, 'gfs snapshot prints nothing on success');
    assert.equal(total(await chunkFiles()), total(files0));
    const names = (await c.list('/t2/copy', { recursive: true })).map((e) => e.path.slice('/t2/copy'.length)).sort();
    assert.deepEqual(names, ['/a', '/sub', '/sub/b', '/sub/c']);

    // bad requests: one line on stderr, non-zero exit, nothing changes
    for (const [args, what] of [
      [['snapshot', '/t2/dir', '/t2/copy'], 'exists'],
      [['snapshot', '/t2/nope', '/t2/x'], 'no such'],
      [['snapshot', '/t2/dir', '/t2/dir/inside'], 'into itself'],
    ] as const) {
      const bad = await cluster!.cli([...args]);
      assert.notEqual(bad.code, 0, `${args.join(' ')} must fail`);
      assert.match(bad.stderr, new RegExp(what, 'i'));
      assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    }

    const want: Record<string, Buffer> = {};
    for (const [p, d] of Object.entries(files)) {
      want[p] = Buffer.from(d);
      want[p.replace('/t2/dir', '/t2/copy')] = Buffer.from(d);
    }
    const patch = (p: string, off: number, d: Buffer) => {
      const cur = want[p]!;
      const next = Buffer.alloc(Math.max(cur.length, off + d.length));
      cur.copy(next);
      d.copy(next, off);
      want[p] = next;
    };
    // source: overwrite the end of a's chunk 2; copy: overwrite a's chunk 0, append to sub/b, write the empty sub/c
    const x1 = randomBytes(3000);
    await c.write('/t2/dir/a', 2 * chunkSizeBytes + 100, x1);
    patch('/t2/dir/a', 2 * chunkSizeBytes + 100, x1);
    const x2 = randomBytes(4096);
    await c.write('/t2/copy/a', 0, x2);
    patch('/t2/copy/a', 0, x2);
    const x3 = randomBytes(777);
    const off = await c.appendRaw('/t2/copy/sub/b', x3);
    patch('/t2/copy/sub/b', off, x3);
    const x4 = randomBytes(10_000);
    await c.write('/t2/copy/sub/c', 0, x4);
    patch('/t2/copy/sub/c', 0, x4);
    // and the source's b, after the copy's b was copied: no copy needed any more
    const x5 = randomBytes(100);
    await c.write('/t2/dir/sub/b', 5, x5);
    patch('/t2/dir/sub/b', 5, x5);

    for (const [p, d] of Object.entries(want)) {
      await assertReads(p, d);
      expected.set(p, d);
    }
    // copied: a[2] (source), a[0] (copy), b[0] (copy); c got a fresh chunk
    assert.equal(total(await chunkFiles()) - total(files0), 4 * replicas);
  });

  test('a snapshot under concurrent appends holds a prefix of the records; the source keeps every acknowledged one', async () => {
    const path = '/t3/log';
    await c.mkdir('/t3', { parents: true });
    await c.create(path);
    interface Rec {
      key: string;
      startedAt: number;
      ackedAt?: number;
    }
    const recs = new Map<string, Rec>(); // payload sha -> record
    let stop = false;
    const worker = async (w: number) => {
      const wc = cluster!.client();
      for (let i = 0; !stop; i++) {
        const payload = Buffer.concat([Buffer.from(`w${w}-r${i}-`), randomBytes(1000 + ((i * 997) % 1000))]);
        const rec: Rec = { key: `w${w}-r${i}`, startedAt: performance.now() };
        recs.set(sha(payload), rec);
        await appendRecord(wc, path, payload);
        rec.ackedAt = performance.now();
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    const acked = (after: number) => [...recs.values()].filter((r) => r.startedAt > after && r.ackedAt !== undefined).length;
    try {
      // ~80 records of ~1.5 KiB: the snapshot falls in the middle of the first chunk, which both sides then share.
      await waitFor('appends before the snapshot', () => acked(0) >= 80, 20_000);
    } catch (e) {
      stop = true;
      throw e;
    }
    const snapStart = performance.now();
    await c.snapshot(path, '/t3/log.snap');
    const snapEnd = performance.now();
    try {
      await waitFor('appends after the snapshot', () => acked(snapEnd) >= 80, 20_000);
    } finally {
      stop = true;
      await Promise.all(workers);
    }

    const inSnap = new Set<string>();
    for await (const r of readRecords(c, '/t3/log.snap')) {
      const rec = recs.get(sha(r.payload));
      assert.ok(rec, `record at ${r.offset} of the snapshot was never appended`);
      inSnap.add(rec.key);
    }
    const inSrc = new Set<string>();
    for await (const r of readRecords(c, path)) {
      const rec = recs.get(sha(r.payload));
      assert.ok(rec, `record at ${r.offset} of the source was never appended`);
      inSrc.add(rec.key);
    }
    const all = [...recs.values()];
    const ackedBefore = all.filter((r) => r.ackedAt !== undefined && r.ackedAt < snapStart);
    const startedAfter = all.filter((r) => r.startedAt > snapEnd);
    assert.ok(ackedBefore.length >= 20, `only ${ackedBefore.length} records before the snapshot`);
    assert.ok(startedAfter.filter((r) => r.ackedAt !== undefined).length >= 20, 'appends went on after the snapshot');
    for (const r of ackedBefore) assert.ok(inSnap.has(r.key), `${r.key}, acknowledged before the snapshot, is missing from it`);
    for (const r of startedAfter) assert.ok(!inSnap.has(r.key), `${r.key}, appended after the snapshot, is in it`);
    for (const r of all) if (r.ackedAt !== undefined) assert.ok(inSrc.has(r.key), `acknowledged ${r.key} is missing from the source`);
    // the snapshot is a prefix per appender: no gaps in any one worker's sequence
    for (let w = 0; w < 4; w++) {
      const got = [...inSnap].filter((k) => k.startsWith(`w${w}-`)).map((k) => Number(k.split('-r')[1]));
      const max = Math.max(-1, ...got);
      assert.equal(got.length, max + 1, `worker ${w}: records 0..${max} all in the snapshot`);
    }
  });

  test('after a master SIGKILL and restart both sides read back correctly and reference counts are right', async () => {
    // A checkpoint first, so recovery uses a checkpoint and a log tail with snapshot and copy-on-write records.
    await rpcJson(cluster!.masterUrl, '/api/checkpoint', {});
    await c.snapshot('/t1/f', '/t1/f.snap2');
    expected.set('/t1/f.snap2', expected.get('/t1/f')!);
    await cluster!.restartMaster();
    await waitFor('the restarted master to leave safe mode', async () => !(await cluster!.status()).safeMode, 20_000);
    for (const [p, d] of expected) await assertReads(p, d);

    // Chunk 2 of /t1/f is shared by three files: a write after the restart copies it (refCount survived).
    const h2 = (await handles('/t1/f'))[2]!;
    assert.equal((await handles('/t1/f.snap'))[2], h2);
    assert.equal((await handles('/t1/f.snap2'))[2], h2);
    const w = randomBytes(512);
    await c.write('/t1/f', 2 * chunkSizeBytes + 1, w);
    const srcWant = Buffer.from(expected.get('/t1/f')!);
    w.copy(srcWant, 2 * chunkSizeBytes + 1);
    assert.notEqual((await handles('/t1/f'))[2], h2);
    await assertReads('/t1/f', srcWant);
    await assertReads('/t1/f.snap', expected.get('/t1/f.snap')!);
    await assertReads('/t1/f.snap2', expected.get('/t1/f')!);

    // Delete the source for good: chunks only it referred to go from disk; shared ones stay.
    const srcH = await handles('/t1/f');
    const keep = new Set([...(await handles('/t1/f.snap')), ...(await handles('/t1/f.snap2'))]);
    const onlySrc = srcH.filter((h) => !keep.has(h));
    assert.deepEqual(onlySrc, [srcH[2]], 'all but the chunk just copied are shared with /t1/f.snap2');
    await c.delete('/t1/f', { now: true });
    await waitFor('the source\'s own chunks to be reclaimed', async () => {
      const f = await chunkFiles();
      return onlySrc.every((h) => !f.has(h));
    });
    const f = await chunkFiles();
    for (const h of keep) assert.equal(f.get(h), replicas, `shared chunk ${h} kept`);
    await assertReads('/t1/f.snap', expected.get('/t1/f.snap')!);
    await assertReads('/t1/f.snap2', expected.get('/t1/f')!);

    // Then one snapshot: what the other still shares stays.
    const s1 = await handles('/t1/f.snap');
    const s2 = new Set(await handles('/t1/f.snap2'));
    await c.delete('/t1/f.snap', { now: true });
    await waitFor('the first snapshot\'s own chunks to be reclaimed', async () => {
      const f = await chunkFiles();
      return s1.filter((h) => !s2.has(h)).every((h) => !f.has(h));
    });
    for (const h of s2) assert.equal((await chunkFiles()).get(h), replicas);
    await assertReads('/t1/f.snap2', expected.get('/t1/f')!);
  });
});
