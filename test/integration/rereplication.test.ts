import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { GfsClient } from '../../client/client.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ChunkLocation } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// Issue 5 on a real cluster of four chunkservers: SIGKILL one and every chunk
// it held returns to its replication goal, byte for byte; kill a second and
// the chunks can only be under-replicated (fsck says so, reads still work);
// bring them back and the extra replicas are trimmed to exactly the goal
// without ever dipping below it; restart all chunkservers; a lease grant whose
// version bump reaches no replica loses nothing; SIGKILL the master in the
// middle of a write workload: safe mode (held until the test lets the
// chunkservers report, then ended by their reports, not the timeout), then
// healthy, and every acknowledged file intact.

const KiB = 1024;
const chunkSizeBytes = 256 * KiB;
const heartbeatMs = 200;
const deadMs = 1_500;
const leaseMs = 1_500;
const healDeadlineMs = 30_000;
const emptyChunks = 8;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface FsckChunk {
  index: number;
  handle: string;
  version: number;
  live: string[];
  corrupt: string[];
  state: string;
}
interface Fsck {
  files: { path: string; replication: number; chunks: FsckChunk[] }[];
  summary: { files: number; dirs: number; chunks: number; healthy: number; underReplicated: number; overReplicated: number; missing: number; corrupt: number };
}

describe('re-replication, trimming and restarts on a 4-chunkserver cluster', { timeout: 150_000 }, () => {
  let cluster: TestCluster | undefined;
  let client: GfsClient;
  /** Acknowledged files: path -> sha256 of their content. */
  const files = new Map<string, { sha: string; size: number }>();

  before(async () => {
    cluster = await startCluster({ chunkservers: 4, chunkSizeBytes, heartbeatMs, deadMs, leaseMs, safeModeMs: 30_000 });
    client = cluster.client();
  });

  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  const fsck = (path = '/') => rpcJson<Fsck>(cluster!.masterUrl, '/api/fsck', undefined, { query: { path } });
  const chunksOf = (f: Fsck) => f.files.flatMap((x) => x.chunks.map((c) => ({ ...c, path: x.path, replication: x.replication })));

  async function gfs(args: string[], input?: Buffer): Promise<Buffer> {
    const r = await cluster!.cli(args, input);
    assert.equal(r.code, 0, `gfs ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  async function aliveIds(): Promise<string[]> {
    return (await cluster!.status()).chunkservers.filter((c) => c.alive).map((c) => c.id);
  }

  /**
   * Every file read whole through the client, and every chunk read from every
   * replica the master lists for it (what `gfs cat --replica` does): all equal to what was put.
   */
  async function verifyAll(expectReplicas: number): Promise<void> {
    const reader = cluster!.client();
    for (const [path, want] of files) {
      const got = await reader.read(path, 0, want.size + 1);
      assert.equal(got.length, want.size, `${path}: read returned ${got.length} bytes, not ${want.size}`);
      assert.equal(sha256(got), want.sha, `${path}: read returned different bytes`);
      // Listings settle within a few heartbeats after restarts (a report sent before a version
      // change can briefly unlist a replica); wait for that, then check every listed replica.
      const loc = await waitFor(
        `${path} listed on ${expectReplicas} replicas per chunk`,
        async () => {
          const l = await reader.locate(path, 0, 1000, true);
          return [...l.chunks.values()].every((c) => c.replicas.length === expectReplicas) ? l : undefined;
        },
        15_000,
        100,
      ).catch(async () => reader.locate(path, 0, 1000, true));
      for (const c of loc.chunks.values()) {
        assert.equal(c.replicas.length, expectReplicas, `${path}[${c.index}] listed on ${c.replicas.map((r) => r.id).join(',')}`);
        const part = got.subarray(c.index * chunkSizeBytes, (c.index + 1) * chunkSizeBytes);
        for (const r of c.replicas) {
          const b = await reader.readReplica(r, c.handle, c.version, 0, chunkSizeBytes);
          assert.ok(b.equals(part), `${path}[${c.index}]: the replica on ${r.id} differs`);
        }
      }
    }
  }

  /** `gfs get` and `gfs cat --replica ID` of the largest file, for each chunkserver given (each must hold every chunk of it). */
  async function verifyCli(replicaIds: string[]): Promise<void> {
    const [path, want] = [...files].sort((a, b) => b[1].size - a[1].size)[0]!;
    const outs = await Promise.all([gfs(['get', path, '-']), ...replicaIds.map((id) => gfs(['cat', '--replica', id, path]))]);
    outs.forEach((b, i) => assert.equal(sha256(b), want.sha, `${path}: ${i === 0 ? 'gfs get' : `gfs cat --replica ${replicaIds[i - 1]}`} returned different bytes`));
  }

  /** Chunk files on disk, per handle, over every chunkserver directory. */
  function diskReplicas(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (let i = 0; i < cluster!.chunkservers.length; i++) {
      const dir = join(cluster!.dir, `cs${i}`, 'chunks');
      if (!existsSync(dir)) continue;
      for (const name of readdirSync(dir)) {
        const m = /^([0-9a-f]{16})\.chunk$/.exec(name);
        if (!m) continue;
        out.set(m[1]!, [...(out.get(m[1]!) ?? []), `cs${i}`]);
      }
    }
    return out;
  }

  it('puts multi-chunk files, each chunk on 3 replicas, fsck healthy', async () => {
    const sizes = [5 * chunkSizeBytes + 123, 3 * chunkSizeBytes - 7, 2 * chunkSizeBytes, 100 * KiB];
    await gfs(['mkdir', '/r']);
    // The largest through `gfs put`, the others through the library.
    await Promise.all(
      sizes.map(async (size, i) => {
        const data = randomBytes(size);
        const path = `/r/f${i}`;
        if (i === 0) await gfs(['put', '-', path], data);
        else {
          await client.create(path);
          await client.write(path, 0, data);
          await client.sync(path);
        }
        files.set(path, { sha: sha256(data), size });
      }),
    );
    // And chunks allocated but never written (version 1): cloned without a version bump, so the
    // copies on a server that comes back are extra replicas to trim rather than stale ones.
    await client.create('/r/empty');
    const empty = await rpcJson<ChunkLocation>(cluster!.masterUrl, '/api/allocate', { path: '/r/empty', index: emptyChunks - 1 });
    assert.equal(empty.version, 1);
    const f = await fsck();
    const want = sizes.reduce((a, s) => a + Math.ceil(s / chunkSizeBytes), 0) + emptyChunks;
    assert.equal(f.summary.chunks, want);
    assert.equal(f.summary.healthy, want, `fsck: ${JSON.stringify(f.summary)}`);
    for (const c of chunksOf(f)) assert.equal(c.live.length, 3, `${c.path}[${c.index}] has ${c.live.length} replicas`);
    const out = (await gfs(['fsck', '/'])).toString();
    assert.match(out, /is HEALTHY/);
  });

  let victim1 = -1;
  let victim2 = -1;

  it('SIGKILL of one chunkserver: every affected chunk is back at 3 live replicas within the deadline, byte for byte', async () => {
    const before1 = chunksOf(await fsck());
    // The server holding the most never-written chunks, then the most chunks.
    const count = (id: string, of = before1) => of.filter((c) => c.live.includes(id)).length;
    const empties = before1.filter((c) => c.path === '/r/empty');
    const ids = cluster!.chunkservers.map((p) => p!.id);
    victim1 = ids.map((id, i) => ({ i, e: count(id, empties), n: count(id) })).sort((a, b) => b.e - a.e || b.n - a.n)[0]!.i;
    const victimId = ids[victim1]!;
    const affected = before1.filter((c) => c.live.includes(victimId));
    assert.ok(affected.length - count(victimId, empties) >= 3, `${victimId} holds only ${affected.length - count(victimId, empties)} written chunks`);
    assert.ok(count(victimId, empties) >= 1);
    const clonesBefore = ((await cluster!.status()) as unknown as { counters: { clonesDone: number } }).counters.clonesDone;

    const t0 = performance.now();
    await cluster!.kill(cluster!.chunkservers[victim1], 'SIGKILL');
    await waitFor(`${victimId} to be declared dead`, async () => !(await aliveIds()).includes(victimId), deadMs + 5_000);
    const deadAt = performance.now();
    await waitFor(
      `the ${affected.length} chunks of ${victimId} to be back at 3 live replicas`,
      async () => {
        const now = chunksOf(await fsck());
        return affected.every((a) => {
          const c = now.find((x) => x.handle === a.handle);
          return c && c.live.length === 3 && !c.live.includes(victimId);
        });
      },
      healDeadlineMs,
      100,
    );
    const healedAt = performance.now();
    console.log(`# ${victimId} (${affected.length} chunks) declared dead after ${Math.round(deadAt - t0)} ms; replication restored ${Math.round(healedAt - deadAt)} ms later`);

    const f = await fsck();
    assert.equal(f.summary.healthy, f.summary.chunks, `fsck: ${JSON.stringify(f.summary)}`);
    assert.equal((await cluster!.cli(['fsck', '/'])).code, 0, 'gfs fsck / exits non-zero after healing');
    const st = (await cluster!.status()) as unknown as { counters: { clonesDone: number } };
    assert.ok(st.counters.clonesDone - clonesBefore >= affected.length, `only ${st.counters.clonesDone - clonesBefore} clones for ${affected.length} chunks`);
    // Three live servers, goal three: each of them holds every chunk now.
    const live = ids.filter((_, i) => i !== victim1);
    for (const c of chunksOf(f)) assert.deepEqual([...c.live].sort(), [...live].sort(), `${c.path}[${c.index}]`);
    await verifyAll(3);
    await verifyCli(live);
  });

  it('SIGKILL of a second chunkserver: chunks stay under-replicated (fsck exits non-zero), data still readable', async () => {
    const ids = cluster!.chunkservers.map((p) => p!.id);
    victim2 = ids.findIndex((_, i) => i !== victim1);
    const victimId = ids[victim2]!;
    await cluster!.kill(cluster!.chunkservers[victim2], 'SIGKILL');
    await waitFor(`${victimId} to be declared dead`, async () => !(await aliveIds()).includes(victimId), deadMs + 5_000);
    // Nowhere to clone to: with two live servers every chunk has exactly two replicas.
    const f = await fsck();
    assert.equal(f.summary.underReplicated, f.summary.chunks, `fsck: ${JSON.stringify(f.summary)}`);
    assert.equal(f.summary.missing, 0);
    for (const c of chunksOf(f)) assert.equal(c.live.length, 2, `${c.path}[${c.index}] live on ${c.live.join(',')}`);
    const r = await cluster!.cli(['fsck', '/', '--blocks']);
    assert.notEqual(r.code, 0, 'gfs fsck / exits 0 with every chunk under-replicated');
    assert.match(r.stdout.toString(), /NOT HEALTHY/);
    assert.match(r.stdout.toString(), /under-replicated/);
    assert.match(r.stderr, /not healthy/);
    const survivors = ids.filter((_, i) => i !== victim1 && i !== victim2);
    await verifyAll(2);
    await verifyCli(survivors);
  });

  it('restarting the dead chunkservers: their replicas are trimmed (extra) or deleted (stale), never taking a chunk below its goal', async () => {
    // The second victim first: it missed nothing, and with it every chunk is back at its goal.
    await cluster!.startChunkserver(victim2);
    await cluster!.waitForChunkservers(3);
    await waitFor('every chunk back at 3 live replicas', async () => {
      const f = await fsck();
      return f.summary.healthy === f.summary.chunks;
    }, healDeadlineMs, 100);
    // Then the first: its replicas are extra (at the current version) or stale (a version was bumped
    // while it was away); either way they go, and no chunk may drop below its goal meanwhile.
    const before1 = (await cluster!.status()) as unknown as { counters: Record<string, number> };
    await cluster!.startChunkserver(victim1);
    await cluster!.waitForChunkservers(4);
    const dips: string[] = [];
    await waitFor(
      'every chunk at exactly 3 live replicas, none left on the returning server beyond the goal',
      async () => {
        const f = await fsck();
        if (f.summary.underReplicated > 0 || f.summary.missing > 0) dips.push(JSON.stringify(f.summary));
        return f.summary.overReplicated === 0 && f.summary.healthy === f.summary.chunks && chunksOf(f).every((c) => (diskReplicas().get(c.handle)?.length ?? 0) === 3);
      },
      healDeadlineMs,
      50,
    );
    assert.deepEqual(dips, [], 'a chunk dropped below its goal while the returning replicas were removed');
    const after1 = (await cluster!.status()) as unknown as { counters: Record<string, number> };
    const d = (k: string) => (after1.counters[k] ?? 0) - (before1.counters[k] ?? 0);
    console.log(`# returning server: ${d('excessDeleted')} extra replicas trimmed, ${d('staleReplicasDropped')} stale ones deleted`);
    assert.ok(d('excessDeleted') >= 1, 'no extra replica was trimmed');
    // The trimmed replicas are gone from the disks too (orders delivered with heartbeat replies).
    const f = await fsck();
    await waitFor(
      'exactly 3 chunk files per chunk on disk',
      () => chunksOf(f).every((c) => (diskReplicas().get(c.handle)?.length ?? 0) === 3),
      healDeadlineMs,
      100,
    );
    for (const c of chunksOf(await fsck())) assert.equal(c.live.length, 3, `${c.path}[${c.index}] live on ${c.live.join(',')}`);
    assert.equal((await cluster!.cli(['fsck', '/'])).code, 0);
    await verifyAll(3);
  });

  it('restarting every chunkserver at once: the master relearns all locations, healthy, data intact', async () => {
    await Promise.all(cluster!.chunkservers.map((p) => cluster!.kill(p, 'SIGKILL')));
    // Once the master has declared them all dead, every chunk is missing: what it knows next comes from their reports.
    await waitFor('every chunkserver to be declared dead', async () => (await aliveIds()).length === 0, deadMs + 5_000);
    const down = await fsck();
    assert.equal(down.summary.missing, down.summary.chunks, `fsck: ${JSON.stringify(down.summary)}`);
    assert.notEqual((await cluster!.cli(['fsck', '/'])).code, 0);
    await Promise.all(cluster!.chunkservers.map((_, i) => cluster!.startChunkserver(i)));
    await cluster!.waitForChunkservers(4);
    await waitFor(
      'fsck healthy with every chunk at exactly 3 replicas',
      async () => {
        const f = await fsck();
        return f.summary.healthy === f.summary.chunks && chunksOf(f).every((c) => c.live.length === 3);
      },
      healDeadlineMs,
      100,
    );
    await verifyAll(3);
  });

  it('a lease grant whose version bump reaches no replica does not lose the chunk: the bump is retried', async () => {
    const path = '/r/f3';
    const want = files.get(path)!;
    const before1 = (await client.locate(path, 0, 1, true)).chunks.get(0)!;
    assert.equal(before1.replicas.length, 3);
    // Ask for a lease while the master reaches no chunkserver, once the write's lease has run out
    // (until then the master answers with the current lease and bumps nothing).
    const err = await waitFor(
      'a lease grant that no replica took',
      async () => {
        await rpcJson(cluster!.masterUrl, '/admin/faults', { rules: [{ from: 'master', to: '*', drop: true }] });
        try {
          const e = await rpcJson(cluster!.masterUrl, '/api/lease', { handle: before1.handle }).then(
            () => undefined,
            (e: unknown) => e,
          );
          return e instanceof Error && /took version/.test(e.message) ? e : undefined;
        } finally {
          await rpcJson(cluster!.masterUrl, '/admin/faults', { rules: [] });
        }
      },
      15_000,
      200,
    );
    assert.match(err.message, /no replica of \w+ took version/);
    await waitFor(
      'the chunk to be listed on its 3 replicas at the new version',
      async () => {
        const c = (await client.locate(path, 0, 1, true)).chunks.get(0)!;
        return c.version > before1.version && c.replicas.length === 3;
      },
      healDeadlineMs,
      100,
    );
    assert.equal(sha256(await client.read(path, 0, want.size + 1)), want.sha);
    await verifyAll(3);
  });

  it('master SIGKILL mid-workload: safe mode until chunkservers report, then healthy; acknowledged files intact', async () => {
    const writer = cluster!.client();
    let stop = false;
    /** While set, the writer starts no new file (it is `idle` between files). */
    let pause = false;
    let idle = false;
    let seq = 0;
    let errors = 0;
    let lastError = '';
    const acked = new Map<string, { sha: string; size: number }>();
    const ackedAfter = (n: number) => [...acked.keys()].filter((p) => Number(p.slice(p.lastIndexOf('f') + 1)) >= n).length;
    await writer.mkdir('/w');
    const loop = (async () => {
      while (!stop) {
        while (pause && !stop) {
          idle = true;
          await new Promise((r) => setTimeout(r, 20));
        }
        idle = false;
        const path = `/w/f${seq++}`;
        const data = randomBytes(50 * KiB + Math.floor(Math.random() * 2 * chunkSizeBytes));
        try {
          await writer.create(path);
          await writer.write(path, 0, data);
          await writer.sync(path);
          acked.set(path, { sha: sha256(data), size: data.length });
        } catch (e) {
          // Not acknowledged: nothing is promised about it. Back off a little (workload pacing, not synchronisation).
          errors++;
          lastError = (e as Error).message;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    })();
    try {
      await waitFor('a few acknowledged writes', () => acked.size >= 3, 30_000);
      // A crash can leave an allocation logged whose replicas were never created: make one on
      // purpose (the master cannot reach any chunkserver while it allocates). Such a chunk holds
      // no data and must not keep the restarted master in safe mode until the timeout.
      // The writer waits meanwhile: a lease asked for now would bump a chunk's version with no
      // replica taking it; the master retries that bump, but one SIGKILLed before the retry forgets
      // it and judges the replicas stale (a known gap, not what this test is about).
      await writer.create('/w/unplaced');
      pause = true;
      await waitFor('the writer to be between files', () => idle, 30_000, 20);
      await rpcJson(cluster!.masterUrl, '/admin/faults', { rules: [{ from: 'master', to: '*', drop: true }] });
      let unplaced: ChunkLocation;
      try {
        unplaced = await rpcJson<ChunkLocation>(cluster!.masterUrl, '/api/allocate', { path: '/w/unplaced', index: 0 });
      } finally {
        await rpcJson(cluster!.masterUrl, '/admin/faults', { rules: [] });
        pause = false;
      }
      assert.deepEqual(unplaced.replicas, [], 'the chunk was placed although the master could reach no chunkserver');
      // Chunkservers are kept from reporting to the restarted master (dropped at its door), so
      // its safe mode lasts until the test lets them through, not a race against the first heartbeat.
      const ids = cluster!.chunkservers.map((p) => p!.id);
      const saved = cluster!.o.env;
      cluster!.o.env = { ...(saved ?? {}), GFS_FAULTS: JSON.stringify(ids.map((id) => ({ from: id, to: 'master', drop: true }))) };
      let restartedAt = 0;
      try {
        await cluster!.restartMaster();
        restartedAt = performance.now();
      } finally {
        cluster!.o.env = saved;
      }
      const seqAtRestart = seq;
      const st = await cluster!.status();
      assert.equal(st.safeMode, true, 'the restarted master is not in safe mode');
      const out = (await gfs(['status'])).toString();
      assert.match(out, /safe mode: ON/);
      // No placement in safe mode.
      await assert.rejects(rpcJson(cluster!.masterUrl, '/api/allocate', { path: '/w/f0', index: 1000 }), /safe mode/);
      // Let the reports through: safe mode ends once every chunk has been reported (long before the 30 s timeout).
      await rpcJson(cluster!.masterUrl, '/admin/faults', { rules: [] });
      await waitFor('the master to leave safe mode', async () => !(await cluster!.status()).safeMode, 20_000);
      const leftAfterMs = performance.now() - restartedAt;
      assert.ok(leftAfterMs < 25_000, `safe mode lasted ${Math.round(leftAfterMs)} ms: it ran into its timeout instead of ending on reports`);
      assert.match((await gfs(['status'])).toString(), /safe mode: off/);
      await waitFor('writes acknowledged after the restart', () => ackedAfter(seqAtRestart) >= 3, 45_000);
      // The never-placed chunk is placed on its first write.
      const data = randomBytes(chunkSizeBytes + 99);
      await writer.write('/w/unplaced', 0, data);
      await writer.sync('/w/unplaced');
      acked.set('/w/unplaced', { sha: sha256(data), size: data.length });
    } finally {
      stop = true;
      await loop;
    }
    console.log(`# writer: ${acked.size} files acknowledged, ${errors} failed attempts${lastError ? ` (last: ${lastError})` : ''}`);
    await waitFor(
      'fsck healthy after the master restart',
      async () => {
        const f = await fsck();
        return f.summary.healthy === f.summary.chunks;
      },
      healDeadlineMs,
      100,
    );
    assert.equal((await cluster!.cli(['fsck', '/'])).code, 0);
    // Every acknowledged file (and the earlier ones), whole and on every listed replica.
    for (const [path, want] of acked) files.set(path, want);
    await verifyAll(3);
  });
});

// A dead primary's lease is not waited out before its chunk is re-replicated:
// the clone first moves the live replicas to a new version, at which they
// refuse anything the old primary (if it is only cut off) still orders. With a
// 60 s lease, the chunk must be back at its goal long before the lease ends.
describe('re-replication does not wait out a dead primary\'s lease', { timeout: 120_000 }, () => {
  let cluster: TestCluster | undefined;
  const longLeaseMs = 60_000;

  before(async () => {
    cluster = await startCluster({ chunkservers: 4, chunkSizeBytes, heartbeatMs, deadMs, leaseMs: longLeaseMs });
  });

  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  it('SIGKILL of the primary of a just-written chunk: back at 3 replicas at a new version within a fraction of the lease, byte for byte', async () => {
    const c = cluster!;
    const client = c.client();
    const data = randomBytes(chunkSizeBytes - 1000);
    await client.create('/hot');
    await client.write('/hot', 0, data);
    await client.sync('/hot');
    const [loc] = [...(await client.locate('/hot', 0, 1, true)).chunks.values()];
    const grants = await rpcJson<{ grants: { handle: string; version: number; primary: string; expiresAtMs: number }[] }>(c.masterUrl, '/debug/leases');
    const grant = grants.grants.filter((g) => g.handle === loc!.handle).sort((a, b) => b.version - a.version)[0];
    assert.ok(grant, 'the write was made under a lease');
    const victim = c.chunkservers.find((p) => p!.id === grant.primary)!;
    const t0 = performance.now();
    await c.kill(victim, 'SIGKILL');
    const healed = await waitFor(
      `chunk ${loc!.handle} back at 3 live replicas without ${grant.primary}`,
      async () => {
        const f = await rpcJson<Fsck>(c.masterUrl, '/api/fsck', undefined, { query: { path: '/hot' } });
        const ch = f.files[0]!.chunks[0]!;
        return ch.live.length === 3 && !ch.live.includes(grant.primary) ? ch : undefined;
      },
      longLeaseMs / 3,
      100,
    );
    console.log(`# primary ${grant.primary} killed; chunk back at 3 replicas after ${Math.round(performance.now() - t0)} ms (lease ${longLeaseMs} ms)`);
    assert.ok(healed.version > grant.version, `the clone did not move the chunk past the lease's version ${grant.version}`);
    const reader = c.client();
    const fresh = [...(await reader.locate('/hot', 0, 1, true)).chunks.values()][0]!;
    assert.equal(fresh.version, healed.version);
    assert.equal(fresh.replicas.length, 3);
    for (const r of fresh.replicas) {
      const b = await reader.readReplica(r, fresh.handle, fresh.version, 0, chunkSizeBytes);
      assert.ok(b.equals(data), `the replica on ${r.id} differs`);
    }
  });
});
