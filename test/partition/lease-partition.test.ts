import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { PrimaryActs } from '../../chunkserver/leases.js';
import type { GrantRecord } from '../../master/core/leases.js';
import { crc32c } from '../../shared/checksum.js';
import { GfsError } from '../../shared/errors.js';
import { closeRpc, rpcJson, rpcStream } from '../../shared/rpc.js';
import type { ChunkLocation, ChunksAnswer, LeaseAnswer, ReplicaRef, WriteAnswer } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { firstChunk } from '../helpers/chunks.js';
import { waitFor } from '../helpers/wait.js';

// Partitions around a primary, with real processes on 127.0.0.1 and the
// fault layer (shared/fault.ts):
// - a primary cut off from the master but not from its secondaries keeps
//   serving until its lease expires by its own clock and not after; the
//   master grants the next lease only after the old one expired, to another
//   replica; after healing, the old primary's replica is detected as stale.
// - a mutation the primary ordered in time but that reaches the secondaries
//   only after its lease ran out (delayed in the network) never leaves a
//   listed replica without an acknowledged write: re-replication at the same
//   version used to copy a replica that then missed it.

const KiB = 1024;
const chunkSizeBytes = 256 * KiB;
const leaseMs = 2_000;
const heartbeatMs = 200;
const deadMs = 1_000;

let seq = 0;
/** A write sent straight to `primary` (inline data, no push chain); resolves to the error, or undefined when acknowledged. */
async function rawWrite(primary: ReplicaRef, handle: string, version: number, offset: number, data: Buffer, timeoutMs = 10_000): Promise<GfsError | undefined> {
  try {
    await rpcJson<WriteAnswer>(
      primary.url,
      '/chunk/write',
      { handle, version, offset, inline: data.toString('base64'), sizeBytes: data.length, crc32c: crc32c(data), clientId: 'leasepart', requestId: `r${seq++}` },
      { targetName: primary.id, timeoutMs },
    );
    return undefined;
  } catch (e) {
    if (e instanceof GfsError) return e;
    throw e;
  }
}

const chunk0 = (c: TestCluster, path: string): Promise<ChunkLocation> => firstChunk(c.masterUrl, path);

async function replicaBytes(r: { url: string }, handle: string, offset: number, length: number): Promise<Buffer> {
  const res = await rpcStream(r.url, '/chunk/read', undefined, { query: { handle, offset, length } });
  return Buffer.from(await res.body.arrayBuffer());
}

interface LeasedChunk {
  cluster: TestCluster;
  client: ReturnType<TestCluster['client']>;
  handle: string;
  /** What the file holds: 8 KiB written through the client. */
  head: Buffer;
  /** A lease on the file's one chunk, asked straight from the master. */
  lease: LeaseAnswer;
}

/** A cluster (stopped after the suite) with a file `path` of one chunk, 8 KiB written, and a lease on it. */
async function leasedChunk(path: string, opts: { chunkservers?: number; safeModeMs?: number } = {}): Promise<LeasedChunk> {
  const cluster = await startCluster({ chunkservers: opts.chunkservers ?? 3, chunkSizeBytes, leaseMs, heartbeatMs, deadMs, ...(opts.safeModeMs !== undefined ? { safeModeMs: opts.safeModeMs } : {}) });
  clusters.push(cluster);
  const client = cluster.client();
  await client.create(path);
  const head = randomBytes(8 * KiB);
  await client.write(path, 0, head);
  const { handle } = await chunk0(cluster, path);
  const lease = await rpcJson<LeaseAnswer>(cluster.masterUrl, '/api/lease', { handle });
  return { cluster, client, handle, head, lease };
}

/**
 * Lets `first` lapse, then stops its first secondary X (SIGSTOP) through the next grant: the
 * master, still counting X alive, sends it the new version and gives up at its timeout. A 4 KiB
 * write at 8 KiB is acknowledged without X; X is resumed before this returns.
 */
async function grantWhileSecondaryPaused(c: LeasedChunk): Promise<{ X: ReplicaRef; lease: LeaseAnswer; data: Buffer }> {
  const { cluster, handle, lease: first } = c;
  const X = first.secondaries[0];
  assert.ok(X, `the first lease has no secondary (${first.primary.id} alone): were the others counted dead?`);
  const xProc = cluster.chunkservers.find((p) => p?.id === X.id)!.proc;
  // Let the lease lapse, so the next writer gets a new grant (and a version bump).
  await waitFor('the lease to lapse', async () => {
    const grants = (await rpcJson<{ grants: GrantRecord[] }>(cluster.masterUrl, '/debug/leases')).grants.filter((g) => g.handle === handle);
    return grants.every((g) => g.expiresAtMs < Date.now() - 100);
  }, 15_000, 100);
  // X stops just before the grant: the master still counts it alive, sends it the new version, and gives up after its timeout.
  process.kill(xProc.pid!, 'SIGSTOP');
  const data = randomBytes(4 * KiB);
  try {
    const lease = await rpcJson<LeaseAnswer>(cluster.masterUrl, '/api/lease', { handle }, { timeoutMs: 30_000 });
    assert.ok(lease.version > first.version);
    assert.ok(![lease.primary, ...lease.secondaries].some((r) => r.id === X.id), `${X.id} is in the new lease though it is stopped`);
    // A write acknowledged without X.
    assert.equal(await rawWrite(lease.primary, handle, lease.version, 8 * KiB, data), undefined);
    return { X, lease, data };
  } finally {
    process.kill(xProc.pid!, 'SIGCONT');
  }
}

/** Waits until X has applied the version it was sent while stopped. */
async function lateBumpApplied(X: ReplicaRef, handle: string, version: number): Promise<void> {
  await waitFor(`${X.id} to apply the late bump`, async () => {
    const info = await rpcJson<{ version: number }>(X.url, '/chunk/info', undefined, { query: { handle } }).catch(() => undefined);
    return info !== undefined && info.version >= version; // or past it: the master may have re-replicated onto X meanwhile
  }, 15_000, 100);
}

const clusters: TestCluster[] = [];
after(async () => {
  await Promise.all(clusters.map((c) => c.stop()));
  await closeRpc();
});

// Five clusters one after another, each up to a minute and a half on a loaded machine (2 cores shared).
describe('a primary partitioned from the master', { timeout: 600_000 }, () => {
  it('serves until its lease expires and not after; the next lease comes only after expiry; its replica is then stale', async () => {
    const path = '/lp-a';
    const { cluster, client, handle, lease } = await leasedChunk(path);
    const P = lease.primary;
    assert.equal(lease.secondaries.length, 2);
    // Keep the lease busy (so heartbeats extend it) until the cut.
    assert.equal(await rawWrite(P, handle, lease.version, 8 * KiB, randomBytes(KiB)), undefined);

    await cluster.setFaults([
      { from: P.id, to: 'master', drop: true },
      { from: 'master', to: P.id, drop: true },
    ]);
    const cutAt = Date.now();
    // Writes straight to P, one after another; writes acknowledged by P went through its secondaries.
    const acked: { at: number; offset: number; data: Buffer }[] = [];
    const refused: { at: number; code: string }[] = [];
    let offset = 16 * KiB;
    // And a client asking the master for the lease, as a writer would.
    const pending: number[] = [];
    let next: { lease: LeaseAnswer; at: number } | undefined;
    const asker = (async () => {
      while (!next && Date.now() - cutAt < 20_000) {
        try {
          const a = await rpcJson<LeaseAnswer>(cluster.masterUrl, '/api/lease', { handle }, { timeoutMs: 5_000 });
          if (a.version !== lease.version) next = { lease: a, at: Date.now() };
        } catch (e) {
          if (e instanceof GfsError && e.code === 'LEASE_PENDING') pending.push(Date.now());
          else throw e;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      while (Date.now() - cutAt < leaseMs + 2_000) {
        const data = randomBytes(KiB);
        const at = Date.now();
        const err = await rawWrite(P, handle, lease.version, offset, data);
        if (err) refused.push({ at, code: err.code });
        else acked.push({ at: Date.now(), offset, data });
        offset += KiB;
        await new Promise((r) => setTimeout(r, 20));
      }
      await asker;
    } finally {
      await cluster.setFaults([]);
    }
    const acts = (await rpcJson<{ entries: PrimaryActs[] }>(P.url, '/debug/primary-log')).entries.find((e) => e.handle === handle && e.version === lease.version);
    const grants = (await rpcJson<{ grants: GrantRecord[] }>(cluster.masterUrl, '/debug/leases')).grants.filter((g) => g.handle === handle);
    const old = grants.find((g) => g.version === lease.version);
    const lastAck = acked.length ? acked[acked.length - 1]!.at : cutAt;
    console.log(
      `# ${P.id} cut from the master: ${acked.length} writes acknowledged, the last ${lastAck - cutAt} ms after the cut; first refusal ${refused.length ? refused[0]!.at - cutAt : '-'} ms after (${refused[0]?.code}); ` +
        `${pending.length} LEASE_PENDING answers; next lease to ${next?.lease.primary.id} v${next?.lease.version} ${next ? next.at - cutAt : '-'} ms after the cut`,
    );
    // It kept serving while its lease ran...
    assert.ok(acked.length > 0 && lastAck - cutAt >= leaseMs / 4, `the primary stopped serving ${lastAck - cutAt} ms after the cut, well before its lease ran out`);
    // ...and stopped for good once it ran out (by its own clock).
    assert.ok(refused.length > 0, 'the primary never stopped acting');
    const firstRefusal = refused[0]!.at;
    assert.ok(acked.every((a) => a.at <= firstRefusal + 50), 'a write was acknowledged after the primary had refused one for want of a lease');
    for (const r of refused) assert.ok(r.code === 'LEASE_EXPIRED' || r.code === 'NOT_PRIMARY', `refused with ${r.code}`);
    assert.ok(acts, 'no primary record');
    assert.ok(acts.lastActMs <= acts.believedExpiryMs, `acted ${acts.lastActMs - acts.believedExpiryMs} ms past its own lease`);
    // The master waited: LEASE_PENDING meanwhile, then a new lease, elsewhere, at a new version, after the old one expired by its record.
    assert.ok(next, 'no new lease after the old one expired');
    assert.ok(pending.length > 0, 'the master never made a writer wait');
    assert.notEqual(next.lease.primary.id, P.id);
    assert.ok(next.lease.version > lease.version);
    assert.ok(old, 'the master has no record of the old grant');
    const fresh = grants.find((g) => g.version === next!.lease.version)!;
    // (Both are wall-clock renderings of the master's monotonic times, each rounded: 2 ms of slack.)
    assert.ok(fresh.grantedAtMs >= old.expiresAtMs - 2, `new lease granted ${old.expiresAtMs - fresh.grantedAtMs} ms before the old one expired`);
    assert.ok(fresh.grantedAtMs > acts.lastActMs, 'the new lease was granted while the old primary was still acting');

    // Healed: the old primary missed the version bump, so its replica is stale: no longer listed, then deleted.
    await waitFor(
      `${P.id}'s replica to be dropped as stale`,
      async () => {
        const c = await chunk0(cluster, path);
        if (c.replicas.some((r) => r.id === P.id)) return false;
        const info = await rpcJson<{ version: number }>(P.url, '/chunk/info', undefined, { query: { handle } }).catch(() => undefined);
        return info === undefined || info.version < c.version;
      },
      15_000,
    );
    // Every listed replica holds every write the old primary acknowledged, and the file is writable again.
    const c = await chunk0(cluster, path);
    for (const r of c.replicas) for (const a of acked) assert.ok((await replicaBytes(r, handle, a.offset, KiB)).equals(a.data), `${r.id} lacks a write acknowledged by the old primary`);
    const after = randomBytes(4 * KiB);
    await client.write(path, 0, after);
    assert.ok((await client.read(path, 0, after.length)).equals(after));
  });

  it('a mutation delivered after the lease ran out never misses a re-replicated replica', async () => {
    // Four servers: the chunk's three replicas, and a spare for re-replication.
    const path = '/lp-b';
    const { cluster, client, handle, lease } = await leasedChunk(path, { chunkservers: 4 });
    const P = lease.primary;
    const holders = [P.id, ...lease.secondaries.map((s) => s.id)];
    const spare = cluster.chunkservers.find((p) => p && !holders.includes(p.id))!;
    assert.ok(spare);
    assert.equal(await rawWrite(P, handle, lease.version, 8 * KiB, randomBytes(KiB)), undefined);

    // P loses the master (its lease runs out, the master counts it dead), and its traffic to the secondaries is slow:
    // 2.5 s at the sender and 2.5 s at the receiver, far past the end of its lease.
    await cluster.setFaults([
      { from: P.id, to: 'master', drop: true },
      { from: 'master', to: P.id, drop: true },
      ...lease.secondaries.map((s) => ({ from: P.id, to: s.id, delayMs: 2_500 })),
    ]);
    const data = randomBytes(4 * KiB);
    const sentAt = Date.now();
    // P accepts it at once (its lease is valid), applies it, and forwards it: the forward arrives about 5 s later.
    const write = rawWrite(P, handle, lease.version, 16 * KiB, data, 30_000);
    let clonedAt: number | undefined;
    try {
      // Meanwhile the master sees P dead, waits out its lease, and re-replicates the chunk on the spare.
      await waitFor(
        `the chunk re-replicated on ${spare.id}`,
        async () => {
          const c = await chunk0(cluster, path);
          return c.replicas.some((r) => r.id === spare.id) && (clonedAt = Date.now());
        },
        15_000,
        50,
      ).catch(() => undefined);
      const err = await write;
      assert.ok(clonedAt, `the chunk was not re-replicated on ${spare.id}: the scenario did not happen`);
      console.log(`# write sent at 0 ms; chunk on ${spare.id} ${clonedAt ? `listed at ${clonedAt - sentAt} ms` : 'never listed'}; the write ${err ? `failed after ${Date.now() - sentAt} ms: ${err.code}` : `was acknowledged after ${Date.now() - sentAt} ms`}`);
      if (!err) {
        // Acknowledged: then every replica the master lists holds it.
        const c = await chunk0(cluster, path);
        for (const r of c.replicas) assert.ok((await replicaBytes(r, handle, 16 * KiB, data.length)).equals(data), `${r.id}, listed at v${c.version}, lacks a write acknowledged by the old primary`);
      }
    } finally {
      await cluster.setFaults([]);
    }
    // Healed, the file is consistent and writable.
    const after = randomBytes(4 * KiB);
    await client.write(path, 0, after);
    const c = await chunk0(cluster, path);
    for (const r of c.replicas) assert.ok((await replicaBytes(r, handle, 0, after.length)).equals(after), `${r.id} lacks the write after healing`);
  });

  it('a replica that takes a version bump late (paused through the grant) is never listed without the writes made meanwhile', async () => {
    const path = '/lp-c';
    const lc = await leasedChunk(path);
    const { cluster, handle } = lc;
    const { X, lease, data } = await grantWhileSecondaryPaused(lc);
    // X wakes up, applies the version it was sent long ago, and reports it: wait for a heartbeat
    // it sent after applying it (one begun before may still carry the old version).
    await lateBumpApplied(X, handle, lease.version);
    const appliedAt = Date.now();
    await waitFor(`a heartbeat from ${X.id} after it applied the late bump`, async () => {
      const x = (await rpcJson<{ chunkservers: { id: string; lastHeartbeatAgoMs: number }[] }>(cluster.masterUrl, '/api/status')).chunkservers.find((s) => s.id === X.id);
      return x !== undefined && Date.now() - x.lastHeartbeatAgoMs > appliedAt + heartbeatMs;
    }, 15_000, 50);
    const c = await chunk0(cluster, path);
    console.log(`# after the grant to ${lease.primary.id} v${lease.version} without ${X.id}: listed ${c.replicas.map((r) => r.id).join(' ')} at v${c.version}`);
    for (const r of c.replicas) assert.ok((await replicaBytes(r, handle, 8 * KiB, data.length)).equals(data), `${r.id}, listed at v${c.version}, lacks a write acknowledged while it was stopped`);
  });

  it('after a master restart, a replica that took a bump late is still not listed, and every acknowledged write reads back', async () => {
    // Issue 15.2: who took a version was kept only in memory; a restarted master listed the late
    // replica again (and could make it primary, appending at its own shorter length).
    const path = '/lp-r';
    const lc = await leasedChunk(path, { safeModeMs: 1_000 });
    const { cluster, head } = lc;
    const { X, lease, data } = await grantWhileSecondaryPaused(lc);
    // X applies the version it was sent long ago: it now holds the current version without the write.
    await lateBumpApplied(X, lc.handle, lease.version);
    await cluster.restartMaster();
    await waitFor('every chunkserver to report to the restarted master', async () => (await cluster.status()).chunkservers.filter((s) => s.alive).length === 3 && !(await cluster.status()).safeMode, 20_000, 100);
    const c = await chunk0(cluster, path);
    console.log(`# restarted master lists ${c.replicas.map((r) => r.id).join(' ')} at v${c.version}; ${X.id} took v${lease.version} late`);
    // Listed at the version it took late, X would be a replica missing a write. The restarted master may
    // instead have re-replicated the chunk onto X (a clone bumps the version first and copies the whole
    // chunk): listed at a newer version, it holds every byte, which the loop below checks.
    assert.ok(!c.replicas.some((r) => r.id === X.id) || c.version > lease.version, `${X.id} took the bump late, missed a write, and is listed again at v${c.version} after the restart`);
    for (const r of c.replicas) assert.ok((await replicaBytes(r, lc.handle, 8 * KiB, data.length)).equals(data), `${r.id} lacks an acknowledged write`);
    // Writing on goes through a primary holding every acknowledged byte.
    const more = randomBytes(2 * KiB);
    await cluster.client().write(path, 12 * KiB, more);
    const all = await cluster.client().read(path, 0, 14 * KiB);
    assert.ok(all.subarray(0, 8 * KiB).equals(head) && all.subarray(8 * KiB, 12 * KiB).equals(data) && all.subarray(12 * KiB).equals(more), 'the file reads back as acknowledged');
  });

  it('no lease is granted while a chunk is still being created, so no replica is stale from birth', async () => {
    const cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, leaseMs, heartbeatMs, deadMs });
    clusters.push(cluster);
    const client = cluster.client();
    const path = '/lp-d';
    await client.create(path);
    // X is stopped, so the chunk's creation on X waits, while the other two are created at once.
    const X = cluster.chunkservers[2]!;
    process.kill(X.proc.pid!, 'SIGSTOP');
    let allocating: Promise<unknown> | undefined;
    const answers: string[] = [];
    try {
      allocating = rpcJson(cluster.masterUrl, '/api/allocate', { path, index: 0 }, { timeoutMs: 30_000 }).catch((e: unknown) => e);
      // Another client finds the chunk (logged before it is placed) and asks for its first lease meanwhile.
      const handle = await waitFor('the chunk to be allocated', async () => (await rpcJson<ChunksAnswer>(cluster.masterUrl, '/api/chunks', { path, startIndex: 0, count: 1 })).chunks[0]?.handle, 5_000, 20);
      const untilMs = Date.now() + 1_500;
      while (Date.now() < untilMs) {
        try {
          const l = await rpcJson<LeaseAnswer>(cluster.masterUrl, '/api/lease', { handle });
          answers.push(`granted v${l.version} to ${l.primary.id}`);
        } catch (e) {
          answers.push(e instanceof GfsError ? e.code : String(e));
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      // X wakes up within the master's creation timeout (5 s): its creation succeeds.
      process.kill(X.proc.pid!, 'SIGCONT');
    }
    await allocating;
    // Stopped past deadMs, X may be counted dead until its next heartbeat; a lease granted before that
    // rightly leaves it out. The check below is of the creation race, so it starts with X alive.
    await cluster.waitForChunkservers(3);
    console.log(`# lease answers while X's creation was pending: ${[...new Set(answers)].join(', ')} (${answers.length} asks)`);
    assert.ok(answers.length > 0 && answers.every((a) => a === 'LEASE_PENDING'), `a lease was granted (or failed oddly) while the chunk was being created: ${answers.join(', ')}`);
    // The first lease now covers all three replicas, and every listed replica holds the version it is listed at.
    const c0 = await chunk0(cluster, path);
    const lease = await waitFor('a first lease', () => rpcJson<LeaseAnswer>(cluster.masterUrl, '/api/lease', { handle: c0.handle }).catch(() => undefined), 10_000, 50);
    assert.equal(lease.secondaries.length, 2, 'the first lease left a replica out');
    const data = randomBytes(4 * KiB);
    assert.equal(await rawWrite(lease.primary, lease.handle, lease.version, 0, data), undefined);
    const c = await chunk0(cluster, path);
    assert.equal(c.replicas.length, 3);
    for (const r of c.replicas) {
      const info = await rpcJson<{ version: number }>(r.url, '/chunk/info', undefined, { query: { handle: lease.handle } });
      assert.ok(info.version >= c.version, `${r.id} is listed at v${c.version} but holds v${info.version}`);
      assert.ok((await replicaBytes(r, lease.handle, 0, data.length)).equals(data), `${r.id} lacks the write acknowledged under the first lease`);
    }
  });
});

