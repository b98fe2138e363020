import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
// The package's own name, as an application imports it (package.json "exports").
import { connect, GfsError, type Gfs } from 'gfs';
import { closeRpc } from '../../shared/rpc.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';

// The library applications import (client/index.ts), against a real cluster:
// the fs/promises-shaped calls, streams with backpressure in both directions,
// open handles, record append and records, snapshots, locations, and errors
// as GfsError with the codes the CLI prints.

const KiB = 1024;
const chunkSizeBytes = 256 * KiB;
let c: TestCluster | undefined;
let gfs: Gfs;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof GfsError, `expected GfsError ${code}, got ${String(e)}`);
  assert.equal(e.code, code);
}

describe('the gfs library', { timeout: 180_000 }, () => {
  before(async () => {
    c = await startCluster({ chunkservers: 3, chunkSizeBytes });
    gfs = connect({ master: c.masterUrl });
  });
  after(async () => {
    await c?.stop();
    await closeRpc();
  });

  it('mkdir, writeFile, readFile, readdir, stat, rename, rm', async () => {
    await gfs.mkdir('/lib/a/b', { recursive: true });
    await gfs.mkdir('/lib/a/b', { recursive: true }); // no error when it exists
    await rejectsWith(gfs.mkdir('/lib/a/b'), 'EXISTS');
    const data = randomBytes(chunkSizeBytes + 1234);
    await gfs.writeFile('/lib/a/f', data);
    assert.ok((await gfs.readFile('/lib/a/f')).equals(data));
    // Replaced whole, never half-written; a string works too.
    await gfs.writeFile('/lib/a/f', 'hello');
    assert.equal(await gfs.readFile('/lib/a/f', 'utf8'), 'hello');
    assert.deepEqual(await gfs.readdir('/lib/a'), ['b', 'f']);
    const entries = await gfs.readdir('/lib/a', { withFileTypes: true });
    assert.deepEqual(entries.map((e) => [e.name, e.isDirectory(), e.isFile()]), [['b', true, false], ['f', false, true]]);
    const st = await gfs.stat('/lib/a/f');
    assert.equal(st.size, 5);
    assert.ok(st.isFile() && !st.isDirectory());
    await rejectsWith(gfs.readdir('/lib/a/f'), 'NOT_A_DIRECTORY');
    await gfs.rename('/lib/a/f', '/lib/a/g');
    await rejectsWith(gfs.stat('/lib/a/f'), 'NOT_FOUND');
    await gfs.rm('/lib/a/g');
    await gfs.rm('/lib/a/g', { force: true });
    await rejectsWith(gfs.rm('/lib/a/g'), 'NOT_FOUND');
    await rejectsWith(gfs.rm('/lib/a'), 'NOT_EMPTY');
    await gfs.rm('/lib/a', { recursive: true, now: true });
    assert.deepEqual(await gfs.readdir('/lib'), []);
  });

  it('a file replaced by another client reads as its new self (chunk locations learned afresh at open)', async () => {
    const other = connect({ master: c!.masterUrl });
    const old = randomBytes(50_000);
    await gfs.writeFile('/lib/replaced', old);
    assert.ok((await gfs.readFile('/lib/replaced')).equals(old)); // gfs now caches where its chunk is
    await other.writeFile('/lib/replaced', 'new contents'); // a new file renamed over the old one
    assert.equal(await gfs.readFile('/lib/replaced', 'utf8'), 'new contents');
    const h = await gfs.open('/lib/replaced', 'r');
    assert.equal((await h.read(3, 0)).toString(), 'new');
    await h.close();
  });

  it('streams a file in and out with pipeline(), ranges included', async () => {
    const data = randomBytes(3 * chunkSizeBytes + 777);
    // Odd-sized writes, as a socket or a file reader would produce them.
    const parts: Buffer[] = [];
    for (let at = 0; at < data.length; ) {
      const n = Math.min(data.length - at, 1 + Math.floor(Math.random() * 100 * KiB));
      parts.push(data.subarray(at, at + n));
      at += n;
    }
    await pipeline(Readable.from(parts), gfs.createWriteStream('/lib/stream'));
    assert.equal((await gfs.stat('/lib/stream')).size, data.length, "'finish' came after the whole file was written");

    const got: Buffer[] = [];
    await pipeline(
      gfs.createReadStream('/lib/stream'),
      new Writable({
        highWaterMark: 1,
        write(chunk: Buffer, _e, cb) {
          got.push(chunk);
          // A slow consumer: the stream must wait for it, not buffer the file.
          setImmediate(cb);
        },
      }),
    );
    assert.equal(sha(Buffer.concat(got)), sha(data));
    const range: Buffer[] = [];
    for await (const b of gfs.createReadStream('/lib/stream', { start: chunkSizeBytes - 10, end: chunkSizeBytes + 9 })) range.push(b as Buffer);
    assert.ok(Buffer.concat(range).equals(data.subarray(chunkSizeBytes - 10, chunkSizeBytes + 10)), 'start and end are inclusive, as in node:fs');
    // A stream that fails (missing file) errors instead of ending quietly.
    await assert.rejects(pipeline(gfs.createReadStream('/lib/missing'), new Writable({ write: (_c, _e, cb) => cb() })), (e: unknown) => e instanceof GfsError && e.code === 'NOT_FOUND');
  });

  it('open handles: wx, positioned writes, r refuses writes, a appends, close syncs', async () => {
    const h = await gfs.open('/lib/h', 'wx');
    await h.write(Buffer.from('0123456789'));
    await h.write('abc', 3);
    await h.write('Z'); // after the last write
    await h.close();
    assert.equal(await gfs.readFile('/lib/h', 'utf8'), '012abcZ789');
    await rejectsWith(gfs.open('/lib/h', 'wx'), 'EXISTS');
    const r = await gfs.open('/lib/h', 'r');
    assert.equal((await r.read(4, 2)).toString(), '2abc');
    await rejectsWith(r.write('x', 0), 'BAD_REQUEST');
    await r.close();
    await rejectsWith(r.read(1, 0), 'BAD_REQUEST');
    const a = await gfs.open('/lib/h', 'a');
    await a.write('!!');
    await a.close();
    assert.equal(await gfs.readFile('/lib/h', 'utf8'), '012abcZ789!!');
    const w = await gfs.open('/lib/h', 'w');
    assert.equal((await w.stat()).size, 0, "'w' empties the file");
    await w.close();
    await rejectsWith(gfs.open('/lib/none', 'r'), 'NOT_FOUND');
  });

  it('record append from many callers: every record once, whole, at the offset it was given', async () => {
    await gfs.writeFile('/lib/log', '');
    const records = Array.from({ length: 40 }, (_, i) => Buffer.from(`record ${i} ${randomBytes(8).toString('hex')}`));
    const offsets = await Promise.all(records.map((r) => gfs.appendRecord('/lib/log', r)));
    assert.equal(new Set(offsets).size, records.length, 'each record its own offset');
    const seen = new Map<string, number>();
    for await (const r of gfs.records('/lib/log')) seen.set(r.payload.toString(), r.offset);
    assert.equal(seen.size, records.length);
    records.forEach((r, i) => assert.equal(seen.get(r.toString()), offsets[i], `record ${i} at its offset`));
  });

  it('an appender batches many records in flight; records() reads each once', async () => {
    const app = gfs.appender('/lib/batched', { lingerMs: 2, maxBatchBytes: 64 * 1024 });
    const n = 500;
    const offsets = await Promise.all(Array.from({ length: n }, (_, i) => (i % 2 ? app.append(Buffer.from(`r${i}`)) : app.write(`r${i}`))));
    await app.flush();
    assert.equal(new Set(offsets).size, n);
    const got: string[] = [];
    for await (const r of gfs.records('/lib/batched')) got.push(r.payload.toString());
    assert.deepEqual(got.sort(), Array.from({ length: n }, (_, i) => `r${i}`).sort());
  });

  it('snapshot, locations and batch', async () => {
    const data = randomBytes(2 * chunkSizeBytes + 5);
    await gfs.writeFile('/lib/src', data);
    const locs = await gfs.locations('/lib/src');
    assert.deepEqual(locs.map((l) => l.index), [0, 1, 2]);
    for (const l of locs) assert.equal(l.replicas.length, 3, `chunk ${l.index}: ${l.replicas.length} replicas`);
    await gfs.snapshot('/lib/src', '/lib/snap');
    await gfs.writeFile('/lib/src', 'changed');
    assert.ok((await gfs.readFile('/lib/snap')).equals(data), 'the snapshot kept the old bytes');
    const results = await gfs.batch([
      { op: 'mkdir', path: '/lib/batch' },
      { op: 'create', path: '/lib/batch/x' },
      { op: 'create', path: '/lib/batch/x' },
    ]);
    assert.deepEqual(results.map((r) => (r.ok ? 'ok' : r.code)), ['ok', 'ok', 'EXISTS']);
  });

  it('chmod, chown, utimes (ns, past 2038), symlink and readlink; a snapshot copies them', async () => {
    await gfs.writeFile('/lib/attrs', 'a');
    await gfs.chmod('/lib/attrs', 0o4750);
    await gfs.chown('/lib/attrs', 1000, -1);
    await gfs.utimes('/lib/attrs', new Date('2001-01-01T00:00:00Z'), 4102444800.123456); // s, as fs.utimes
    await gfs.client.utimes('/lib/attrs', undefined, { ms: 4102444800123, ns: 456_789 });
    await gfs.symlink('../lib/attrs', '/lib/link');
    const st = await gfs.stat('/lib/attrs');
    assert.deepEqual([st.mode, st.uid, st.gid, st.atimeMs, st.mtimeMs, st.mtimeNs], [0o750, 1000, 0, Date.UTC(2001, 0, 1), 4102444800123, 456_789], 'chown dropped set-uid; ns kept');
    assert.equal(await gfs.readlink('/lib/link'), '../lib/attrs');
    assert.ok((await gfs.stat('/lib/link')).isSymbolicLink());
    await assert.rejects(gfs.readlink('/lib/attrs'), /not a symbolic link/);
    await gfs.snapshot('/lib', '/lib-snap');
    const copy = await gfs.stat('/lib-snap/attrs');
    assert.deepEqual([copy.mode, copy.uid, copy.mtimeMs, copy.mtimeNs], [0o750, 1000, 4102444800123, 456_789]);
    assert.equal(await gfs.readlink('/lib-snap/link'), '../lib/attrs');
    await assert.rejects(gfs.client.chmod('/lib/attrs', 0o10000), (e: { code?: string }) => e.code === 'BAD_REQUEST');
  });

  it('truncate to any length: every replica of the last chunk is cut, dropped chunks go, a snapshot keeps its own, a restart keeps it', async () => {
    await gfs.mkdir('/lib', { recursive: true });
    const data = randomBytes(2 * chunkSizeBytes + 50_000);
    await gfs.writeFile('/lib/trunc', data);
    await gfs.snapshot('/lib/trunc', '/lib/trunc-snap');
    const cut = chunkSizeBytes + 12_345;
    await gfs.client.truncate('/lib/trunc', cut);
    const st = await gfs.stat('/lib/trunc');
    assert.deepEqual([st.size, st.chunkCount], [cut, 2]);
    assert.equal(sha(await gfs.readFile('/lib/trunc')), sha(data.subarray(0, cut)));
    // Every replica of the chunk holding the new end is cut, not just the one a reader asks.
    const loc = (await gfs.client.locate('/lib/trunc', 1, 1, true)).chunks.get(1);
    assert.equal(loc?.replicas.length, 3);
    for (const r of loc!.replicas) assert.equal((await gfs.client.readReplica(r, loc!.handle, loc!.version, 0, chunkSizeBytes)).length, 12_345, `replica on ${r.id}`);
    // Growing again: the old tail never comes back, zeros do.
    await gfs.client.write('/lib/trunc', cut + 1000, Buffer.from('end'));
    const grown = await gfs.readFile('/lib/trunc');
    assert.equal(grown.length, cut + 1003);
    assert.ok(grown.subarray(cut, cut + 1000).every((b) => b === 0), 'the gap after the cut reads as zeros');
    // The snapshot shared the chunks: it keeps all of its bytes.
    assert.equal(sha(await gfs.readFile('/lib/trunc-snap')), sha(data));
    // Shorter than one chunk, on a chunk boundary, to zero; the mtime moves; a longer length extends.
    await gfs.client.truncate('/lib/trunc', chunkSizeBytes);
    assert.equal(sha(await gfs.readFile('/lib/trunc')), sha(data.subarray(0, chunkSizeBytes)));
    const before = (await gfs.stat('/lib/trunc')).mtimeMs;
    await gfs.client.truncate('/lib/trunc', 777);
    const st2 = await gfs.stat('/lib/trunc');
    assert.deepEqual([st2.size, st2.chunkCount], [777, 1]);
    assert.ok(st2.mtimeMs >= before && st2.ctimeMs >= before);
    await gfs.client.truncate('/lib/trunc', 5000);
    assert.equal(sha(await gfs.readFile('/lib/trunc')), sha(Buffer.concat([data.subarray(0, 777), Buffer.alloc(5000 - 777)])));
    await c!.restartMaster();
    assert.equal((await gfs.stat('/lib/trunc')).size, 5000);
    await gfs.client.truncate('/lib/trunc', 0);
    assert.deepEqual([(await gfs.stat('/lib/trunc')).size, (await gfs.stat('/lib/trunc')).chunkCount], [0, 0]);
    await rejectsWith(gfs.client.truncate('/lib/trunc', 2 ** 51), 'FILE_TOO_LARGE');
    await rejectsWith(gfs.client.truncate('/lib/trunc', -1), 'BAD_REQUEST');
    await rejectsWith(gfs.client.truncate('/lib', 0), 'IS_A_DIRECTORY');
  });

  it('hard links: one file under two names; writes through both at once (new chunks each) all land; unlink of one keeps it', async () => {
    await gfs.mkdir('/lib/hl', { recursive: true });
    await gfs.writeFile('/lib/hl/a', '');
    await gfs.link('/lib/hl/a', '/lib/hl/b');
    assert.equal((await gfs.stat('/lib/hl/b')).nlink, 2);
    // Two clients write chunks past the end through different names at once: each write allocates,
    // and the master must hold one chunk list (its lock on the node, not only the paths).
    const other = connect({ master: c!.masterUrl });
    const piece = (i: number) => Buffer.alloc(chunkSizeBytes, i + 1);
    const [ha, hb] = await Promise.all([gfs.open('/lib/hl/a', 'r+'), other.open('/lib/hl/b', 'r+')]);
    await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? ha : hb).write(piece(i), i * chunkSizeBytes)));
    await Promise.all([ha.close(), hb.close()]);
    const back = await gfs.readFile('/lib/hl/b');
    assert.equal(back.length, 6 * chunkSizeBytes);
    for (let i = 0; i < 6; i++) assert.ok(back.subarray(i * chunkSizeBytes, (i + 1) * chunkSizeBytes).equals(piece(i)), `chunk ${i} as written`);
    await rejectsWith(gfs.link('/lib/hl', '/lib/hl2'), 'NOT_PERMITTED');
    await gfs.rm('/lib/hl/a');
    const st = await gfs.stat('/lib/hl/b');
    assert.deepEqual([st.nlink, st.size], [1, 6 * chunkSizeBytes]);
    assert.equal(sha(await gfs.readFile('/lib/hl/b')), sha(back));
  });

  it('mknod: a FIFO, a socket and a device node, with their types in stat and readdir; no data path', async () => {
    await gfs.mkdir('/lib', { recursive: true });
    await gfs.client.mknod('/lib/fifo', 'fifo', { mode: 0o620, uid: 7 });
    await gfs.client.mknod('/lib/sock', 'socket');
    await gfs.client.mknod('/lib/null', 'chardev', { rdev: (1 << 8) | 3 });
    const fifo = await gfs.stat('/lib/fifo');
    assert.deepEqual([fifo.type, fifo.mode, fifo.uid, fifo.size, fifo.isFIFO(), fifo.isFile()], ['fifo', 0o620, 7, 0, true, false]);
    const dev = await gfs.stat('/lib/null');
    assert.deepEqual([dev.type, dev.rdev, dev.isCharacterDevice()], ['chardev', 259, true]);
    const ents = await gfs.readdir('/lib', { withFileTypes: true });
    assert.ok(ents.find((e) => e.name === 'sock')?.isSocket());
    await assert.rejects(gfs.client.write('/lib/fifo', 0, Buffer.from('x')), (e: { code?: string }) => e.code === 'BAD_REQUEST', 'no chunk for a FIFO');
    await assert.rejects(gfs.client.mknod('/lib/fifo', 'fifo'), (e: { code?: string }) => e.code === 'EXISTS');
  });
});
