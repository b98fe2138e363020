import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { closestFirst, type GfsClient } from '../../client/client.js';
import { GfsError } from '../../shared/errors.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ChunkLocation, ChunksAnswer } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// Invariant 5 on a real cluster: bytes flipped in a replica file on disk are
// never returned to a client; the corruption is found (by a read, or by the
// background scrubber for data nobody reads), reported to the master, a fresh
// replica is cloned and the corrupt one deleted.

const KiB = 1024;
const chunkSizeBytes = 256 * KiB;
const heartbeatMs = 200;
const deadMs = 1_500;
const leaseMs = 1_500;
const repairDeadlineMs = 30_000;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Counters {
  corruptReported: number;
  clonesDone: number;
}

/** XORs `count` bytes at `at` in a file on disk, behind the chunkserver's back. */
async function flipBytes(file: string, at: number, count: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const b = Buffer.alloc(count);
    const { bytesRead } = await fh.read(b, 0, count, at);
    assert.equal(bytesRead, count, `${file} is shorter than ${at + count} bytes`);
    for (let i = 0; i < count; i++) b[i] = b[i]! ^ 0xff;
    await fh.write(b, 0, count, at);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function helpers(get: () => TestCluster) {
  const chunkFile = (id: string, handle: string) => {
    const i = get().chunkservers.findIndex((p) => p?.id === id);
    assert.ok(i >= 0, `no chunkserver ${id}`);
    return join(get().dir, `cs${i}`, 'chunks', `${handle}.chunk`);
  };
  const chunk = async (path: string, index: number): Promise<ChunkLocation> => {
    const a = await rpcJson<ChunksAnswer>(get().masterUrl, '/api/chunks', { path, startIndex: index, count: 1 });
    assert.equal(a.chunks.length, 1, `${path} has no chunk ${index}`);
    return a.chunks[0]!;
  };
  const counters = async () => ((await get().status()) as unknown as { counters: Counters }).counters;
  const fsckChunk = async (path: string, index: number) => {
    const f = await rpcJson<{ files: { path: string; chunks: { index: number; live: string[]; corrupt: string[]; state: string }[] }[] }>(get().masterUrl, '/api/fsck', undefined, { query: { path } });
    return f.files[0]!.chunks[index]!;
  };
  /**
   * Repaired: listed on 3 replicas, none marked corrupt, every listed replica
   * serving the original bytes, and the corrupt replica file gone from the
   * disk or rewritten with the original bytes.
   */
  const waitRepaired = async (client: GfsClient, path: string, index: number, victim: string, handle: string, original: Buffer) => {
    const file = chunkFile(victim, handle);
    const bad = () => existsSync(file) && !readFileSync(file).equals(original);
    const violations: string[] = [];
    await waitFor(
      `chunk ${index} of ${path} to be repaired`,
      async () => {
        // Meanwhile the master must never list the corrupt replica (the file read on both sides of
        // the listing, so a clone completing in between is not mistaken for one).
        const wasBad = bad();
        const listed = (await chunk(path, index)).replicas.some((r) => r.id === victim);
        if (wasBad && listed && bad()) violations.push(`the corrupt replica on ${victim} is listed`);
        const c = await fsckChunk(path, index);
        if (c.live.length !== 3 || c.corrupt.length > 0 || c.state !== 'healthy') return false;
        return !bad();
      },
      repairDeadlineMs,
      50,
    );
    assert.deepEqual(violations.slice(0, 1), [], `listed while corrupt in ${violations.length} polls`);
    const loc = await chunk(path, index);
    assert.equal(loc.replicas.length, 3);
    for (const r of loc.replicas) {
      const b = await client.readReplica(r, loc.handle, loc.version, 0, chunkSizeBytes);
      assert.ok(b.equals(original), `the replica on ${r.id} differs from the original after the repair`);
    }
    return existsSync(file) ? 'rewritten with the original bytes' : 'deleted';
  };
  return { chunkFile, chunk, counters, waitRepaired };
}

// One keep-alive pool for the whole file: closed once, after both clusters are gone.
after(() => closeRpc());

describe('corruption found by reads', { timeout: 90_000 }, () => {
  let cluster: TestCluster | undefined;
  let client: GfsClient;
  const h = helpers(() => cluster!);

  before(async () => {
    cluster = await startCluster({ chunkservers: 4, chunkSizeBytes, heartbeatMs, deadMs, leaseMs, scrubMs: 0 });
    client = cluster.client();
  });

  after(async () => {
    await cluster?.stop();
  });

  it('reads fail over past a replica with flipped bytes, never return them, and the replica is replaced', async () => {
    const path = '/read-corrupt';
    const data = randomBytes(3 * chunkSizeBytes + 5 * KiB);
    await client.create(path);
    await client.write(path, 0, data);
    await client.sync(path);
    const index = 1;
    const original = data.subarray(index * chunkSizeBytes, (index + 1) * chunkSizeBytes);
    const loc = await h.chunk(path, index);
    assert.equal(loc.replicas.length, 3);
    // The replica a fresh client tries first.
    const victim = closestFirst(loc.replicas)[0]!.id;
    const file = h.chunkFile(victim, loc.handle);
    assert.ok(readFileSync(file).equals(original), 'the replica file on disk does not hold the chunk as written');
    const before1 = await h.counters();

    await flipBytes(file, 70_000, 16);

    // A fresh client reads the chunk from the corrupt replica first: it must get the right bytes anyway.
    const reader = cluster!.client();
    const got = await reader.read(path, index * chunkSizeBytes, chunkSizeBytes);
    assert.ok(got.equals(original), 'the read returned other bytes than were written');
    // Through the CLI as well, the whole file.
    const cat = await cluster!.cli(['cat', path]);
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(sha256(cat.stdout), sha256(data));

    // The chunkserver reported it, the master no longer lists it.
    await waitFor('the corrupt replica to be reported', async () => (await h.counters()).corruptReported > before1.corruptReported, 10_000);
    const how = await h.waitRepaired(client, path, index, victim, loc.handle, original);
    const after1 = await h.counters();
    assert.ok(after1.clonesDone > before1.clonesDone, 'no clone made a fresh replica');
    console.log(`# corrupt replica on ${victim}: reported, re-cloned, old file ${how}`);
    assert.equal(sha256(await client.read(path, 0, data.length + 1)), sha256(data));
    const fsck = await cluster!.cli(['fsck', '/']);
    assert.equal(fsck.code, 0, fsck.stdout.toString());
  });

  it('the corrupt replica itself never serves the flipped bytes', async () => {
    const path = '/direct-corrupt';
    const data = randomBytes(chunkSizeBytes);
    await client.create(path);
    await client.write(path, 0, data);
    await client.sync(path);
    const loc = await h.chunk(path, 0);
    const victim = loc.replicas[0]!;
    const before = await h.counters();
    await flipBytes(h.chunkFile(victim.id, loc.handle), chunkSizeBytes - 100, 1);
    // A read of an untouched block is fine; one of the damaged block is refused.
    assert.ok((await client.readReplica(victim, loc.handle, loc.version, 0, 1000)).equals(data.subarray(0, 1000)));
    const err = await client.readReplica(victim, loc.handle, loc.version, chunkSizeBytes - 200, 200).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof GfsError, 'the corrupt block was served');
    assert.equal(err.code, 'CORRUPT');
    // The chunkserver reports it on its own; from then on the master must never list it (waitRepaired
    // checks). Before the report arrives the master cannot know, so the check starts there.
    await waitFor('the corrupt replica to be reported', async () => (await h.counters()).corruptReported > before.corruptReported, 10_000);
    await h.waitRepaired(client, path, 0, victim.id, loc.handle, data);
  });
});

describe('corruption found by the background scrubber', { timeout: 90_000 }, () => {
  let cluster: TestCluster | undefined;
  let client: GfsClient;
  const h = helpers(() => cluster!);

  before(async () => {
    // Three chunkservers: the fresh replica can only go to the server that held the corrupt one.
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, heartbeatMs, deadMs, leaseMs, scrubMs: 100, scrubIdleMs: 300 });
    client = cluster.client();
  });

  after(async () => {
    await cluster?.stop();
  });

  it('corruption of a chunk nobody reads is found, reported and repaired', async () => {
    const path = '/scrubbed';
    const data = randomBytes(2 * chunkSizeBytes - 3 * KiB);
    await client.create(path);
    await client.write(path, 0, data);
    await client.sync(path);
    const index = 1;
    const original = data.subarray(index * chunkSizeBytes);
    const loc = await h.chunk(path, index);
    assert.equal(loc.replicas.length, 3);
    const victim = loc.replicas[1]!.id;
    // Let the write's lease run out, so re-replication may start as soon as the damage is reported.
    await waitFor(
      'the lease on the chunk to run out',
      async () => {
        const held = await Promise.all(loc.replicas.map((r) => rpcJson<{ leases: { handle: string }[] }>(r.url, '/debug/state')));
        return held.every((s) => !s.leases.some((l) => l.handle === loc.handle));
      },
      10_000,
      100,
    );
    const before1 = await h.counters();
    // The last, partial checksum block.
    await flipBytes(h.chunkFile(victim, loc.handle), original.length - 10, 4);
    // No client reads the file until it is repaired: only the scrubber can find the damage.
    await waitFor('the scrubber to report the corrupt replica', async () => (await h.counters()).corruptReported > before1.corruptReported, 20_000, 100);
    const how = await h.waitRepaired(client, path, index, victim, loc.handle, original);
    console.log(`# scrubbed corrupt replica on ${victim}: reported, re-cloned, old file ${how}`);
    assert.equal(sha256(await client.read(path, 0, data.length + 1)), sha256(data));
  });
});
