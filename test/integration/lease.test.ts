import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { GfsClient } from '../../client/client.js';
import { GfsError } from '../../shared/errors.js';
import { closeRpc, rpcJson, rpcStream } from '../../shared/rpc.js';
import type { ChunkInfoAnswer, ChunkLocation, LeaseAnswer, ReplicaRef, WriteAnswer } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { firstChunk } from '../helpers/chunks.js';
import { waitFor } from '../helpers/wait.js';

// Leases with real processes on 127.0.0.1: a primary cut off from the master
// stops by its own clock; the master waits out a primary that does not
// answer before it grants a new lease elsewhere; and a primary that keeps
// mutating keeps its lease through heartbeat extensions.

const KiB = 1024;
const chunkSizeBytes = 1024 * KiB;
const leaseMs = 3_000;
const heartbeatMs = 200;
const deadMs = 1_200;

interface DebugState {
  id: string;
  leases: { handle: string; version: number; remainingMs: number }[];
  push: { usedBytes: number; count: number };
  chunks: { handle: string; version: number; sizeBytes: number }[];
}

interface MasterCounters {
  counters: { leaseGrants: number; leaseExtensions: number };
}

describe('leases', { timeout: 120_000 }, () => {
  let cluster: TestCluster | undefined;
  let client: GfsClient;
  let seq = 0;

  before(async () => {
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, leaseMs, heartbeatMs, deadMs });
    client = cluster.client();
  });

  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  const chunk0 = (path: string): Promise<ChunkLocation> => firstChunk(cluster!.masterUrl, path);

  /** A file with one chunk holding `base`, written through the client (so a lease was granted and confirmed). */
  async function fileWith(path: string, base: Buffer): Promise<{ handle: string; lease: LeaseAnswer; askedAtMs: number }> {
    await client.create(path);
    await client.write(path, 0, base);
    const { handle } = await chunk0(path);
    const askedAtMs = performance.now();
    const lease = await rpcJson<LeaseAnswer>(cluster!.masterUrl, '/api/lease', { handle });
    return { handle, lease, askedAtMs };
  }

  const state = (url: string) => rpcJson<DebugState>(url, '/debug/state');

  function indexOf(id: string): number {
    const i = cluster!.chunkservers.findIndex((p) => p?.id === id);
    assert.ok(i >= 0, `no chunkserver ${id}`);
    return i;
  }

  /** Pushes data along the given chain and sends /chunk/write straight to `primary`; resolves to the error, or undefined on success. */
  async function rawWrite(primary: ReplicaRef, chain: ReplicaRef[], handle: string, version: number, offset: number, data: Buffer): Promise<GfsError | undefined> {
    const { dataId, crc } = await client.push(chain, data);
    return rpcJson<WriteAnswer>(primary.url, '/chunk/write', {
      handle,
      version,
      offset,
      dataId,
      sizeBytes: data.length,
      crc32c: crc,
      clientId: 'leasetest',
      requestId: `r${seq++}`,
    }).then(
      () => undefined,
      (e: unknown) => {
        if (e instanceof GfsError) return e;
        throw e;
      },
    );
  }

  async function replicaBytes(r: ReplicaRef, handle: string, length: number): Promise<Buffer> {
    const res = await rpcStream(r.url, '/chunk/read', undefined, { query: { handle, offset: 0, length } });
    return Buffer.from(await res.body.arrayBuffer());
  }

  it('a primary cut off from the master refuses mutations once its lease has expired by its own clock', async () => {
    const base = randomBytes(64 * KiB);
    const { handle, lease } = await fileWith('/lease-a', base);
    const primary = lease.primary;
    const replicas = [primary, ...lease.secondaries];
    assert.equal(replicas.length, 3);
    // The client's write went through the primary, so it holds a confirmed lease.
    await waitFor(`${primary.id} to hold the lease`, async () => (await state(primary.url)).leases.some((l) => l.handle === handle), 5_000);

    await cluster!.setFaults([
      { from: primary.id, to: 'master', drop: true },
      { from: 'master', to: primary.id, drop: true },
    ]);
    const cutAt = performance.now();
    try {
      // No heartbeat gets through, so no extension: the lease runs out by the primary's own clock.
      await waitFor(`${primary.id}'s lease to expire by its own clock`, async () => !(await state(primary.url)).leases.some((l) => l.handle === handle), leaseMs + 5_000);
      console.log(`# ${primary.id}'s lease ran out ${Math.round(performance.now() - cutAt)} ms after the cut`);

      const evil = Buffer.alloc(32 * KiB, 0xee);
      const err = await rawWrite(primary, replicas, handle, lease.version, 0, evil);
      assert.ok(err, 'the primary accepted a write after its lease expired');
      assert.equal(err.status, 409, `expected 409, got ${err.status} ${err.code}: ${err.message}`);
      assert.ok(err.code === 'LEASE_EXPIRED' || err.code === 'NOT_PRIMARY', `unexpected code ${err.code}`);

      // An append is refused the same way.
      const { dataId, crc } = await client.push(replicas, evil);
      const appendErr = await rpcJson(primary.url, '/chunk/append', { handle, version: lease.version, dataId, sizeBytes: evil.length, crc32c: crc, clientId: 'leasetest', requestId: `r${seq++}` }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(appendErr instanceof GfsError && appendErr.status === 409, `append after expiry: ${String(appendErr)}`);

      // Nothing was applied anywhere.
      for (const r of replicas) {
        const info = await rpcJson<ChunkInfoAnswer>(r.url, '/chunk/info', undefined, { query: { handle } });
        assert.equal(info.sizeBytes, base.length, `${r.id}: chunk length changed`);
        assert.equal(info.version, lease.version, `${r.id}: version changed`);
        assert.ok((await replicaBytes(r, handle, base.length)).equals(base), `${r.id}: bytes changed`);
      }
    } finally {
      await cluster!.setFaults([]);
    }
    // Healed: the file is writable again.
    const after = randomBytes(8 * KiB);
    await client.write('/lease-a', 0, after);
    assert.ok((await client.read('/lease-a', 0, after.length)).equals(after));
  });

  it('the master waits out the lease of a primary that does not answer before granting a new one elsewhere', async () => {
    const base = randomBytes(64 * KiB);
    const { handle, lease: old, askedAtMs } = await fileWith('/lease-b', base);
    const pi = indexOf(old.primary.id);
    const proc = cluster!.chunkservers[pi]!.proc;
    assert.ok(proc.pid);
    // Lower bound on the old lease's expiry by the master's clock, raised by every answer that shows it still running.
    let expiryNoEarlierThan = askedAtMs + old.leaseRemainingMs;
    // Each LEASE_PENDING answer bounds the expiry on both sides: the master computed retryAfterMs somewhere between
    // sending and receiving, so expiry lies in [sentAt + retryAfterMs, receivedAt + retryAfterMs].
    const pending: { retryAfterMs: number; expiresNoEarlierThan: number; expiresNoLaterThan: number }[] = [];
    const others: string[] = [];
    const busy: string[] = [];
    let granted: LeaseAnswer | undefined;
    let grantedBy = 0;

    process.kill(proc.pid, 'SIGSTOP');
    const stoppedAt = performance.now();
    try {
      await waitFor(
        'a new lease',
        async () => {
          const sentAt = performance.now();
          try {
            const a = await rpcJson<LeaseAnswer>(cluster!.masterUrl, '/api/lease', { handle }, { timeoutMs: 10_000 });
            if (a.primary.id === old.primary.id && a.version === old.version) {
              // Still the old lease (the master has not yet noticed the silence).
              expiryNoEarlierThan = Math.max(expiryNoEarlierThan, sentAt + a.leaseRemainingMs);
              return undefined;
            }
            granted = a;
            grantedBy = performance.now();
            return a;
          } catch (e) {
            if (e instanceof GfsError && e.code === 'LEASE_PENDING' && !e.message.startsWith('no lease for')) {
              // Busy for another reason (the silent primary's chunk is being re-replicated): says nothing of the expiry.
              busy.push(e.message);
              return undefined;
            }
            if (e instanceof GfsError && e.code === 'LEASE_PENDING') {
              const retryAfterMs = Number(e.detail?.retryAfterMs);
              const lo = sentAt + retryAfterMs - 1;
              pending.push({ retryAfterMs, expiresNoEarlierThan: lo, expiresNoLaterThan: performance.now() + retryAfterMs + 1 });
              expiryNoEarlierThan = Math.max(expiryNoEarlierThan, lo);
              return undefined;
            }
            others.push(e instanceof GfsError ? `${e.code}: ${e.message}` : String(e));
            return undefined;
          }
        },
        leaseMs + deadMs + 15_000,
        50,
      );
    } finally {
      process.kill(proc.pid, 'SIGCONT');
    }
    assert.ok(granted);
    console.log(
      `# stopped ${old.primary.id}; ${pending.length} LEASE_PENDING answers, new lease to ${granted.primary.id} after ${Math.round(grantedBy - stoppedAt)} ms, ` +
        `${Math.round(grantedBy - expiryNoEarlierThan)} ms after the old lease's expiry; ${busy.length} busy answers; other errors: ${others.length}`,
    );
    assert.deepEqual(others, [], 'the master answered with errors other than LEASE_PENDING');
    assert.ok(pending.length > 0, 'the master never answered LEASE_PENDING while the old lease ran');
    for (const p of pending) assert.ok(p.retryAfterMs > 0 && p.retryAfterMs <= leaseMs + 100, `retryAfterMs ${p.retryAfterMs}`);
    // The pending answers all point at one expiry: nothing extended a lease whose holder is silent. Their intervals
    // must share a point (a slow answer widens its own interval instead of failing the check on a loaded machine).
    const latestLo = Math.max(...pending.map((p) => p.expiresNoEarlierThan));
    const earliestHi = Math.min(...pending.map((p) => p.expiresNoLaterThan));
    assert.ok(latestLo <= earliestHi + 20, `pending answers disagree on the expiry: one says no earlier than ${Math.round(latestLo - earliestHi)} ms after another's latest`);
    assert.notEqual(granted.primary.id, old.primary.id, 'the new lease went to the silent primary');
    assert.ok(granted.version > old.version, `version not bumped: ${old.version} -> ${granted.version}`);
    assert.ok(grantedBy >= expiryNoEarlierThan, `new lease granted ${Math.round(expiryNoEarlierThan - grantedBy)} ms before the old one expired`);
    assert.ok(grantedBy >= askedAtMs + Math.min(old.leaseRemainingMs, leaseMs), 'new lease granted within the old lease term');

    // The resumed old primary knows its lease is over: it refuses a mutation at its old version.
    const resumed = cluster!.chunkservers[pi]!;
    const oldRef: ReplicaRef = { id: resumed.id, url: resumed.url, rack: old.primary.rack };
    const err = await rawWrite(oldRef, [oldRef], handle, old.version, 0, Buffer.alloc(4 * KiB, 0xee));
    assert.ok(err && err.status === 409 && (err.code === 'NOT_PRIMARY' || err.code === 'LEASE_EXPIRED' || err.code === 'STALE_VERSION'), `resumed old primary: ${err?.code ?? 'accepted the write'}`);
    // And the file is writable through the new primary.
    const next = randomBytes(16 * KiB);
    await client.write('/lease-b', 0, next);
    assert.ok((await client.read('/lease-b', 0, next.length)).equals(next));
    const latest = await rpcJson<LeaseAnswer>(cluster!.masterUrl, '/api/lease', { handle });
    assert.equal(latest.primary.id, granted.primary.id);
  });

  it('a primary that keeps mutating keeps its lease through heartbeat extensions', async () => {
    const { handle, lease } = await fileWith('/lease-c', randomBytes(4 * KiB));
    const replicas = [lease.primary, ...lease.secondaries];
    const before = await rpcJson<MasterCounters>(cluster!.masterUrl, '/api/status');
    const start = performance.now();
    let writes = 0;
    let last = Buffer.alloc(0);
    let lastOffset = 0;
    while (performance.now() - start < 2.5 * leaseMs) {
      last = randomBytes(4 * KiB);
      lastOffset = (writes * 4 * KiB) % (chunkSizeBytes / 2);
      const err = await rawWrite(lease.primary, replicas, handle, lease.version, lastOffset, last);
      assert.equal(err, undefined, `write ${writes} after ${Math.round(performance.now() - start)} ms failed: ${err?.code} ${err?.message}`);
      writes++;
    }
    const elapsed = performance.now() - start;
    const now = await rpcJson<LeaseAnswer>(cluster!.masterUrl, '/api/lease', { handle });
    const afterStatus = await rpcJson<MasterCounters>(cluster!.masterUrl, '/api/status');
    console.log(`# ${writes} writes in ${Math.round(elapsed)} ms; lease extensions ${afterStatus.counters.leaseExtensions - before.counters.leaseExtensions}`);
    assert.equal(now.primary.id, lease.primary.id, 'the primary changed');
    assert.equal(now.version, lease.version, 'a new lease was granted');
    assert.equal(afterStatus.counters.leaseGrants, before.counters.leaseGrants, 'the master granted a lease meanwhile');
    assert.ok(afterStatus.counters.leaseExtensions > before.counters.leaseExtensions, 'no lease extension was granted');
    const held = (await state(lease.primary.url)).leases.find((l) => l.handle === handle);
    assert.ok(held && held.remainingMs > 0, 'the primary does not hold the lease any more');
    for (const r of replicas) {
      const res = await rpcStream(r.url, '/chunk/read', undefined, { query: { handle, offset: lastOffset, length: last.length } });
      assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(last), `${r.id} lacks the last write`);
    }
  });
});
