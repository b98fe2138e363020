import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Heartbeater } from '../../../chunkserver/heartbeat.js';
import type { LeaseTable } from '../../../chunkserver/leases.js';
import { ReplicaStore } from '../../../chunkserver/store.js';
import { closeRpc } from '../../../shared/rpc.js';
import { heartbeatReq, registerReq, type HeartbeatAnswer, type HeartbeatReq } from '../../../shared/wire.js';

// A replica found corrupt is listed, apart from the chunk report, in every
// register and heartbeat (also after a restart of the chunkserver) until the
// master orders its deletion; then replica and mark are gone. The master is
// an in-process HTTP server that records what it is sent.

const KiB = 1024;
const H1 = '00000000000000a1';
const H2 = '00000000000000b2';

let root: string;
let fake: Server;
let masterUrl: string;
const bodies: { path: string; body: HeartbeatReq }[] = [];
let nextAnswer: HeartbeatAnswer = { deleteChunks: [], leases: {}, clones: [], reregister: false };

before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'gfs-corrupt-report-'));
  fake = createServer((req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      bodies.push({ path: req.url ?? '', body: JSON.parse(text) as HeartbeatReq });
      const answer = nextAnswer;
      nextAnswer = { deleteChunks: [], leases: {}, clones: [], reregister: false };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  masterUrl = `http://127.0.0.1:${(fake.address() as { port: number }).port}`;
});

after(async () => {
  await closeRpc();
  await new Promise((r) => fake.close(r));
  await fsp.rm(root, { recursive: true, force: true });
});

/** Enough of a lease table for registering and heartbeats of a server that is nobody's primary. */
const noLeases = { now: () => 0, wantExtension: () => [], extend: () => undefined, drop: () => undefined } as unknown as LeaseTable;

function heartbeater(store: ReplicaStore): Heartbeater {
  return new Heartbeater({
    id: 'cs-test',
    url: () => 'http://127.0.0.1:9',
    rack: 'default',
    masterUrl,
    heartbeatMs: 1_000,
    leaseMs: () => 10_000,
    store,
    leases: noLeases,
    load: () => 0,
    log: pino({ level: 'silent' }),
  });
}

describe('corrupt replicas in registers and heartbeats', () => {
  it('are listed across a restart until the master orders their deletion', async () => {
    const dir = path.join(root, 'cs');
    const open = () => ReplicaStore.open({ dir, chunkSizeBytes: 1024 * KiB, checksumBlockBytes: 64 * KiB });
    let store = await open();
    await store.create(H1, 1);
    await store.create(H2, 1);
    const data = Buffer.alloc(200 * KiB, 7);
    await store.write(H1, 0, data);
    await store.write(H2, 0, data);
    await store.sync(H1);
    // Damage H1 behind the store's back; a read finds it.
    const fh = await fsp.open(path.join(dir, 'chunks', `${H1}.chunk`), 'r+');
    await fh.write(Buffer.from([0]), 0, 1, 70 * KiB);
    await fh.close();
    await assert.rejects(store.read(H1, 64 * KiB, 10), /checksum mismatch/);
    await store.close();

    // Restarted: the register lists H1 as corrupt and not among the chunks.
    store = await open();
    const hb = heartbeater(store);
    await hb.register();
    const reg = bodies.at(-1)!;
    assert.equal(reg.path, '/api/cs/register');
    assert.ok(registerReq.safeParse(reg.body).success, 'the register body does not pass the wire schema');
    assert.deepEqual(reg.body.corruptChunks, [H1]);
    assert.deepEqual(reg.body.chunks.map((c) => c.handle), [H2]);

    // Every heartbeat lists it again while the master has not ordered the deletion.
    await hb.beat();
    assert.deepEqual(bodies.at(-1)!.body.corruptChunks, [H1]);
    assert.ok(heartbeatReq.safeParse(bodies.at(-1)!.body).success, 'the heartbeat body does not pass the wire schema');

    // The master orders the deletion: replica and mark go, and the next heartbeat lists nothing corrupt.
    nextAnswer = { deleteChunks: [H1], leases: {}, clones: [], reregister: false };
    await hb.beat();
    assert.equal(existsSync(path.join(dir, 'chunks', `${H1}.corrupt`)), false);
    assert.equal(existsSync(path.join(dir, 'chunks', `${H1}.chunk`)), false);
    await hb.beat();
    assert.deepEqual(bodies.at(-1)!.body.corruptChunks, []);
    assert.deepEqual(bodies.at(-1)!.body.chunks.map((c) => c.handle), [H2]);
    await store.close();
  });
});
