import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkServers } from '../../../master/core/chunkservers.js';
import { chooseReplicas } from '../../../master/core/placement.js';

// Placement that knows free space (issue 22): a chunk goes only where a whole chunk fits above the
// server's reserve, counting chunks created there since its last report as already taken.

const MiB = 1024 * 1024;
const chunkSizeBytes = 64 * MiB;

function cluster(free: Record<string, number>, reserveFraction = 0.05): ChunkServers {
  const cs = new ChunkServers(10_000, 60_000, { chunkSizeBytes, reserveFraction });
  for (const [id, freeBytes] of Object.entries(free)) cs.upsert({ id, url: `http://${id}`, rack: id, capacityBytes: 1024 * MiB, usedBytes: 1024 * MiB - freeBytes, freeBytes }, 0);
  return cs;
}

test('a server with less than a chunk above its reserve takes no new chunk, and says it is full', () => {
  // 1 GiB disks, 5% reserve = 51.2 MiB: 100 MiB free leaves 48.8 MiB, less than a 64 MiB chunk.
  const cs = cluster({ a: 900 * MiB, b: 900 * MiB, c: 100 * MiB, d: 24 * MiB });
  const chosen = chooseReplicas(cs.views(1), 3, new Set(), { chunkSizeBytes, recentCreatesLimit: 32 });
  assert.deepEqual(chosen.sort(), ['a', 'b']);
  assert.equal(cs.isFull(cs.servers.get('c')!), true);
  assert.equal(cs.isFull(cs.servers.get('d')!), true);
  assert.equal(cs.isFull(cs.servers.get('a')!), false);
  // Without a reserve, c fits one chunk; d never does.
  const bare = cluster({ c: 100 * MiB, d: 24 * MiB }, 0);
  assert.deepEqual(chooseReplicas(bare.views(1), 3, new Set(), { chunkSizeBytes, recentCreatesLimit: 32 }), ['c']);
});

test('chunks created since the last heartbeat count as taken: no overcommit between reports', () => {
  const cs = cluster({ a: 200 * MiB }, 0);
  const a = cs.servers.get('a')!;
  for (let i = 0; i < 3; i++) {
    assert.equal(chooseReplicas(cs.views(1), 1, new Set(), { chunkSizeBytes, recentCreatesLimit: 32 }).length, 1, `chunk ${i + 1} fits`);
    cs.noteCreate('a', 1);
  }
  assert.deepEqual(chooseReplicas(cs.views(1), 1, new Set(), { chunkSizeBytes, recentCreatesLimit: 32 }), [], 'a fourth 64 MiB chunk does not fit in 200 MiB');
  // The next heartbeat reports the space those chunks use so far: only that counts from then on.
  cs.upsert({ id: 'a', url: 'http://a', rack: 'a', capacityBytes: 1024 * MiB, usedBytes: 0, freeBytes: 190 * MiB }, 2);
  assert.equal(cs.usableFreeBytes(a), 190 * MiB);
});
