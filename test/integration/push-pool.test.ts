import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { GfsError } from '../../shared/errors.js';
import { rpcJson, rpcStream } from '../../shared/rpc.js';
import type { LeaseAnswer, ReplicaRef, WriteAnswer } from '../../shared/wire.js';
import type { GfsClient } from '../../client/client.js';
import { leasedChunkPerSuite } from '../helpers/chunks.js';
import { waitFor } from '../helpers/cluster.js';
import { authHeaders, rawRequest } from '../helpers/signed.js';

// Pushed data is received into reusable buffer slots (chunkserver/buffer-pool.ts).
// Every slot must come back on every path: a write that used it, a push that
// failed (truncated, next hop down, tampered), data a mutation refused (wrong
// checksum, wrong size, wrong version, not the primary) and data nobody took
// (expired). After a round of each, every hop has lent nothing.

const MiB = 1024 * 1024;
const chunkSizeBytes = 4 * MiB;
const pushExpiryMs = 1_500;

interface PoolState {
  push: { count: number; usedBytes: number; active: number; pool: { inUse: number; idle: number; made: number; pooled: number; released: number } };
  /** O_DIRECT use (null where the file system has none). */
  direct: { writes: number; writtenBytes: number } | null;
}

describe('push buffer slots come back on every path', { timeout: 180_000 }, () => {
  let client: GfsClient, handle: string, lease: LeaseAnswer;
  leasedChunkPerSuite({ chunkservers: 3, chunkSizeBytes, leaseMs: 10_000, heartbeatMs: 200, deadMs: 3_000, env: { GFS_PUSH_EXPIRY_MS: String(pushExpiryMs), GFS_PUSH_POOL_PREFILL: '1' } }, '/pool', (t) => ({ client, handle, lease } = t));
  let seq = 0;

  const state = (r: ReplicaRef) => rpcJson<PoolState>(r.url, '/debug/state');
  const hops = () => [lease.primary, ...lease.secondaries];
  const write = (to: ReplicaRef, body: Record<string, unknown>) =>
    rpcJson<WriteAnswer>(to.url, '/chunk/write', { handle, version: lease.version, offset: 0, clientId: 'pooltest', requestId: `q${seq++}`, ...body }, { timeoutMs: 30_000 }).then(
      () => undefined,
      (e: unknown) => (e instanceof GfsError ? e : Promise.reject(e)),
    );

  it('after writes, failed pushes, refused mutations and expired data, every hop has every slot back', async () => {
    const before = await Promise.all(hops().map(state));
    // 1. Writes that use their pushes (2 MiB pieces: pooled).
    const big = randomBytes(2 * MiB);
    for (let i = 0; i < 3; i++) {
      const { dataId, crc } = await client.push(hops(), big);
      assert.equal(await write(lease.primary, { offset: 0, dataId, sizeBytes: big.length, crc32c: crc }), undefined);
    }
    // 2. Mutations that refuse their data: wrong checksum, wrong size (the slot is given back at once), wrong version and
    //    a secondary asked to act as primary (the data stays until it expires).
    const refusals: [string, Record<string, unknown>, ReplicaRef][] = [
      ['wrong checksum', { crc32c: 1 }, lease.primary],
      ['wrong size', { sizeBytes: big.length - 1 }, lease.primary],
      ['stale version', { version: lease.version + 5 }, lease.primary],
      ['not the primary', {}, lease.secondaries[0]!],
    ];
    for (const [what, change, to] of refusals) {
      const { dataId, crc } = await client.push(hops(), big);
      const err = await write(to, { dataId, sizeBytes: big.length, crc32c: crc, ...change });
      assert.ok(err instanceof GfsError, `${what}: the write went through`);
    }
    // 3. A push nobody writes: expires.
    await client.push(hops(), big);
    // 4. A push whose next hop is down.
    const down = await rpcStream(lease.primary.url, `/push/pool-down${seq++}`, big, { method: 'PUT', contentLength: big.length, timeoutMs: 20_000, headers: { 'x-gfs-chain': JSON.stringify(['http://127.0.0.1:1']) } }).then(
      () => 'ok',
      (e: unknown) => e,
    );
    assert.ok(down instanceof GfsError, `push to a dead next hop: ${String(down)}`);
    // 5. A truncated push: half the body, then the connection closes.
    const target = `/push/pool-torn${seq++}`;
    await rawRequest(lease.primary.url, { method: 'PUT', target, body: big, sendBytes: big.length / 2, headers: { 'content-type': 'application/octet-stream', 'x-gfs-chain': JSON.stringify([lease.secondaries[0]!.url]), ...authHeaders('PUT', target, big, { headers: { 'x-gfs-chain': JSON.stringify([lease.secondaries[0]!.url]) } }) } });
    // 6. A push whose body is not the signed one.
    const target2 = `/push/pool-lying${seq++}`;
    const lying = await rawRequest(lease.primary.url, { method: 'PUT', target: target2, body: big, headers: { 'content-type': 'application/octet-stream', ...authHeaders('PUT', target2, big, { bodySha256: 'f'.repeat(64) }) } });
    assert.ok(lying.status === undefined || lying.status >= 400, `lying push answered ${lying.status}`);

    const after = await waitFor(
      'every hop to have every slot back and nothing held',
      async () => {
        const s = await Promise.all(hops().map(state));
        return s.every((x) => x.push.pool.inUse === 0 && x.push.count === 0 && x.push.active === 0 && x.push.usedBytes === 0) ? s : undefined;
      },
      20_000,
    );
    after.forEach((s, i) => {
      const lent = s.push.pool.pooled - before[i]!.push.pool.pooled;
      assert.ok(lent >= 8, `hop ${i} lent only ${lent} slots: the pool was not exercised`);
      assert.equal(s.push.pool.released - before[i]!.push.pool.released, lent, `hop ${i}: every slot lent was released once`);
      // Reused, not made afresh each time: no more slots than pushes held at once (at most the four refused or
      // unused ones waiting to expire, a torn one and the one arriving) served every push.
      assert.ok(s.push.pool.made <= 6 && s.push.pool.made < lent, `hop ${i} made ${s.push.pool.made} slots for ${lent} pushes`);
    });
    // The data written through pooled slots reads back intact.
    assert.ok((await client.read('/pool', 0, big.length)).equals(big));
    // Where the disk takes O_DIRECT, the pooled 2 MiB pieces went to it straight from their slots.
    after.forEach((s, i) => {
      if (s.direct) assert.ok(s.direct.writes - (before[i]!.direct?.writes ?? 0) >= 3, `hop ${i}: the written pieces went through O_DIRECT`);
    });
  });
});
