import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { GfsClient } from '../../client/client.js';
import { crc32c } from '../../shared/checksum.js';
import { GfsError } from '../../shared/errors.js';
import { rpcJson, rpcStream } from '../../shared/rpc.js';
import type { ChunkInfoAnswer, LeaseAnswer, PushAnswer, ReplicaRef, WriteAnswer } from '../../shared/wire.js';
import type { PushRecord } from '../../chunkserver/push.js';
import { leasedChunkPerSuite } from '../helpers/chunks.js';
import { waitFor } from '../helpers/cluster.js';

// The data push is a pipelined chain: each hop forwards bytes to the next as
// they arrive. Pushed slowly, the last hop must see its first byte before the
// first hop has seen its last. A truncated push leaves nothing behind.

const MiB = 1024 * 1024;
const chunkSizeBytes = 32 * MiB;

interface DebugState {
  push: { usedBytes: number; count: number };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('pipelined data push', { timeout: 90_000 }, () => {
  let client: GfsClient, handle: string, lease: LeaseAnswer;
  // A chunk with a lease, so pushed data can be used by (and so removed with) a write.
  leasedChunkPerSuite({ chunkservers: 3, chunkSizeBytes, leaseMs: 10_000, heartbeatMs: 200, deadMs: 3_000 }, '/pipe', (t) => ({ client, handle, lease } = t));
  let seq = 0;

  const state = (r: ReplicaRef) => rpcJson<DebugState>(r.url, '/debug/state');
  const pushes = async (r: ReplicaRef) => (await rpcJson<{ pushes: PushRecord[] }>(r.url, '/debug/pushes')).pushes;
  const chain = () => [lease.primary, ...lease.secondaries];

  function write(dataId: string, data: Buffer, crc: number, offset: number): Promise<WriteAnswer> {
    return rpcJson<WriteAnswer>(
      lease.primary.url,
      '/chunk/write',
      { handle, version: lease.version, offset, dataId, sizeBytes: data.length, crc32c: crc, clientId: 'pipetest', requestId: `p${seq++}` },
      { timeoutMs: 60_000 },
    );
  }

  it('pushed slowly along 3 replicas, the last hop starts receiving before the first hop has everything', async () => {
    const hops = chain();
    assert.equal(hops.length, 3);
    const data = randomBytes(24 * MiB);
    const dataId = `pipe${seq++}`;
    const pieceBytes = 1 * MiB;
    async function* slowly(): AsyncGenerator<Buffer> {
      for (let at = 0; at < data.length; at += pieceBytes) {
        yield data.subarray(at, at + pieceBytes);
        await pause(25); // pacing the sender, not synchronisation
      }
    }
    const startedAt = Date.now();
    const res = await rpcStream(hops[0]!.url, `/push/${dataId}`, Readable.from(slowly()), {
      method: 'PUT',
      contentLength: data.length,
      bodySha256: sha256(data), // a streamed body is signed by its digest (shared/auth.ts)
      headers: { 'x-gfs-chain': JSON.stringify(hops.slice(1).map((h) => h.url)) },
    });
    const answer = (await res.body.json()) as PushAnswer;
    const crc = crc32c(data);
    assert.equal(answer.sizeBytes, data.length);
    assert.equal(answer.crc32c, crc);

    const recs = await Promise.all(hops.map(async (h) => (await pushes(h)).find((p) => p.dataId === dataId)));
    recs.forEach((r, i) => assert.ok(r, `hop ${i} (${hops[i]!.id}) has no record of the push`));
    const [first, second, last] = recs as PushRecord[];
    assert.equal(first!.forwardedTo, hops[1]!.url);
    assert.equal(second!.forwardedTo, hops[2]!.url);
    assert.equal(last!.forwardedTo ?? undefined, undefined);
    for (const r of recs) assert.equal(r!.sizeBytes, data.length);
    console.log(
      `# push of 24 MiB took ${Date.now() - startedAt} ms; first hop ${first!.firstByteAtMs - startedAt}..${first!.lastByteAtMs - startedAt} ms, ` +
        `second ${second!.firstByteAtMs - startedAt}..${second!.lastByteAtMs - startedAt} ms, last ${last!.firstByteAtMs - startedAt}..${last!.lastByteAtMs - startedAt} ms`,
    );
    assert.ok(
      last!.firstByteAtMs < first!.lastByteAtMs,
      `store-and-forward: the last hop's first byte came ${last!.firstByteAtMs - first!.lastByteAtMs} ms after the first hop's last byte`,
    );
    // Pipelined, not a star: each hop starts after the one before it.
    assert.ok(first!.firstByteAtMs <= second!.firstByteAtMs && second!.firstByteAtMs <= last!.firstByteAtMs);

    // The data is usable: a write consumes it on every replica (which also empties the buffers).
    const w = await write(dataId, data, crc, 0);
    assert.equal(w.chunkSizeBytes, data.length);
    for (const h of hops) {
      const info = await rpcJson<ChunkInfoAnswer>(h.url, '/chunk/info', undefined, { query: { handle } });
      assert.equal(info.sizeBytes, data.length, `${h.id}: chunk length`);
      const s = await state(h);
      assert.equal(s.push.count, 0, `${h.id}: pushed data left in the buffer after the write used it`);
    }
    assert.equal(sha256(await client.readReplica(hops[2]!, handle, lease.version, 0, data.length)), sha256(data));
  });

  it('a push whose next hop is down fails fast along the chain and leaves nothing behind', async () => {
    const hops = chain();
    const data = randomBytes(3 * MiB); // more than a hop's forwarding buffer
    const dataId = `dead${seq++}`;
    const startedAt = Date.now();
    const outcome = await rpcStream(hops[0]!.url, `/push/${dataId}`, data, {
      method: 'PUT',
      contentLength: data.length,
      timeoutMs: 20_000,
      headers: { 'x-gfs-chain': JSON.stringify([hops[1]!.url, 'http://127.0.0.1:1']) },
    }).then(
      async (r) => `answered ${r.statusCode}: ${await r.body.text()}`,
      (e: unknown) => e,
    );
    const tookMs = Date.now() - startedAt;
    assert.ok(outcome instanceof GfsError, `the push succeeded: ${String(outcome)}`);
    assert.equal(outcome.code, 'UNAVAILABLE', `${outcome.code}: ${outcome.message}`);
    assert.ok(tookMs < 10_000, `the failure took ${tookMs} ms to come back`);
    await waitFor('the hops to release the failed push', async () => (await Promise.all(hops.map(state))).every((x) => x.push.count === 0 && x.push.usedBytes === 0), 10_000);
  });

  it('a truncated push leaves nothing in any buffer, and a write naming it fails with UNKNOWN_DATA', async () => {
    const hops = chain();
    const declared = 8 * MiB;
    const sent = randomBytes(3 * MiB);
    const dataId = `trunc${seq++}`;
    for (const h of hops) assert.equal((await state(h)).push.count, 0, `${h.id}: buffer not empty to begin with`);
    async function* truncated(): AsyncGenerator<Buffer> {
      for (let at = 0; at < sent.length; at += MiB) yield sent.subarray(at, at + MiB);
      // Every hop has reserved room for the push: it reached the end of the chain.
      await waitFor('the push to reach the last hop', async () => (await state(hops[2]!)).push.usedBytes >= declared, 10_000);
      throw new Error('the sender gives up');
    }
    const outcome = await rpcStream(hops[0]!.url, `/push/${dataId}`, Readable.from(truncated()), {
      method: 'PUT',
      contentLength: declared,
      bodySha256: sha256(sent),
      headers: { 'x-gfs-chain': JSON.stringify(hops.slice(1).map((h) => h.url)) },
    }).then(
      async (r) => `answered ${r.statusCode}: ${await r.body.text()}`,
      (e: unknown) => e,
    );
    assert.ok(outcome instanceof Error, `the truncated push succeeded: ${String(outcome)}`);

    await waitFor(
      'every hop to drop the truncated push',
      async () => {
        const s = await Promise.all(hops.map(state));
        return s.every((x) => x.push.count === 0 && x.push.usedBytes === 0);
      },
      10_000,
    );
    for (const h of hops) assert.ok(!(await pushes(h)).some((p) => p.dataId === dataId), `${h.id} recorded the truncated push as complete`);

    const err = await write(dataId, sent, crc32c(sent), 0).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof GfsError, 'a write of truncated data succeeded');
    assert.equal(err.status, 409);
    assert.equal(err.code, 'UNKNOWN_DATA');
    // A secondary told to apply it refuses too.
    const applied = await rpcJson<{ results: { ok: boolean; code?: string }[] }>(hops[1]!.url, '/chunk/apply', {
      handle,
      version: lease.version,
      ops: [{ kind: 'write', serial: 1_000_000, offset: 0, dataId, sizeBytes: declared }],
      // Every earlier serial answered: otherwise the secondary holds this one back for the gap (chunkserver/serial-order.ts).
      ackedThrough: 999_999,
    });
    assert.equal(applied.results[0]!.ok, false);
    assert.equal(applied.results[0]!.code, 'UNKNOWN_DATA');
    // Nothing changed on any replica.
    for (const h of hops) {
      const info = await rpcJson<ChunkInfoAnswer>(h.url, '/chunk/info', undefined, { query: { handle } });
      assert.equal(info.sizeBytes, 24 * MiB, `${h.id}: chunk length changed`);
    }
  });
});
