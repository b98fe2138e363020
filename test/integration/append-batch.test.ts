import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { frameRecord, parseRecords, readRecords, recordHeaderBytes } from '../../client/records.js';
import { GfsError } from '../../shared/errors.js';
import { encodeRecordBatch } from '../../shared/record-wire.js';
import { crc32c } from '../../shared/checksum.js';
import { rpcBinary, rpcJson } from '../../shared/rpc.js';
import type { ChunksAnswer, LeaseAnswer } from '../../shared/wire.js';
import { clusterPerSuite, cliPath, waitFor, type TestCluster } from '../helpers/cluster.js';

// Batched record appends (client/appender.ts, POST /chunk/append-batch) and
// group commit at the primary (chunkserver/append-groups.ts): one offset per
// record, every record whole at its offset on every replica, records never
// straddling a chunk, and a group a secondary failed to apply is never
// acknowledged (the client retries it).

const chunkSizeBytes = 64 * 1024;

async function replicasHoldFrames(cluster: TestCluster, path: string, frames: { offset: number; frame: Buffer }[]): Promise<void> {
  const client = cluster.client();
  const chunks = await rpcJson<ChunksAnswer>(cluster.masterUrl, '/api/chunks', { path, startIndex: 0, count: 10_000 });
  for (const { offset, frame } of frames) {
    const index = Math.floor(offset / chunkSizeBytes);
    assert.ok((offset % chunkSizeBytes) + frame.length <= chunkSizeBytes, `record at ${offset} straddles a chunk`);
    const loc = chunks.chunks[index]!;
    assert.ok(loc.replicas.length >= 3, `chunk ${index} lists ${loc.replicas.length} replicas`);
    for (const r of loc.replicas) {
      const got = await client.readReplica(r, loc.handle, loc.version, offset % chunkSizeBytes, frame.length);
      assert.ok(got.equals(frame), `replica ${r.id} differs at ${offset}`);
    }
  }
}

describe('batched record appends', () => {
  const cluster = clusterPerSuite({ chunkservers: 3, chunkSizeBytes, leaseMs: 2_000, heartbeatMs: 200, deadMs: 1_500 });

  test('an appender with many records in flight: one offset per record, each whole on every replica, none across a chunk', async () => {
    const client = cluster().client();
    await client.create('/batched');
    const app = client.appender('/batched', { maxInFlight: 4, lingerMs: 2, maxBatchBytes: 16 * 1024 });
    const payloads = Array.from({ length: 1500 }, (_, i) => randomBytes(16 + ((i * 7919) % 1500)));
    const offsets = await Promise.all(payloads.map((p) => app.append(p)));
    await app.flush();
    assert.ok(app.counters.batches < payloads.length / 4, `records went in batches (${app.counters.batches} batches for ${payloads.length} records)`);
    assert.equal(new Set(offsets).size, payloads.length, 'no two records share an offset');
    const st = await client.stat('/batched');
    assert.ok(st.chunkCount >= 10, `the records crossed chunk boundaries (${st.chunkCount} chunks)`);
    let read = 0;
    for await (const r of readRecords(client, '/batched')) {
      read++;
      assert.ok(r.payload.length >= 16);
    }
    assert.equal(read, payloads.length, 'readRecords yields every record once');
    // Each record (a sample, for time) is a whole frame at its acknowledged offset, the same bytes on every replica.
    const sample: { offset: number; frame: Buffer }[] = [];
    for (let i = 0; i < payloads.length; i += 25) {
      const frame = await client.read('/batched', offsets[i]!, recordHeaderBytes + payloads[i]!.length);
      const parsed = [...parseRecords(frame)];
      assert.equal(parsed.length, 1, `a whole frame at ${offsets[i]}`);
      assert.ok(parsed[0]!.payload.equals(payloads[i]!), `record ${i} reads back whole`);
      sample.push({ offset: offsets[i]!, frame });
    }
    await replicasHoldFrames(cluster(), '/batched', sample);
  });

  test('one request with records past the end of the chunk: the first that does not fit pads it, the rest land on the next', async () => {
    const client = cluster().client();
    await client.create('/spill');
    await client.appendRawBatch('/spill', [0, 1, 2, 3].map(() => Buffer.alloc(15 * 1024, 1)));
    const records = Array.from({ length: 8 }, (_, i) => Buffer.alloc(1024, 10 + i));
    const offsets = await client.appendRawBatch('/spill', records);
    // 60 KiB + 4 x 1 KiB fill the first chunk exactly; the other four go to the second.
    assert.deepEqual(offsets, [61440, 62464, 63488, 64512, 65536, 66560, 67584, 68608]);
    const bytes = await client.read('/spill', 61440, 8 * 1024);
    for (let i = 0; i < 8; i++) assert.ok(bytes.subarray(i * 1024, (i + 1) * 1024).equals(records[i]!));
    await replicasHoldFrames(
      cluster(),
      '/spill',
      offsets.map((o, i) => ({ offset: o, frame: records[i]! })),
    );
    // One more that does not fit in what is left pads the second chunk on every replica.
    const quarter = [0, 1, 2, 3].map((i) => Buffer.alloc(16 * 1024, 50 + i));
    assert.deepEqual(await client.appendRawBatch('/spill', quarter), [65536 + 4096, 65536 + 4096 + 16384, 65536 + 4096 + 32768, 2 * 65536]);
    const st = await client.stat('/spill');
    assert.equal(st.chunkCount, 3);
    const chunks = await rpcJson<ChunksAnswer>(cluster().masterUrl, '/api/chunks', { path: '/spill', startIndex: 1, count: 1 });
    for (const r of chunks.chunks[0]!.replicas) {
      const info = await rpcJson<{ sizeBytes: number }>(r.url, '/chunk/info', undefined, { query: { handle: chunks.chunks[0]!.handle } });
      assert.equal(info.sizeBytes, chunkSizeBytes, `replica ${r.id} of the second chunk is padded to its full size`);
    }
  });

  test('gfs append --lines: one record per line, in input order, an offset printed for each', async () => {
    const lines = Array.from({ length: 600 }, (_, i) => `line ${i} ${'x'.repeat(i % 50)}`);
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [cliPath, '--master', cluster().masterUrl, 'append', '/lines', '--lines', '--create'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.once('close', (code) => resolve({ code, stdout, stderr }));
      p.stdin.end(lines.join('\n') + '\n');
    });
    assert.equal(r.code, 0, r.stderr);
    const offsets = r.stdout.trim().split('\n').map(Number);
    assert.equal(offsets.length, lines.length, 'one offset per line');
    for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i]! > offsets[i - 1]!, `line ${i} lands after line ${i - 1}`);
    const read: string[] = [];
    for await (const rec of readRecords(cluster().client(), '/lines')) read.push(rec.payload.toString());
    assert.deepEqual(read, lines, 'gfs records gives the lines back, in order');
  });

  test('a secondary failing mid-group: the group is not acknowledged, and the client retry lands every record', async () => {
    const client = cluster().client();
    await client.create('/fail');
    await client.appendRaw('/fail', frameRecord(Buffer.from('first')));
    const chunks = await rpcJson<ChunksAnswer>(cluster().masterUrl, '/api/chunks', { path: '/fail', startIndex: 0, count: 1 });
    const handle = chunks.chunks[0]!.handle;
    const lease = await rpcJson<LeaseAnswer>(cluster().masterUrl, '/api/lease', { handle, path: '/fail', index: 0 });
    const secondary = lease.secondaries[0]!;
    // The primary cannot reach one secondary: its forwards are dropped.
    await cluster().setFaults([{ from: lease.primary.id, to: secondary.id, drop: true }]);
    const frames = Array.from({ length: 20 }, (_, i) => frameRecord(Buffer.from(`record ${i} `.repeat(20))));
    const body = encodeRecordBatch(frames);
    const direct = await rpcBinary<{ offsets: number[] }>(lease.primary.url, '/chunk/append-batch', body, {
      targetName: lease.primary.id,
      headers: { 'x-gfs-handle': handle, 'x-gfs-version': String(lease.version), 'x-gfs-client': 'batchtest', 'x-gfs-request': 'r1', 'x-gfs-crc32c': String(crc32c(body)) },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(direct instanceof GfsError, 'the group is not acknowledged while a secondary cannot apply it');
    assert.equal(direct.code, 'UNAVAILABLE', direct.message);
    // The client's own call retries; the link comes back while it does.
    const appended = client.appendRawBatch('/fail', frames);
    setTimeout(() => void cluster().setFaults([]), 1_000).unref();
    const offsets = await appended;
    assert.equal(offsets.length, frames.length);
    await replicasHoldFrames(
      cluster(),
      '/fail',
      offsets.map((o, i) => ({ offset: o, frame: frames[i]! })),
    );
    // Every record once through the framing layer, duplicates from the retries skipped.
    const seen = new Set<string>();
    for await (const r of readRecords(client, '/fail')) seen.add(r.payload.toString());
    for (let i = 0; i < frames.length; i++) assert.ok(seen.has(`record ${i} `.repeat(20)), `record ${i} read back`);
    await waitFor('the secondary caught up with the re-sent group', async () => {
      const info = await rpcJson<{ sizeBytes: number }>(secondary.url, '/chunk/info', undefined, { query: { handle } });
      const p = await rpcJson<{ sizeBytes: number }>(lease.primary.url, '/chunk/info', undefined, { query: { handle } });
      return info.sizeBytes === p.sizeBytes;
    });
  });
});
