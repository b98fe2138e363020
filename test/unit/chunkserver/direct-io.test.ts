import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DirectIo, directAlignBytes } from '../../../chunkserver/direct-io.js';
import { ReplicaStore } from '../../../chunkserver/store.js';
import { isGfsError } from '../../../shared/errors.js';

// Bulk pieces through O_DIRECT (issue 18): aligned pieces from aligned pooled buffers go direct,
// the rest buffered, and everything reads back the same, verified, after a restart too; buffered
// and direct writes of one file stay coherent; damage under a direct read is still CORRUPT.

const KiB = 1024;
const MiB = 1024 * KiB;
const H = '00000000000000d1';
let root: string;

before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'gfs-direct-test-'));
});
after(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

const open = (dir: string, directIo = true) => ReplicaStore.open({ dir, chunkSizeBytes: 8 * MiB, checksumBlockBytes: 64 * KiB, directIo });

test('the probe finds where a buffer is aligned; pieces go direct only from there, at aligned offsets', async (t) => {
  const d = DirectIo.probe(root);
  if (!d) return t.skip(`no O_DIRECT on ${root}'s file system`);
  const buf = d.alignedBuffer(MiB)!;
  assert.ok(buf && d.aligned(buf));
  assert.equal(d.directLength(buf, 0), MiB);
  assert.equal(d.directLength(buf.subarray(0, MiB - 100), 0), MiB - directAlignBytes, 'whole blocks only');
  assert.equal(d.directLength(buf, 512), 0, 'a file offset off a 4 KiB boundary');
  assert.equal(d.directLength(buf.subarray(16), 0), 0, 'a start off the aligned boundary');
  assert.equal(d.directLength(Buffer.alloc(MiB), 0), 0, 'a buffer the probe did not make');
  assert.equal(d.directLength(buf.subarray(0, 64 * KiB), 0), 0, 'too small to be worth it');
});

test('a store with O_DIRECT: writes and reads of aligned pieces go direct; mixed with buffered ones, all read back the same, also after a restart', async (t) => {
  const dir = await fsp.mkdtemp(path.join(root, 's'));
  const store = await open(dir);
  const d = store.direct;
  if (!d) return t.skip('no O_DIRECT here');
  await store.create(H, 1);
  const expect = Buffer.alloc(3 * MiB + 1000);
  const put = async (offset: number, data: Buffer) => {
    await store.write(H, offset, data);
    data.copy(expect, offset);
  };
  // A small buffered append first, then a direct piece over part of it and past it, then an unaligned tail.
  await put(0, randomBytes(10_000));
  const piece = d.alignedBuffer(2 * MiB)!;
  randomBytes(2 * MiB).copy(piece);
  await put(0, piece);
  assert.equal(d.counters.writes, 1);
  const tail = d.alignedBuffer(MiB + 1000)!;
  randomBytes(MiB + 1000).copy(tail);
  await put(2 * MiB, tail); // its last 1000 bytes (not a whole block) are written buffered
  assert.equal(d.counters.writes, 2);
  assert.equal(d.counters.writtenBytes, 3 * MiB);
  await store.sync(H);
  // Reads into an aligned scratch go direct (and are verified); without one, buffered.
  const scratch = d.alignedBuffer(4 * MiB)!;
  const all = await store.read(H, 0, expect.length, scratch);
  assert.ok(all.equals(expect));
  assert.equal(d.counters.reads, 1);
  assert.ok((await store.read(H, 5, 300_000)).equals(expect.subarray(5, 300_005)));
  assert.equal(d.counters.reads, 1);
  await store.close();

  const again = await open(dir);
  assert.ok((await again.read(H, 0, expect.length, again.direct!.alignedBuffer(4 * MiB)!)).equals(expect), 'the same after a restart');
  await again.close();
  const buffered = await open(dir, false);
  assert.equal(buffered.direct, undefined);
  assert.ok((await buffered.read(H, 0, expect.length)).equals(expect), 'and read without O_DIRECT');
  await buffered.close();
});

test('a block damaged on disk is found by a direct read as by a buffered one', async (t) => {
  const dir = await fsp.mkdtemp(path.join(root, 's'));
  const store = await open(dir);
  const d = store.direct;
  if (!d) return t.skip('no O_DIRECT here');
  await store.create(H, 1);
  const piece = d.alignedBuffer(MiB)!;
  randomBytes(MiB).copy(piece);
  await store.write(H, 0, piece);
  await store.sync(H);
  const file = `${H}.chunk`;
  const fh = await fsp.open(path.join(dir, 'chunks', file), 'r+');
  await fh.write(Buffer.from([piece[200_000]! ^ 0xff]), 0, 1, 200_000);
  await fh.close();
  await assert.rejects(store.read(H, 0, MiB, d.alignedBuffer(2 * MiB)!), (e: unknown) => isGfsError(e, 'CORRUPT'));
  await store.close();
});
