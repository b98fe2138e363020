import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// Issue 5, rebalancing on a real cluster: three chunkservers hold every
// replica of 16 chunks (replication 3); a fourth joins empty. The master moves
// replicas onto it one at a time (clone to the new server, then trim the
// fuller one) until the counts are within the threshold, and while it does,
// no chunk is ever listed with fewer live replicas than its goal. Afterwards
// every replica the master lists holds the right bytes.

const KiB = 1024;
const chunkSizeBytes = 64 * KiB;
const chunkCount = 16;
const minImbalance = 2;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Fsck {
  files: { path: string; replication: number; chunks: { index: number; handle: string; live: string[] }[] }[];
  summary: { chunks: number; healthy: number; underReplicated: number; overReplicated: number; missing: number };
}

let cluster: TestCluster | undefined;
after(async () => {
  await cluster?.stop();
  await closeRpc();
});

describe('rebalancing onto a new chunkserver', { timeout: 150_000 }, () => {
  it('moves replicas to an empty server until balanced, never below the goal, bytes intact', async () => {
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, heartbeatMs: 200, deadMs: 2_000, leaseMs: 1_500, rebalanceImbalance: minImbalance });
    const c = cluster;
    const client = c.client();
    const data = randomBytes(chunkCount * chunkSizeBytes);
    await client.mkdir('/rb');
    await client.create('/rb/f', { replication: 3 });
    await client.write('/rb/f', 0, data);
    const fsck = () => rpcJson<Fsck>(c.masterUrl, '/api/fsck', undefined, { query: { path: '/' } });
    const counts = (f: Fsck) => {
      const m = new Map<string, number>();
      for (const file of f.files) for (const ch of file.chunks) for (const id of ch.live) m.set(id, (m.get(id) ?? 0) + 1);
      return m;
    };
    const before = await waitFor('all chunks on the three servers', async () => {
      const f = await fsck();
      return f.summary.chunks === chunkCount && f.summary.healthy === chunkCount ? f : undefined;
    });
    assert.deepEqual([...counts(before).values()], [chunkCount, chunkCount, chunkCount]);

    await c.startChunkserver(3);
    await c.waitForChunkservers(4);
    // Watch every listing while replicas move: the lowest live count any chunk had, and the most on cs3.
    let lowest = Infinity;
    let samples = 0;
    const balanced = await waitFor(
      'the replica counts to be within the threshold',
      async () => {
        const f = await fsck();
        samples++;
        for (const file of f.files) for (const ch of file.chunks) lowest = Math.min(lowest, ch.live.length);
        const n = counts(f);
        const values = ['cs0', 'cs1', 'cs2', 'cs3'].map((id) => n.get(id) ?? 0);
        const st = await rpcJson<{ counters: { clonesStarted: number; clonesDone: number; clonesFailed: number } }>(c.masterUrl, '/api/status');
        const cloning = st.counters.clonesStarted - st.counters.clonesDone - st.counters.clonesFailed;
        const ok = Math.max(...values) - Math.min(...values) <= minImbalance && f.summary.overReplicated === 0 && cloning === 0;
        return ok ? { values, moves: st.counters.clonesDone } : undefined;
      },
      90_000,
      100,
    );
    console.log(`# replicas per server after rebalancing: ${balanced.values.join(' ')} (${balanced.moves} clones; lowest live count seen in ${samples} listings: ${lowest})`);
    assert.ok(lowest >= 3, `a chunk was listed with only ${lowest} live replicas while rebalancing`);
    assert.ok(balanced.values[3]! >= (3 * chunkCount) / 4 - minImbalance, `the new server got only ${balanced.values[3]} replicas`);
    assert.equal(balanced.values.reduce((a, b) => a + b, 0), 3 * chunkCount, 'replicas were lost or left over');
    // Each move is one clone; a replica trimmed from the server it was just moved to would need more.
    assert.ok(balanced.moves <= 1.5 * balanced.values[3]!, `${balanced.moves} clones to move ${balanced.values[3]} replicas: moves undone by trimming`);

    // Every listed replica holds the right bytes; a normal read too.
    const got = await client.read('/rb/f', 0, data.length + 1);
    assert.equal(sha256(got), sha256(data));
    const loc = await client.locate('/rb/f', 0, chunkCount, true);
    for (const ch of loc.chunks.values()) {
      assert.equal(ch.replicas.length, 3);
      const part = data.subarray(ch.index * chunkSizeBytes, (ch.index + 1) * chunkSizeBytes);
      for (const r of ch.replicas) assert.ok((await client.readReplica(r, ch.handle, ch.version, 0, chunkSizeBytes)).equals(part), `chunk ${ch.index} on ${r.id} differs`);
    }
  });
});
