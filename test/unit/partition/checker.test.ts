import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { check, defaultMinimums, shortfalls, type CheckInput, type FileState, type ServerActs } from '../../../scripts/partition/checker.js';
import type { HistoryEntry } from '../../../scripts/partition/history.js';
import { GrantLog, LeaseMap, type GrantRecord } from '../../../master/core/leases.js';

// The partition checker's own tests: hand-made histories and final states
// with one kind of violation each are flagged, naming the operations
// involved; clean ones pass.

const CS = 1024; // chunk size of the made-up files
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const bytes = (n: number, fill: number) => Buffer.alloc(n, fill);

let seq = 0;
function op(e: Partial<HistoryEntry> & Pick<HistoryEntry, 'op' | 'path'>): HistoryEntry {
  return { proc: 0, seq: seq++, invokeMs: 1000, completeMs: 1010, status: 'ok', ...e };
}
function write(path: string, offset: number, data: Buffer, t: number, status: HistoryEntry['status'] = 'ok'): HistoryEntry {
  return op({ op: 'write', path, offset, sizeBytes: data.length, sha: sha(data), invokeMs: t, completeMs: t + 10, status });
}
function append(path: string, offset: number, data: Buffer, t: number): HistoryEntry {
  return op({ op: 'append', path, offset, sizeBytes: data.length, sha: sha(data), invokeMs: t, completeMs: t + 10 });
}
function read(path: string, offset: number, got: Buffer, size: number, t: number): HistoryEntry {
  return op({ op: 'read', path, offset, sizeBytes: size, gotBytes: got.length, sha: sha(got), invokeMs: t, completeMs: t + 5 });
}
function act(server: string, handle: string, version: number, first: number, last: number, believedExpiryMs = last + 1000): ServerActs {
  return { server, handle, version, firstActMs: first, lastActMs: last, acts: 3, believedExpiryMs };
}
function grant(handle: string, version: number, primary: string, at: number, until: number): GrantRecord {
  return { handle, version, primary, secondaries: [], grantedAtMs: at, expiresAtMs: until, extensions: 0 };
}

/** A cluster of made-up replicas: chunk bytes per replica and handle. */
class Replicas {
  readonly data = new Map<string, Buffer>();
  put(replica: string, handle: string, chunk: Buffer): void {
    this.data.set(`${replica}/${handle}`, Buffer.from(chunk));
  }
  final(files: Record<string, FileState>): CheckInput['final'] {
    return {
      files,
      readChunk: async (replica, handle) => this.data.get(`${replica}/${handle}`) ?? { error: `${replica} has no ${handle}` },
    };
  }
}

/** A clean run: a file with two writes, a shared file with two appends, reads after the acks, primaries one after another. */
function clean(): CheckInput {
  const a = bytes(100, 1);
  const b = bytes(200, 2);
  const r1 = bytes(50, 3);
  const r2 = bytes(60, 4);
  const history = [
    op({ op: 'mkdir', path: '/d' }),
    op({ op: 'create', path: '/d/w' }),
    op({ op: 'create', path: '/d/a' }),
    write('/d/w', 0, a, 1000),
    write('/d/w', CS + 10, b, 1100), // second chunk
    append('/d/a', 0, r1, 1200),
    append('/d/a', 50, r2, 1300),
    read('/d/w', 0, a, 100, 1500),
    read('/d/a', 50, r2, 60, 1500),
    // A read invoked before the write was acknowledged may see anything.
    read('/d/w', CS + 10, bytes(200, 0), 200, 1105),
    // A write that failed, and one whose outcome is unknown: nothing is required of them.
    write('/d/w', 400, bytes(10, 9), 1600, 'fail'),
    write('/d/w', 500, bytes(10, 9), 1700, 'unknown'),
    op({ op: 'create', path: '/d/maybe', status: 'unknown' }),
  ];
  const w0 = Buffer.alloc(CS);
  a.copy(w0, 0);
  const w1 = Buffer.alloc(CS);
  b.copy(w1, 10);
  const a0 = Buffer.concat([r1, r2]);
  const reps = new Replicas();
  for (const r of ['cs0', 'cs1', 'cs2']) {
    reps.put(r, 'h0', w0);
    reps.put(r, 'h1', w1);
    reps.put(r, 'ha', a0);
  }
  // A stale replica the master does not list may lack anything.
  reps.put('cs3', 'h0', Buffer.alloc(CS));
  const files: Record<string, FileState> = {
    '/d': { exists: true, chunkSizeBytes: CS, chunks: [] },
    '/d/w': {
      exists: true,
      chunkSizeBytes: CS,
      chunks: [
        { index: 0, handle: 'h0', version: 3, replicas: ['cs0', 'cs1', 'cs2'] },
        { index: 1, handle: 'h1', version: 2, replicas: ['cs0', 'cs1', 'cs2'] },
      ],
    },
    '/d/a': { exists: true, chunkSizeBytes: CS, chunks: [{ index: 0, handle: 'ha', version: 2, replicas: ['cs0', 'cs1', 'cs2'] }] },
    '/d/maybe': { exists: false, chunkSizeBytes: CS, chunks: [] },
  };
  return {
    history,
    primaryActs: [act('cs0', 'h0', 2, 1000, 1500, 1600), act('cs1', 'h0', 3, 2000, 2500), act('cs1', 'h0', 4, 2600, 2700), act('cs2', 'ha', 2, 1200, 1300)],
    grants: [grant('h0', 2, 'cs0', 990, 1700), grant('h0', 3, 'cs1', 1800, 2600), grant('h0', 4, 'cs1', 2550, 3000), grant('ha', 2, 'cs2', 1100, 1400)],
    final: reps.final(files),
  };
}

async function kinds(input: CheckInput): Promise<string[]> {
  return (await check(input)).violations.map((v) => `${v.invariant} ${v.kind}`);
}

describe('partition checker', () => {
  it('passes a clean history, and counts operations by type and outcome', async () => {
    const r = await check(clean());
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.counts.write, { ok: 2, fail: 1, unknown: 1 });
    assert.deepEqual(r.counts.read, { ok: 3, fail: 0, unknown: 0 });
    assert.equal(r.checked.ackedMutations, 4);
    assert.equal(r.checked.constrainedReads, 2);
    assert.equal(r.checked.replicaChunksRead, 9);
    assert.equal(r.checked.ackedMetadata, 3);
  });

  describe('invariant 5: deletes and undeletes stay as last acknowledged', () => {
    /** A clean run plus deleter paths, each with its final state given. */
    function withDeletes(paths: { ops: Partial<HistoryEntry>[]; exists: boolean }[]): CheckInput {
      const i = clean();
      paths.forEach((p, k) => {
        const path = `/del/p${k}`;
        for (const o of p.ops) i.history.push(op({ op: 'create', path, proc: 1, ...o }));
        i.final.files[path] = { exists: p.exists, chunkSizeBytes: CS, chunks: [] };
      });
      return i;
    }

    it('passes paths in their last acknowledged state, and counts what it checked', async () => {
      const r = await check(
        withDeletes([
          { ops: [{ op: 'create' }, { op: 'delete' }], exists: false },
          { ops: [{ op: 'mkdir' }, { op: 'delete' }, { op: 'undelete' }], exists: true },
          // A refused undelete changes nothing: the delete stands.
          { ops: [{ op: 'create' }, { op: 'delete' }, { op: 'undelete', status: 'fail' }], exists: false },
        ]),
      );
      assert.deepEqual(r.violations, []);
      assert.equal(r.checked.deletedPaths, 2);
      assert.equal(r.checked.undeletedPaths, 1);
      assert.deepEqual(r.counts.delete, { ok: 3, fail: 0, unknown: 0 });
      // A deleted path is not "an acknowledged create that is gone" (invariant 4).
      assert.equal(r.checked.ackedMetadata, 3);
    });

    it('flags an acknowledged delete undone, and an acknowledged undelete lost, naming the operations', async () => {
      const i = withDeletes([
        { ops: [{ op: 'create' }, { op: 'delete' }], exists: true },
        { ops: [{ op: 'create' }, { op: 'delete' }, { op: 'undelete' }], exists: false },
      ]);
      const r = await check(i);
      assert.deepEqual(r.violations.map((v) => `${v.invariant} ${v.kind}`), ['5 undone-delete', '5 undone-create-or-undelete']);
      const del = i.history.find((e) => e.path === '/del/p0' && e.op === 'delete')!;
      assert.ok(r.violations[0]!.ops.includes(`${del.proc}:${del.seq}`));
      assert.match(r.violations[0]!.message, /\/del\/p0 exists at the end, but its last acknowledged operation was delete/);
    });

    it('accepts either state after an operation with an unknown outcome, and does not count the path', async () => {
      const r = await check(
        withDeletes([
          { ops: [{ op: 'create' }, { op: 'delete', status: 'unknown' }], exists: true },
          { ops: [{ op: 'create' }, { op: 'delete' }, { op: 'undelete', status: 'unknown' }], exists: false },
          // An unknown delete early on may still land after a later acknowledged undelete.
          { ops: [{ op: 'create' }, { op: 'delete', status: 'unknown' }, { op: 'undelete' }], exists: false },
        ]),
      );
      assert.deepEqual(r.violations, []);
      assert.equal(r.checked.eitherPaths, 3);
      assert.equal(r.checked.deletedPaths + r.checked.undeletedPaths, 0);
    });
  });

  describe('minimums: a run that checked too little does not pass', () => {
    it('scales the defaults with the duration, never below 1', () => {
      const short = defaultMinimums(3_000);
      const long = defaultMinimums(60_000);
      for (const k of Object.keys(short) as (keyof typeof short)[]) {
        assert.ok(short[k] >= 1, `${k} minimum ${short[k]}`);
        assert.ok(long[k] >= short[k], `${k}: ${long[k]} for 60 s < ${short[k]} for 3 s`);
      }
      assert.ok(long.appends > short.appends);
    });

    it('names every kind that fell short, and nothing when all are met', async () => {
      const i = clean();
      const r = await check(i);
      const none = { writes: 0, appends: 0, creates: 0, deletes: 0, undeletes: 0, reads: 0 };
      assert.deepEqual(shortfalls(r, i.history, none), []);
      assert.deepEqual(shortfalls(r, i.history, { ...none, writes: 2, appends: 2, creates: 3, reads: 2 }), []);
      assert.deepEqual(shortfalls(r, i.history, { ...none, writes: 3, deletes: 1 }), ['2 writes < 3', '0 deletes < 1']);
      // Nothing acknowledged at all: every minimum falls short.
      const empty = await check({ history: [], primaryActs: [], final: i.final });
      assert.equal(shortfalls(empty, [], defaultMinimums(20_000)).length, 6);
    });
  });

  describe('invariant 1: never two primaries at once', () => {
    it('flags two servers acting as primary of one chunk at overlapping times', async () => {
      const i = clean();
      i.primaryActs.push(act('cs2', 'h0', 5, 2650, 2800));
      const r = await check(i);
      assert.deepEqual(r.violations.map((v) => v.kind), ['overlapping-primaries']);
      assert.deepEqual(r.violations[0]!.ops.sort(), ['cs1 h0@4', 'cs2 h0@5']);
    });

    it('flags the primary of an older version acting after a newer one began', async () => {
      const i = clean();
      i.primaryActs.push(act('cs2', 'h0', 1, 2560, 2590)); // between cs1's v3 and v4: no overlap in time, but older than both v2 and v3
      const ks = await kinds(i);
      assert.ok(ks.length > 0 && ks.every((k) => k === '1 old-primary-after-new'), ks.join());
    });

    it('flags two servers primary at one version', async () => {
      const i = clean();
      i.primaryActs.push(act('cs3', 'ha', 2, 5000, 5100));
      assert.ok((await kinds(i)).includes('1 two-primaries-one-version'));
    });

    it('flags a primary acting past the lease expiry it believed in', async () => {
      const i = clean();
      i.primaryActs[0] = act('cs0', 'h0', 2, 1000, 1500, 1400);
      assert.deepEqual(await kinds(i), ['1 acted-past-own-lease']);
    });

    it('flags acts the master never granted, or after its record of the lease expired', async () => {
      const i = clean();
      i.primaryActs.push(act('cs3', 'hx', 7, 100, 200));
      i.grants!.push(grant('hx', 7, 'cs0', 50, 500));
      assert.deepEqual(await kinds(i), ['1 acted-without-grant']);
      const j = clean();
      j.grants![0] = grant('h0', 2, 'cs0', 990, 1400);
      assert.deepEqual(await kinds(j), ['1 acted-after-master-expiry']);
      // Within the slack for a missed extension, it is not flagged.
      assert.deepEqual(await kinds({ ...j, grantSlackMs: 200 }), []);
    });

    it('flags the master granting overlapping leases to different servers', async () => {
      const i = clean();
      i.grants![1] = grant('h0', 3, 'cs1', 1650, 2600);
      const r = await check(i);
      assert.deepEqual(r.violations.map((v) => v.kind), ['overlapping-grants']);
      assert.deepEqual(r.violations[0]!.ops, ['master h0@2', 'master h0@3']);
    });
  });

  describe('invariant 2: acknowledged data on every listed replica', () => {
    it('flags an acknowledged write missing on one listed replica, naming the write', async () => {
      const i = clean();
      const orig = i.final;
      i.final = {
        files: orig.files,
        readChunk: async (replica, handle, version) => (replica === 'cs2' && handle === 'h1' ? Buffer.alloc(CS) : orig.readChunk(replica, handle, version)),
      };
      const r = await check(i);
      assert.deepEqual(r.violations.map((v) => v.kind), ['acked-data-missing']);
      assert.match(r.violations[0]!.message, /cs2/);
      assert.deepEqual(r.violations[0]!.ops, [`0:${i.history[4]!.seq}`]);
    });

    it('flags an acknowledged append that differs on a listed replica, or a replica too short', async () => {
      const i = clean();
      const orig = i.final;
      i.final = { files: orig.files, readChunk: async (replica, handle, version) => (replica === 'cs1' && handle === 'ha' ? Buffer.alloc(70, 3) : orig.readChunk(replica, handle, version)) };
      const r = await check(i);
      assert.deepEqual(r.violations.map((v) => v.kind), ['acked-data-missing']);
      assert.deepEqual(r.violations[0]!.ops, [`0:${i.history[6]!.seq}`]);
    });

    it('flags a chunk holding acknowledged data with no listed replica, and a listed replica that cannot serve', async () => {
      const i = clean();
      i.final.files['/d/a']!.chunks[0]!.replicas = [];
      assert.deepEqual(await kinds(i), ['2 no-listed-replica']);
      const j = clean();
      j.final.files['/d/a']!.chunks[0]!.replicas.push('cs4');
      assert.deepEqual(await kinds(j), ['2 listed-replica-unreadable']);
      // One the master no longer lists when asked again (healing dropped it after the listing) is no violation.
      const k = clean();
      k.final.files['/d/a']!.chunks[0]!.replicas.push('cs4');
      const orig = k.final;
      k.final = { files: orig.files, readChunk: async (replica, handle, version) => (replica === 'cs4' ? { error: 'no replica here', unlisted: true } : orig.readChunk(replica, handle, version)) };
      const r = await check(k);
      assert.deepEqual(r.violations, []);
      assert.equal(r.checked.replicasDroppedMeanwhile, 1);
    });

    it('flags a file with acknowledged data that is gone', async () => {
      const i = clean();
      i.final.files['/d/w'] = { exists: false, chunkSizeBytes: CS, chunks: [] };
      assert.deepEqual((await kinds(i)).sort(), ['2 file-lost', '4 metadata-lost']);
    });

    it('flags two acknowledged mutations claiming overlapping ranges', async () => {
      const i = clean();
      const dup = bytes(60, 4);
      i.history.push(append('/d/a', 80, dup, 1400));
      const ks = await kinds(i);
      assert.ok(ks.includes('2 overlapping-acks'), ks.join());
    });
  });

  describe('invariant 3: no stale data served', () => {
    it('flags a read, invoked after an acknowledgement, that returned other bytes', async () => {
      const i = clean();
      const r = read('/d/w', 0, bytes(100, 0), 100, 2000);
      i.history.push(r);
      const res = await check(i);
      assert.deepEqual(res.violations.map((v) => v.kind), ['stale-read']);
      assert.deepEqual(res.violations[0]!.ops, [`0:${r.seq}`, `0:${i.history[3]!.seq}`]);
    });

    it('flags a read of an acknowledged range that came back short', async () => {
      const i = clean();
      i.history.push(read('/d/a', 50, Buffer.alloc(0), 60, 2000));
      assert.deepEqual(await kinds(i), ['3 short-read']);
    });

    it('does not constrain reads that overlapped the write, or failed', async () => {
      const i = clean();
      i.history.push(read('/d/w', 0, bytes(100, 0), 100, 1005)); // invoked before the write completed
      i.history.push({ ...read('/d/w', 0, bytes(100, 0), 100, 3000), status: 'fail' });
      assert.deepEqual(await kinds(i), []);
    });
  });

  describe('invariant 4: acknowledged metadata survives', () => {
    it('flags an acknowledged create or mkdir that is gone, not an unknown one', async () => {
      const i = clean();
      i.history.push(op({ op: 'create', path: '/d/m1' }));
      i.history.push(op({ op: 'create', path: '/d/m2', status: 'unknown' }));
      i.final.files['/d/m1'] = { exists: false, chunkSizeBytes: CS, chunks: [] };
      i.final.files['/d/m2'] = { exists: false, chunkSizeBytes: CS, chunks: [] };
      const r = await check(i);
      assert.deepEqual(r.violations.map((v) => `${v.kind} ${v.ops.join()}`), [`metadata-lost 0:${i.history[i.history.length - 2]!.seq}`]);
    });
  });

  describe('the master grant log it reads', () => {
    it('ends a lease early on a regrant to the same primary or a revocation, never on a grant to another primary', () => {
      const log = new GrantLog(10_000, () => Date.now());
      log.granted('h', 2, 'cs0', ['cs1'], 3000, 1000);
      log.extended('h', 2, 3000, 2000); // until 5000
      log.granted('h', 3, 'cs0', ['cs2'], 3000, 2500); // regrant: v2 ends at 2500
      const leases = new LeaseMap(log);
      leases.set('h', { primary: 'cs0', secondaries: ['cs2'], version: 3, expiresAtMs: 0 });
      leases.delete('h'); // revoked now (Date.now()), which is later than these made-up times: v3 keeps its expiry
      log.granted('h', 4, 'cs1', [], 3000, 6000);
      log.granted('x', 2, 'cs0', [], 3000, 1000);
      log.granted('x', 3, 'cs1', [], 3000, 2000); // another primary: v2 keeps its expiry (a checker flags the overlap)
      const byKey = new Map(log.list().map((g) => [`${g.handle}@${g.version}`, g]));
      assert.equal(byKey.get('h@2')!.expiresAtMs, 2500);
      assert.equal(byKey.get('h@2')!.extensions, 1);
      assert.equal(byKey.get('h@3')!.expiresAtMs, 5500);
      assert.equal(byKey.get('x@2')!.expiresAtMs, 4000);
      const small = new GrantLog(2, () => Date.now());
      for (let v = 1; v <= 5; v++) small.granted('h', v, 'cs0', [], 1000, v * 10);
      assert.deepEqual(small.list().map((g) => g.version), [4, 5]);
    });

    it('a revocation cuts the lease short at the moment of the revocation', () => {
      const log = new GrantLog(10_000, () => Date.now());
      const now = Date.now();
      log.granted('h', 2, 'cs0', [], 60_000, now);
      const leases = new LeaseMap(log);
      leases.set('h', { primary: 'cs0', secondaries: [], version: 2, expiresAtMs: 0 });
      assert.equal(leases.delete('h'), true);
      const g = log.list()[0]!;
      assert.ok(g.expiresAtMs <= Date.now() && g.expiresAtMs >= now, `expiry ${g.expiresAtMs - now} ms after the grant`);
    });
  });
});

