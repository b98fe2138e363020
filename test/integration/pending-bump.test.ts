import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { crc32c } from '../../shared/checksum.js';
import { rpcJson } from '../../shared/rpc.js';
import type { ChunksAnswer } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// A master killed after logging a lease's version bump but before the
// replicas took it (and before any client heard of the lease) must not judge
// every replica stale on restart: no mutation happened at the new version,
// so the replicas at the old one still hold the file's data.

let cluster: TestCluster | undefined;
after(async () => {
  await cluster?.stop();
});

function frame(record: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(record), 'utf8');
  const head = Buffer.alloc(8);
  head.writeUInt32LE(payload.length, 0);
  head.writeUInt32LE(crc32c(payload), 4);
  return Buffer.concat([head, payload]);
}

test('a version bump logged but never confirmed does not make current replicas stale after a restart', async () => {
  cluster = await startCluster({ chunkservers: 3, chunkSizeBytes: 256 * 1024, leaseMs: 1500, heartbeatMs: 200, deadMs: 1500, safeModeMs: 3000 });
  const c = cluster.client();
  const data = randomBytes(600 * 1024);
  await c.create('/f');
  await c.write('/f', 0, data);
  await c.sync('/f');
  const before = await rpcJson<ChunksAnswer>(cluster.masterUrl, '/api/chunks', { path: '/f', startIndex: 0, count: 100 });
  const target = before.chunks[1]!;
  assert.equal(target.replicas.length, 3);

  await cluster.kill(cluster.master, 'SIGKILL');
  // The crash point: the bump's record is durable, the replicas never heard of it.
  const dir = join(cluster.dir, 'master');
  const logs = readdirSync(dir).filter((n) => /^oplog\.\d+\.log$/.test(n)).sort();
  appendFileSync(join(dir, logs[logs.length - 1]!), frame({ op: 'version', handle: target.handle, version: target.version + 1, pendingFrom: target.version }));
  await cluster.startMaster(cluster.master.port);

  // The replicas are brought up to the new version and listed again; none is deleted.
  const loc = await waitFor(
    'the chunk listed on 3 replicas at a newer version',
    async () => {
      const a = await rpcJson<ChunksAnswer>(cluster!.masterUrl, '/api/chunks', { path: '/f', startIndex: 1, count: 1 });
      const l = a.chunks[0]!;
      return l.version > target.version && l.replicas.length === 3 ? l : undefined;
    },
    30_000,
  );
  for (const r of loc.replicas) {
    const d = cluster.chunkservers.find((p) => p?.id === r.id)!.dir;
    assert.ok(existsSync(join(d, 'chunks', `${target.handle}.chunk`)), `replica on ${r.id} still on disk`);
  }
  const back = await cluster.client().read('/f', 0, data.length);
  assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'));
  // And the chunk takes writes again.
  const w = randomBytes(1000);
  await cluster.client().write('/f', 256 * 1024 + 10, w);
  const again = await cluster.client().read('/f', 256 * 1024 + 10, 1000);
  assert.ok(again.equals(w));
});
