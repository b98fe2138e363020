import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { maxRecordPayloadBytes, readRecords, type GfsClient } from '../../client/client.js';
import { recordHeaderBytes } from '../../client/records.js';
import { rpcJson } from '../../shared/rpc.js';
import type { ChunkInfoAnswer, ChunksAnswer } from '../../shared/wire.js';
import { clusterPerSuite, waitFor, type TestCluster } from '../helpers/cluster.js';

// Record append from many OS processes to one file: every acknowledged
// record is read back exactly once and sits at its acknowledged offset on
// every replica the master lists, also when a chunkserver dies mid-run.

const worker = fileURLToPath(new URL('../../scripts/append-worker.js', import.meta.url));
const chunkSizeBytes = 64 * 1024;
const maxPayload = maxRecordPayloadBytes(chunkSizeBytes);

interface Acked {
  offset: number;
  sizeBytes: number;
  sha: string;
}

function runWorker(masterUrl: string, path: string, count: number, seed: number): Promise<Acked[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [worker, '--master', masterUrl, '--path', path, '--count', String(count), '--min-bytes', '16', '--max-bytes', String(maxPayload), '--skew', '3', '--seed', String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, GFS_LOG_LEVEL: 'warn' },
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('close', (code) => {
      if (code !== 0) return reject(new Error(`append worker exited ${code}: ${err}`));
      const acked: Acked[] = [];
      for (const line of out.split('\n')) {
        if (!line) continue;
        const j = JSON.parse(line) as { offset?: number; sizeBytes?: number; sha?: string };
        if (j.offset !== undefined) acked.push({ offset: j.offset, sizeBytes: j.sizeBytes!, sha: j.sha! });
      }
      resolve(acked);
    });
  });
}

/** Every acknowledged record is read once by readRecords, and every listed replica holds its frame at its offset. */
async function checkRecords(cluster: TestCluster, client: GfsClient, path: string, acked: Acked[]): Promise<void> {
  const seen = new Map<string, number>();
  let total = 0;
  for await (const r of readRecords(client, path)) {
    total++;
    const sha = createHash('sha256').update(r.payload).digest('hex');
    seen.set(sha, (seen.get(sha) ?? 0) + 1);
  }
  for (const a of acked) assert.equal(seen.get(a.sha), 1, `acknowledged record at ${a.offset} read ${seen.get(a.sha) ?? 0} times`);
  assert.ok(total >= acked.length);

  const chunks = await rpcJson<ChunksAnswer>(cluster.masterUrl, '/api/chunks', { path, startIndex: 0, count: 10_000 });
  for (const a of acked) {
    const loc = chunks.chunks[Math.floor(a.offset / chunkSizeBytes)]!;
    assert.ok(loc.replicas.length >= 1, `chunk ${loc.index} has no listed replica`);
    for (const r of loc.replicas) {
      const frame = await client.readReplica(r, loc.handle, loc.version, a.offset % chunkSizeBytes, recordHeaderBytes + a.sizeBytes);
      assert.equal(frame.length, recordHeaderBytes + a.sizeBytes, `replica ${r.id} is short at ${a.offset}`);
      assert.equal(frame.subarray(0, 4).toString('latin1'), 'GFR1', `replica ${r.id} has no record at ${a.offset}`);
      assert.equal(createHash('sha256').update(frame.subarray(recordHeaderBytes)).digest('hex'), a.sha, `replica ${r.id} differs at ${a.offset}`);
    }
  }
}

describe('record append from 8 processes', () => {
  const cluster = clusterPerSuite({ chunkservers: 4, chunkSizeBytes, leaseMs: 2_000, heartbeatMs: 200, deadMs: 1_500 });

  test('8 processes x 500 records of mixed sizes: each read once, same offset on every replica', async () => {
    const client = cluster().client();
    await client.create('/appends');
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => runWorker(cluster().masterUrl, '/appends', 500, i + 1)));
    const acked = results.flat();
    assert.equal(acked.length, 8 * 500, 'every append acknowledged on a healthy cluster');
    const offsets = new Set(acked.map((a) => a.offset));
    assert.equal(offsets.size, acked.length, 'no two records share an offset');
    const st = await client.stat('/appends');
    assert.ok(st.chunkCount > 20, `appends crossed many chunk boundaries (${st.chunkCount} chunks)`);
    await checkRecords(cluster(), client, '/appends', acked);
  });

  test('a chunkserver holding the last chunk is killed mid-run and restarted: no acknowledged record lost', async () => {
    const client = cluster().client();
    await client.create('/appends-kill');
    await client.appendRaw('/appends-kill', Buffer.from('warm-up'));
    const running = Promise.all(Array.from({ length: 4 }, (_, i) => runWorker(cluster().masterUrl, '/appends-kill', 300, 100 + i)));
    // Kill a holder of the last chunk once the run is under way.
    const victim = await waitFor('a few chunks appended', async () => {
      const c = await rpcJson<ChunksAnswer>(cluster().masterUrl, '/api/chunks', { path: '/appends-kill', startIndex: 0, count: 10_000 });
      if (c.chunkCount < 4) return undefined;
      const last = c.chunks[c.chunks.length - 1]!;
      return last.replicas[0]?.id;
    }, 60_000);
    const idx = cluster().chunkservers.findIndex((p) => p?.id === victim);
    assert.ok(idx >= 0);
    await cluster().kill(cluster().chunkservers[idx], 'SIGKILL');
    const before = (await rpcJson<ChunksAnswer>(cluster().masterUrl, '/api/chunks', { path: '/appends-kill', startIndex: 0, count: 10_000 })).chunkCount;
    await waitFor('appends continue without the dead server', async () => (await rpcJson<ChunksAnswer>(cluster().masterUrl, '/api/chunks', { path: '/appends-kill', startIndex: 0, count: 10_000 })).chunkCount > before + 2, 60_000);
    await cluster().startChunkserver(idx);
    const acked = (await running).flat();
    assert.ok(acked.length > 0);
    // Let the restarted server report: stale replicas drop out of the listing.
    await waitFor('restarted server registered', async () => (await cluster().status()).chunkservers.find((c) => c.id === victim)?.alive === true);
    await checkRecords(cluster(), client, '/appends-kill', acked);
  });

  test('a record that does not fit pads the chunk on every replica and lands at the next chunk', async () => {
    const client = cluster().client();
    await client.create('/pad');
    const quarter = chunkSizeBytes / 4;
    const offs: number[] = [];
    for (let i = 0; i < 3; i++) offs.push(await client.appendRaw('/pad', Buffer.alloc(quarter, 1)));
    offs.push(await client.appendRaw('/pad', Buffer.alloc(10 * 1024, 2)));
    assert.deepEqual(offs, [0, quarter, 2 * quarter, 3 * quarter]);
    // 58 KiB used: a quarter-chunk record does not fit, so chunk 0 is padded and the record starts chunk 1.
    assert.equal(await client.appendRaw('/pad', Buffer.alloc(quarter, 3)), chunkSizeBytes);
    const chunks = await rpcJson<ChunksAnswer>(cluster().masterUrl, '/api/chunks', { path: '/pad', startIndex: 0, count: 10 });
    const c0 = chunks.chunks[0]!;
    assert.ok(c0.replicas.length >= 3);
    for (const r of c0.replicas) {
      const info = await rpcJson<ChunkInfoAnswer>(r.url, '/chunk/info', undefined, { query: { handle: c0.handle } });
      assert.equal(info.sizeBytes, chunkSizeBytes, `replica ${r.id} of the padded chunk is full size`);
    }
  });

  test('a record larger than a quarter chunk is refused with a clear error', async () => {
    const r = await cluster().cli(['append', '/pad', '-'], Buffer.alloc(chunkSizeBytes / 4 + 1));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /exceeds the limit/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
});
