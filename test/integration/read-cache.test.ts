import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { truncate } from 'node:fs/promises';
import { join } from 'node:path';
import type { GfsClient } from '../../client/client.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ChunksAnswer } from '../../shared/wire.js';
import { startCluster, waitFor, type TestCluster } from '../helpers/cluster.js';
import { scrape } from '../helpers/metrics.js';

// Reads and the client's location cache, with real processes: a second read
// of a file is served from cached locations and size without the master; a
// reader past the end of what it knows asks the master once for the chunk
// count, then a replica of the last chunk for its length;
// a replica cut short by hand in a middle chunk is failed over, never read
// as zeros (only a hole, short alike on every replica, reads as zeros).

const KiB = 1024;
const chunkSizeBytes = 256 * KiB;
const blockBytes = 64 * KiB; // the chunkservers' checksum block

describe('reads from cached locations', { timeout: 120_000 }, () => {
  let cluster: TestCluster | undefined;

  before(async () => {
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes });
    await cluster.client().mkdir('/rc');
  });

  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  /** Requests the master has answered on its chunks route, from its own /metrics. */
  const chunksCalls = async () => (await scrape(cluster!.masterUrl)).sum('gfs_requests_total', { op: '/api/chunks' });

  async function put(c: GfsClient, path: string, data: Buffer): Promise<void> {
    await c.create(path);
    await c.write(path, 0, data);
    await c.sync(path);
  }

  it('reads a file twice, the second time without the master; a tail reader sees appended data', async () => {
    const writer = cluster!.client();
    const data = randomBytes(2 * chunkSizeBytes + 100 * KiB);
    await put(writer, '/rc/a', data);

    const reader = cluster!.client();
    assert.ok((await reader.read('/rc/a', 0, data.length)).equals(data), 'first read');
    const before = await chunksCalls();
    assert.ok(before > 0, 'the first read asked the master where the chunks are');
    assert.ok((await reader.read('/rc/a', 0, data.length)).equals(data), 'second read');
    assert.ok((await reader.read('/rc/a', chunkSizeBytes - 10, 20)).equals(data.subarray(chunkSizeBytes - 10, chunkSizeBytes + 10)), 'a read across a chunk boundary');
    assert.equal(await chunksCalls(), before, 'reads within what the client knows do not ask the master');

    // An append into the last chunk: the reader learns the new length from one of its replicas.
    const more = randomBytes(5000);
    const at = await writer.appendRaw('/rc/a', more);
    assert.equal(at, data.length);
    const tail = await reader.read('/rc/a', data.length, 64 * KiB);
    assert.ok(tail.equals(more), `the tail reader got ${tail.length} bytes of the ${more.length} appended`);
    // Past what it knew, the reader asks the master once (how many chunks: a chunk that is not full is no
    // proof that none follows, files have holes), then a replica of the last chunk for its length.
    assert.equal(await chunksCalls(), before + 1, 'past the end of what it knew, the reader asked the master exactly once');
    assert.equal((await reader.read('/rc/a', data.length + more.length, 100)).length, 0, 'end of file');
  });

  it('reads never make the master ask replicas for the length of a last chunk', async () => {
    const asks = async () => (await rpcJson<{ counters: { replicaSizeAsks: number } }>(cluster!.masterUrl, '/api/status')).counters.replicaSizeAsks;
    const writer = cluster!.client();
    const data = randomBytes(chunkSizeBytes + 3000);
    await put(writer, '/rc/fan', data);
    const before = await asks();
    // Fresh readers (empty caches), reads within and past the end, and a tail that grows under them.
    for (let k = 0; k < 3; k++) {
      const reader = cluster!.client();
      assert.ok((await reader.read('/rc/fan', 0, data.length + 100)).equals(data), `read ${k}`);
      assert.equal((await reader.read('/rc/fan', data.length, 10)).length, 0, 'end of file');
    }
    const more = randomBytes(777);
    await writer.appendRaw('/rc/fan', more);
    assert.ok((await cluster!.client().read('/rc/fan', data.length, 1000)).equals(more), 'a fresh reader sees the append');
    assert.equal(await asks(), before, 'the master fanned out to replicas while serving reads');
    // stat still asks the replicas (its size must be exact), which shows the counter counts.
    assert.equal((await writer.stat('/rc/fan')).sizeBytes, data.length + more.length);
    assert.ok((await asks()) > before, 'stat asked the replicas');
  });

  it('a tail reader follows an append that filled the last chunk into a new one', async () => {
    const writer = cluster!.client();
    const data = randomBytes(chunkSizeBytes - 1000);
    await put(writer, '/rc/b', data);
    const reader = cluster!.client();
    assert.ok((await reader.read('/rc/b', 0, data.length)).equals(data));
    // 5000 bytes do not fit in the 1000 left: the chunk is padded and the record goes to the next.
    const more = randomBytes(5000);
    assert.equal(await writer.appendRaw('/rc/b', more), chunkSizeBytes);
    const got = await reader.read('/rc/b', data.length, 1000 + more.length + 100);
    assert.equal(got.length, 1000 + more.length);
    assert.ok(got.subarray(1000).equals(more), 'the record in the new chunk');
  });

  it('a replica cut short in a middle chunk is failed over, and never read as zeros', async () => {
    const writer = cluster!.client();
    const data = randomBytes(2 * chunkSizeBytes + 10 * KiB);
    await put(writer, '/rc/c', data);
    const chunk0 = async () => (await rpcJson<ChunksAnswer>(cluster!.masterUrl, '/api/chunks', { path: '/rc/c', startIndex: 0, count: 1 })).chunks[0]!;
    const loc = await chunk0();
    assert.equal(loc.replicas.length, 3);
    const victim = loc.replicas[0]!;
    const i = cluster!.chunkservers.findIndex((p) => p?.id === victim.id);
    assert.ok(i >= 0, `no chunkserver ${victim.id}`);

    // Cut at a checksum block boundary while it is down: it comes back with a consistent, short replica at the current version.
    await cluster!.kill(cluster!.chunkservers[i], 'SIGKILL');
    await truncate(join(cluster!.dir, `cs${i}`, 'chunks', `${loc.handle}.chunk`), blockBytes);
    await cluster!.startChunkserver(i);
    const served = async () => (await rpcJson<{ reads: { served: number } }>(cluster!.chunkservers[i]!.url, '/debug/state')).reads.served;
    await waitFor(`${victim.id} listed for chunk 0 again`, async () => (await chunk0()).replicas.some((r) => r.id === victim.id), 20_000);
    const info = await rpcJson<{ sizeBytes: number; version: number }>(cluster!.chunkservers[i]!.url, '/chunk/info', undefined, { query: { handle: loc.handle } });
    assert.deepEqual(info, { handle: loc.handle, sizeBytes: blockBytes, version: loc.version }, 'the victim serves a short replica at the current version');

    const servedBefore = await served();
    // Reads rotate over the replicas: six whole-chunk reads start at each replica twice.
    const reader = cluster!.client();
    for (let k = 0; k < 6; k++) {
      const got = await reader.read('/rc/c', 0, chunkSizeBytes);
      assert.equal(got.length, chunkSizeBytes);
      assert.ok(got.equals(data.subarray(0, chunkSizeBytes)), `read ${k} differs from what was written`);
    }
    assert.ok((await served()) > servedBefore, 'the short replica was asked (and passed over)');
    const whole = await reader.read('/rc/c', 0, data.length);
    assert.ok(whole.equals(data), 'the whole file, byte for byte');
  });

  it('a hole, short alike on every replica, reads as zeros up to the data after it', async () => {
    const c = cluster!.client();
    await c.create('/rc/sparse');
    const head = randomBytes(1000);
    const far = randomBytes(10);
    await c.write('/rc/sparse', 0, head);
    // Past the end, two chunks on: chunk 0 stays 1000 bytes long and chunk 1 empty on every replica.
    await c.write('/rc/sparse', 2 * chunkSizeBytes + 5, far);
    const want = Buffer.concat([head, Buffer.alloc(2 * chunkSizeBytes + 5 - head.length), far]);
    for (const reader of [c, cluster!.client()]) {
      const got = await reader.read('/rc/sparse', 0, want.length + 100);
      assert.equal(got.length, want.length);
      assert.ok(got.equals(want), 'the data, zeros in the hole, the data past it');
    }
  });
});
