import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeRpc } from '../../shared/rpc.js';
import { startCluster, waitFor } from '../helpers/cluster.js';

// A chunk whose allocation was logged but whose replicas were never created (the master restarted
// in between, or every chosen chunkserver died just then) is listed at the initial version with no
// replicas. It holds no data anywhere, so a writer must get it placed afresh, not be answered
// NO_REPLICAS until it gives up (the partition suite met this after a master SIGKILL at t+1.9 s:
// every append to the file failed for the rest of the run).

test('an allocated chunk placed nowhere is placed afresh by the master, and a writer holding its old location gets on', { timeout: 120_000 }, async () => {
  const c = await startCluster({ chunkservers: 1, deadMs: 10_000 });
  try {
    const client = c.client({ retry: { attempts: 4 } });
    await client.create('/f', { replication: 1 });
    // The only chunkserver dies; the master still counts it alive (deadMs 10 s), so the allocation is
    // logged and its creation fails: chunk 0 exists with no replica.
    await c.kill(c.chunkservers[0]);
    await assert.rejects(client.appendRaw('/f', Buffer.from('lost')), /NO_REPLICAS|UNAVAILABLE|no live/);
    const loc = (await client.locate('/f', 0, 1, true)).chunks.get(0);
    assert.ok(loc, 'chunk 0 was allocated and logged');
    assert.equal(loc.replicas.length, 0, 'and placed nowhere');

    await c.startChunkserver(0);
    await waitFor('cs0 to be back', async () => (await c.status()).chunkservers.some((x) => x.alive));
    // The master's healer creates it afresh by itself, empty (no writer needed): fsck is healthy again.
    await waitFor('chunk 0 placed afresh by the master', async () => (await client.replication('/f')).chunks[0]?.replicas.length === 1, 30_000);
    assert.ok(((await c.status()) as unknown as { counters: { placedAfresh: number } }).counters.placedAfresh >= 1);
    // The same client, its cache holding the replica-less location: the append gets the chunk placed.
    const off = await client.appendRaw('/f', Buffer.from('found'));
    assert.equal((await client.read('/f', off, 5)).toString(), 'found');
    assert.equal((await client.replication('/f')).chunks[0]!.replicas.length, 1);
  } finally {
    await c.stop();
    await closeRpc();
  }
});
