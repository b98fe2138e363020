import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readdirSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ReplicaStore, type StoreOptions } from '../../../chunkserver/store.js';
import { crc32c } from '../../../shared/checksum.js';
import { GfsError } from '../../../shared/errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const H1 = '00000000000000a1';
const H2 = '00000000000000b2';
const H3 = '00000000000000c3';

let root: string;
let dirSeq = 0;

before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'gfs-store-test-'));
});
after(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const d = path.join(root, `s${dirSeq++}`);
  await fsp.mkdir(d);
  return d;
}

async function openStore(dir: string, extra: Partial<StoreOptions> = {}): Promise<ReplicaStore> {
  return ReplicaStore.open({ dir, chunkSizeBytes: 1 * MiB, checksumBlockBytes: 64 * KiB, ...extra });
}

function crcsFromScratch(data: Buffer, blockBytes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < data.length; i += blockBytes) out.push(crc32c(data.subarray(i, Math.min(i + blockBytes, data.length))));
  return out;
}

async function crcFile(dir: string, handle: string): Promise<number[]> {
  const raw = await fsp.readFile(path.join(dir, 'chunks', `${handle}.crc`));
  const out: number[] = [];
  for (let i = 0; i + 4 <= raw.length; i += 4) out.push(raw.readUInt32LE(i));
  return out;
}

/** Deterministic pseudo-random bytes and numbers, so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Applies a write to a model buffer the way the store should. */
function modelWrite(model: Buffer, offset: number, data: Buffer): Buffer {
  const size = Math.max(model.length, offset + data.length);
  const out = Buffer.alloc(size);
  model.copy(out);
  data.copy(out, offset);
  return out;
}

async function assertCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof GfsError && e.code === code);
}

describe('ReplicaStore', () => {
  it('round-trips writes and reads across blocks at unaligned offsets and lengths', async () => {
    const dir = await freshDir();
    const store = await openStore(dir);
    await store.create(H1, 1);
    assert.deepEqual(store.info(H1), { version: 1, sizeBytes: 0 });
    const rand = rng(1);
    let model: Buffer = Buffer.alloc(0);
    for (let i = 0; i < 40; i++) {
      // Mix overwrites inside the chunk with writes extending it.
      const offset = Math.floor(rand() * Math.min(1 * MiB - 1, model.length + 100 * KiB));
      const len = Math.min(1 * MiB - offset, 1 + Math.floor(rand() * 200 * KiB));
      const data = randomBytes(rand, len);
      const newLen = await store.write(H1, offset, data);
      model = modelWrite(model, offset, data);
      assert.equal(newLen, model.length);
    }
    assert.equal(store.info(H1)!.sizeBytes, model.length);
    assert.equal(store.usedBytes(), model.length);
    for (let i = 0; i < 40; i++) {
      const offset = Math.floor(rand() * model.length);
      const len = Math.floor(rand() * 300 * KiB);
      const got = await store.read(H1, offset, len);
      assert.ok(got.equals(model.subarray(offset, Math.min(model.length, offset + len))), `read ${offset}+${len}`);
    }
    assert.ok((await store.read(H1, 0, 2 * MiB)).equals(model));
    assert.equal((await store.read(H1, model.length, 10)).length, 0);
    assert.equal((await store.read(H1, model.length + 5000, 10)).length, 0);
    assert.deepEqual(await crcFile(dir, H1), crcsFromScratch(model, 64 * KiB));
    assert.equal(await store.verify(H1), true);
    assert.deepEqual(store.list(), [{ handle: H1, version: 1, sizeBytes: model.length }]);
    await store.sync(H1);
    await store.close();
  });

  it('reads a hole past the old end as zeros, with correct crcs', async () => {
    const dir = await freshDir();
    const store = await openStore(dir);
    await store.create(H1, 1);
    const head = Buffer.from('hello, chunk');
    const tail = Buffer.from('tail bytes');
    await store.write(H1, 0, head);
    assert.equal(await store.write(H1, 300_001, tail), 300_001 + tail.length);
    const gap = await store.read(H1, head.length, 300_001 - head.length);
    assert.equal(gap.length, 300_001 - head.length);
    assert.ok(gap.every((b) => b === 0));
    assert.ok((await store.read(H1, 300_001, 100)).equals(tail));
    const model = modelWrite(modelWrite(Buffer.alloc(0), 0, head), 300_001, tail);
    assert.deepEqual(await crcFile(dir, H1), crcsFromScratch(model, 64 * KiB));
    assert.equal(await store.verify(H1), true);
    await store.close();
  });

  it('append fast path gives the same crcs as a full recompute (4 KiB blocks, many blocks)', async () => {
    const dir = await freshDir();
    const store = await openStore(dir, { checksumBlockBytes: 4 * KiB });
    await store.create(H1, 1);
    const rand = rng(2);
    const parts: Buffer[] = [];
    let size = 0;
    // Irregular appends of about 1 KiB so block boundaries fall inside writes.
    while (size < 600 * KiB) {
      const data = randomBytes(rand, 1 + Math.floor(rand() * 2100));
      assert.equal(await store.write(H1, size, data), size + data.length);
      parts.push(data);
      size += data.length;
    }
    const model = Buffer.concat(parts);
    assert.deepEqual(await crcFile(dir, H1), crcsFromScratch(model, 4 * KiB));
    assert.ok((await store.read(H1, 0, model.length)).equals(model));
    assert.ok((await store.read(H1, 12_345, 9_999)).equals(model.subarray(12_345, 12_345 + 9_999)));
    assert.equal(await store.verify(H1), true);
    await store.close();
  });

  it('survives a reopen: versions, lengths and crcs come back, and crcs are not recomputed from data', async () => {
    const dir = await freshDir();
    let store = await openStore(dir);
    await store.create(H1, 3);
    await store.create(H2, 5);
    const data = randomBytes(rng(3), 200_000);
    await store.write(H1, 1000, data);
    await store.setVersion(H2, 6);
    await store.sync(H1);
    await store.close();

    store = await openStore(dir);
    const byHandle = new Map(store.list().map((r) => [r.handle, r]));
    assert.deepEqual(byHandle.get(H1), { handle: H1, version: 3, sizeBytes: 201_000 });
    assert.deepEqual(byHandle.get(H2), { handle: H2, version: 6, sizeBytes: 0 });
    assert.ok((await store.read(H1, 1000, 200_000)).equals(data));
    assert.equal(store.usedBytes(), 201_000);
    await store.close();

    // Damage the data while the server is down: the loaded crcs must catch it.
    const fh = await fsp.open(path.join(dir, 'chunks', `${H1}.chunk`), 'r+');
    await fh.write(Buffer.from([0xff ^ data[150_000]!]), 0, 1, 151_000);
    await fh.close();
    const corrupt: string[] = [];
    store = await openStore(dir, { onCorrupt: (h) => corrupt.push(h) });
    assert.ok((await store.read(H1, 1000, 1000)).equals(data.subarray(0, 1000)));
    await assertCode(store.read(H1, 150_000, 10), 'CORRUPT');
    assert.deepEqual(corrupt, [H1]);
    await store.close();
  });

  /** A store holding H1 (6 blocks and a bit) with one byte of block 2 flipped behind its back. */
  async function damagedStore(seed: number, extra: Partial<StoreOptions> = {}) {
    const dir = await freshDir();
    const store = await openStore(dir, extra);
    await store.create(H1, 1);
    const data = randomBytes(rng(seed), 6 * 64 * KiB + 777);
    await store.write(H1, 0, data);
    const at = 2 * 64 * KiB + 100;
    const fh = await fsp.open(path.join(dir, 'chunks', `${H1}.chunk`), 'r+');
    await fh.write(Buffer.from([data[at]! ^ 0x01]), 0, 1, at);
    await fh.close();
    return { dir, store, data, at };
  }

  it('detects a flipped byte on a read of that block only, then serves the replica no more', async () => {
    const corrupt: string[] = [];
    const { store, data } = await damagedStore(4, { onCorrupt: (h) => corrupt.push(h) });
    // Blocks other than the damaged one verify fine.
    assert.ok((await store.read(H1, 0, 64 * KiB)).equals(data.subarray(0, 64 * KiB)));
    assert.ok((await store.read(H1, 3 * 64 * KiB, 3 * 64 * KiB + 777)).equals(data.subarray(3 * 64 * KiB)));
    assert.deepEqual(corrupt, []);
    // Even a one-byte read elsewhere in the block verifies the whole block.
    await assertCode(store.read(H1, 2 * 64 * KiB + 60_000, 1), 'CORRUPT');
    assert.deepEqual(corrupt, [H1]);
    // From now on the replica is out of service: no reads, no mutations, not in the chunk report.
    await assertCode(store.read(H1, 0, 64 * KiB), 'CORRUPT');
    await assertCode(store.write(H1, 0, Buffer.from('x')), 'CORRUPT');
    await assertCode(store.pad(H1, data.length + 10), 'CORRUPT');
    await assertCode(store.setVersion(H1, 2), 'CORRUPT');
    assert.equal(store.info(H1), undefined);
    assert.equal(store.has(H1), false);
    assert.deepEqual(store.list(), []);
    assert.deepEqual(store.corruptList(), [H1]);
    assert.throws(() => store.require(H1), (e: unknown) => e instanceof GfsError && e.code === 'CORRUPT');
    await store.close();
  });

  it('verify() finds a flipped byte and marks the replica', async () => {
    const corrupt: string[] = [];
    const { store } = await damagedStore(6, { onCorrupt: (h) => corrupt.push(h) });
    assert.equal(await store.verify(H1), false);
    assert.deepEqual(corrupt, [H1]);
    assert.deepEqual(store.corruptList(), [H1]);
    await store.close();
  });

  it('refuses a partial overwrite of a damaged block rather than laundering it into a fresh crc', async () => {
    const { dir, store, data, at } = await damagedStore(7);
    const crcBefore = await crcFile(dir, H1);
    await assertCode(store.write(H1, 2 * 64 * KiB + 10, Buffer.from('xyz')), 'CORRUPT');
    assert.deepEqual(await crcFile(dir, H1), crcBefore);
    await store.close();
    // Reopened (the mark survives), and the damaged byte is still there: nothing was written.
    const again = await openStore(dir);
    assert.deepEqual(again.corruptList(), [H1]);
    const raw = await fsp.readFile(path.join(dir, 'chunks', `${H1}.chunk`));
    assert.equal(raw[at], data[at]! ^ 0x01);
    await again.close();
  });

  it('a write covering a whole damaged block replaces it without reading it', async () => {
    const { store } = await damagedStore(8);
    const fresh = Buffer.alloc(64 * KiB, 0x5a);
    await store.write(H1, 2 * 64 * KiB, fresh);
    assert.equal(await store.verify(H1), true);
    assert.ok((await store.read(H1, 2 * 64 * KiB, 64 * KiB)).equals(fresh));
    await store.close();
  });

  it('keeps a corrupt mark on disk across restarts until the replica is deleted', async () => {
    const { dir, store } = await damagedStore(9);
    await store.create(H2, 1);
    await assertCode(store.read(H1, 2 * 64 * KiB, 1), 'CORRUPT');
    await store.close(); // waits for the marker write
    const marker = path.join(dir, 'chunks', `${H1}.corrupt`);
    assert.ok(existsSync(marker), 'no corrupt marker on disk');
    assert.match(JSON.parse(await fsp.readFile(marker, 'utf8')).reason, /block 2/);

    const again = await openStore(dir);
    assert.deepEqual(again.corruptList(), [H1]);
    assert.deepEqual(again.list().map((c) => c.handle), [H2]);
    await assertCode(again.read(H1, 0, 10), 'CORRUPT');
    // The master's deletion order removes the replica and its mark.
    await again.delete(H1);
    assert.deepEqual(again.corruptList(), []);
    assert.deepEqual(readdirSync(path.join(dir, 'chunks')).filter((n) => n.startsWith(H1)), []);
    await again.close();
    const third = await openStore(dir);
    assert.deepEqual(third.corruptList(), []);
    assert.equal(third.has(H1), false);
    // A fresh copy may take the handle again, and a fresh copy replaces a corrupt one.
    await third.create(H1, 3);
    assert.deepEqual(third.info(H1), { version: 3, sizeBytes: 0 });
    await third.close();
  });

  it('a create of a handle held corrupt replaces the corrupt replica', async () => {
    const { dir, store } = await damagedStore(10);
    await assertCode(store.read(H1, 2 * 64 * KiB, 1), 'CORRUPT');
    await store.create(H1, 5);
    assert.deepEqual(store.info(H1), { version: 5, sizeBytes: 0 });
    assert.deepEqual(store.corruptList(), []);
    await store.close();
    assert.equal(existsSync(path.join(dir, 'chunks', `${H1}.corrupt`)), false);
  });

  it('treats blocks the crc file does not cover (crash between data and crc writes) as corrupt', async () => {
    const dir = await freshDir();
    let store = await openStore(dir);
    await store.create(H1, 1);
    const data = randomBytes(rng(5), 3 * 64 * KiB);
    await store.write(H1, 0, data);
    await store.close();
    await fsp.truncate(path.join(dir, 'chunks', `${H1}.crc`), 4);
    store = await openStore(dir);
    assert.ok((await store.read(H1, 0, 64 * KiB)).equals(data.subarray(0, 64 * KiB)));
    await assertCode(store.read(H1, 2 * 64 * KiB, 1), 'CORRUPT');
    assert.equal(await store.verify(H1), false);
    await store.close();
  });

  it('setVersion persists before resolving and refuses to lower', async () => {
    const dir = await freshDir();
    let store = await openStore(dir);
    await store.create(H1, 4);
    await store.setVersion(H1, 7);
    assert.equal(store.info(H1)!.version, 7);
    const meta = JSON.parse(await fsp.readFile(path.join(dir, 'chunks', `${H1}.meta`), 'utf8'));
    assert.deepEqual(meta, { version: 7 });
    await store.setVersion(H1, 7); // same version: fine
    await assertCode(store.setVersion(H1, 6), 'STALE_VERSION');
    assert.equal(store.info(H1)!.version, 7);
    await assertCode(store.setVersion(H1, -1), 'BAD_REQUEST');
    await assertCode(store.setVersion(H2, 9), 'NOT_FOUND');
    await store.close();
    store = await openStore(dir);
    assert.equal(store.info(H1)!.version, 7);
    await store.close();
  });

  it('a mutation ordered at a version lands only while the replica is at it, in lock order with setVersion', async () => {
    const dir = await freshDir();
    const store = await openStore(dir);
    await store.create(H1, 4);
    const a = Buffer.alloc(1000, 0x61);
    const b = Buffer.alloc(1000, 0x62);
    // Queued before the bump: lands at 4. Queued after it: refused, nothing written.
    const before = store.write(H1, 0, a, 4);
    const bump = store.setVersion(H1, 5);
    const late = store.write(H1, 1000, b, 4);
    const latePad = store.pad(H1, 64 * KiB, 4);
    assert.equal(await before, 1000);
    await bump;
    await assertCode(late, 'STALE_VERSION');
    await assertCode(latePad, 'STALE_VERSION');
    assert.equal(store.info(H1)!.sizeBytes, 1000);
    assert.deepEqual(await store.read(H1, 0, 4000), a);
    assert.equal(await store.write(H1, 1000, b, 5), 2000);
    await store.close();
  });

  it('pads with zeros, keeps crcs right, and never shrinks', async () => {
    const dir = await freshDir();
    const store = await openStore(dir, { checksumBlockBytes: 4 * KiB });
    await store.create(H1, 1);
    const head = randomBytes(rng(6), 5000);
    await store.write(H1, 0, head);
    assert.equal(await store.pad(H1, 200_003), 200_003);
    assert.equal(await store.pad(H1, 100), 200_003);
    const all = await store.read(H1, 0, 1 * MiB);
    assert.equal(all.length, 200_003);
    assert.ok(all.subarray(0, 5000).equals(head));
    assert.ok(all.subarray(5000).every((b) => b === 0));
    const model = Buffer.alloc(200_003);
    head.copy(model);
    assert.deepEqual(await crcFile(dir, H1), crcsFromScratch(model, 4 * KiB));
    // Appending after a pad continues from the pad's crc.
    const more = Buffer.from('after the pad');
    await store.write(H1, 200_003, more);
    assert.deepEqual(await crcFile(dir, H1), crcsFromScratch(Buffer.concat([model, more]), 4 * KiB));
    assert.equal(await store.pad(H1, 1 * MiB), 1 * MiB);
    assert.equal(await store.verify(H1), true);
    await assertCode(store.pad(H1, 1 * MiB + 1), 'OUT_OF_RANGE');
    await store.close();
  });

  it('setLength cuts a chunk mid-block with right crcs (crc file cut too), extends with zeros, and survives a reopen', async () => {
    const dir = await freshDir();
    const store = await openStore(dir, { checksumBlockBytes: 4 * KiB });
    await store.create(H1, 1);
    const data = randomBytes(rng(9), 50_000);
    await store.write(H1, 0, data);
    // Cut mid-block: the last block kept gets the crc of what remains of it.
    assert.equal(await store.setLength(H1, 10_001), 10_001);
    assert.equal(store.info(H1)!.sizeBytes, 10_001);
    assert.ok((await store.read(H1, 0, 1 * MiB)).equals(data.subarray(0, 10_001)));
    assert.deepEqual(await crcFile(dir, H1), crcsFromScratch(data.subarray(0, 10_001), 4 * KiB));
    // Cut on a block boundary, then the same length again (nothing to do).
    assert.equal(await store.setLength(H1, 8 * KiB), 8 * KiB);
    assert.equal(await store.setLength(H1, 8 * KiB), 8 * KiB);
    assert.deepEqual(await crcFile(dir, H1), crcsFromScratch(data.subarray(0, 8 * KiB), 4 * KiB));
    // Longer again: the old bytes past the cut never come back, zeros do.
    assert.equal(await store.setLength(H1, 20_000), 20_000);
    const back = await store.read(H1, 0, 1 * MiB);
    assert.ok(back.subarray(0, 8 * KiB).equals(data.subarray(0, 8 * KiB)));
    assert.ok(back.subarray(8 * KiB).every((b) => b === 0), 'the tail past the cut reads as zeros');
    await store.write(H1, 20_000, Buffer.from('tail'));
    assert.equal(await store.setLength(H1, 0), 0);
    assert.equal((await store.read(H1, 0, 100)).length, 0);
    await store.write(H1, 0, data.subarray(0, 5000));
    assert.equal(await store.setLength(H1, 4097), 4097);
    await store.close();
    const again = await openStore(dir, { checksumBlockBytes: 4 * KiB });
    assert.equal(again.info(H1)!.sizeBytes, 4097);
    assert.equal(await again.verify(H1), true);
    assert.ok((await again.read(H1, 0, 1 * MiB)).equals(data.subarray(0, 4097)));
    await assertCode(again.setLength(H1, 1 * MiB + 1), 'OUT_OF_RANGE');
    await again.close();
  });

  it('setLength verifies the block it cuts into: a damaged one is CORRUPT and nothing is cut', async () => {
    const { dir, store, data } = await damagedStore(11);
    const crcBefore = await crcFile(dir, H1);
    await assertCode(store.setLength(H1, 2 * 64 * KiB + 100), 'CORRUPT');
    assert.deepEqual(await crcFile(dir, H1), crcBefore);
    assert.equal((await fsp.stat(path.join(dir, 'chunks', `${H1}.chunk`))).size, data.length);
    await store.close();
  });

  it('copyLocal makes an independent, durable copy', async () => {
    const dir = await freshDir();
    let store = await openStore(dir);
    await store.create(H1, 2);
    const data = randomBytes(rng(7), 150_000);
    await store.write(H1, 0, data);
    await store.copyLocal(H1, H2, 9);
    assert.deepEqual(store.info(H2), { version: 9, sizeBytes: 150_000 });
    assert.ok((await store.read(H2, 0, 150_000)).equals(data));
    // Partial overwrite and append on the copy: the original must not change.
    await store.write(H2, 1000, Buffer.alloc(100, 1));
    await store.write(H2, 150_000, Buffer.alloc(100, 2));
    assert.ok((await store.read(H1, 0, 1 * MiB)).equals(data));
    assert.equal(store.info(H1)!.sizeBytes, 150_000);
    assert.equal(store.usedBytes(), 150_000 + 150_100);
    await assertCode(store.copyLocal(H1, H2, 9), 'EXISTS');
    await assertCode(store.copyLocal(H3, '00000000000000d4', 1), 'NOT_FOUND');
    await store.close();
    store = await openStore(dir);
    assert.deepEqual(store.info(H2), { version: 9, sizeBytes: 150_100 });
    assert.equal(await store.verify(H2), true);
    assert.equal(await store.verify(H1), true);
    await store.close();
  });

  it('rejects invalid handles before touching any file', async () => {
    const dir = await freshDir();
    const store = await openStore(dir);
    await store.create(H1, 1);
    for (const bad of ['../x', 'ABC', '0'.repeat(17), '00000000000000A1', '../../../../etc/passwd', '']) {
      await assertCode(store.create(bad, 1), 'INVALID_HANDLE');
      await assertCode(store.write(bad, 0, Buffer.from('x')), 'INVALID_HANDLE');
      await assertCode(store.read(bad, 0, 1), 'INVALID_HANDLE');
      await assertCode(store.delete(bad), 'INVALID_HANDLE');
      await assertCode(store.setVersion(bad, 2), 'INVALID_HANDLE');
      await assertCode(store.copyLocal(H1, bad, 2), 'INVALID_HANDLE');
      await assertCode(store.copyLocal(bad, H2, 2), 'INVALID_HANDLE');
      assert.equal(store.has(bad), false);
      assert.equal(store.info(bad), undefined);
    }
    assert.deepEqual(readdirSync(path.join(dir, 'chunks')).sort(), [`${H1}.chunk`, `${H1}.crc`, `${H1}.meta`]);
    assert.deepEqual(readdirSync(dir), ['chunks']);
    await store.close();
  });

  it('enforces OUT_OF_RANGE, EXISTS and NOT_FOUND', async () => {
    const dir = await freshDir();
    const store = await openStore(dir);
    await store.create(H1, 1);
    await assertCode(store.create(H1, 1), 'EXISTS');
    await assertCode(store.write(H1, 1 * MiB - 10, Buffer.alloc(11)), 'OUT_OF_RANGE');
    await assertCode(store.write(H1, 1 * MiB + 1, Buffer.alloc(0)), 'OUT_OF_RANGE');
    await assertCode(store.write(H1, -1, Buffer.alloc(1)), 'OUT_OF_RANGE');
    await assertCode(store.write(H1, 1.5, Buffer.alloc(1)), 'OUT_OF_RANGE');
    await assertCode(store.read(H1, -1, 1), 'OUT_OF_RANGE');
    assert.equal(await store.write(H1, 1 * MiB - 10, Buffer.alloc(10, 3)), 1 * MiB);
    await assertCode(store.read(H2, 0, 1), 'NOT_FOUND');
    await assertCode(store.write(H2, 0, Buffer.alloc(1)), 'NOT_FOUND');
    await assertCode(store.delete(H2), 'NOT_FOUND');
    await assertCode(store.verify(H2), 'NOT_FOUND');
    await assertCode(store.sync(H2), 'NOT_FOUND');
    await store.close();
  });

  it('deletes replicas and lets the handle be created again', async () => {
    const dir = await freshDir();
    const store = await openStore(dir);
    await store.create(H1, 1);
    await store.write(H1, 0, Buffer.alloc(5000, 9));
    // Queued behind the delete: must see NOT_FOUND, not a half-deleted replica.
    const del = store.delete(H1);
    const late = store.read(H1, 0, 10);
    await del;
    await assertCode(late, 'NOT_FOUND');
    assert.equal(store.has(H1), false);
    assert.equal(store.usedBytes(), 0);
    assert.deepEqual(readdirSync(path.join(dir, 'chunks')), []);
    await store.create(H1, 2);
    assert.deepEqual(store.info(H1), { version: 2, sizeBytes: 0 });
    await store.close();
  });

  it('open removes crash leftovers and leaves foreign files alone', async () => {
    const dir = await freshDir();
    const chunks = path.join(dir, 'chunks');
    await fsp.mkdir(chunks, { recursive: true });
    await fsp.writeFile(path.join(chunks, `${H1}.chunk`), 'no meta');
    await fsp.writeFile(path.join(chunks, `${H1}.crc`), '');
    await fsp.writeFile(path.join(chunks, `${H2}.meta.tmp`), '{"vers');
    await fsp.writeFile(path.join(chunks, `${H2}.meta`), '{"version":1}'); // meta without data
    await fsp.writeFile(path.join(chunks, `${H3}.chunk`), 'abc');
    await fsp.writeFile(path.join(chunks, `${H3}.meta`), 'not json');
    await fsp.writeFile(path.join(chunks, 'README'), 'not ours');
    const store = await openStore(dir);
    assert.deepEqual(store.list(), []);
    assert.deepEqual(readdirSync(chunks), ['README']);
    await store.close();
  });

  it('serializes mutations per handle in call order and runs handles in parallel', async () => {
    const dir = await freshDir();
    const store = await openStore(dir, { checksumBlockBytes: 4 * KiB });
    await Promise.all([store.create(H1, 1), store.create(H2, 1), store.create(H3, 1)]);
    const rand = rng(8);
    const models = new Map<string, Buffer[]>([[H1, []], [H2, []], [H3, []]]);
    const ops: Promise<unknown>[] = [];
    const offsets = new Map<string, number>([[H1, 0], [H2, 0], [H3, 0]]);
    for (let i = 0; i < 300; i++) {
      const h = [H1, H2, H3][i % 3]!;
      const data = randomBytes(rand, 1 + Math.floor(rand() * 3000));
      const off = offsets.get(h)!;
      // Not awaited: each write is an append only if writes apply in call order.
      ops.push(store.write(h, off, data));
      models.get(h)!.push(data);
      offsets.set(h, off + data.length);
      // Reads interleaved with writes see a consistent prefix.
      if (i % 7 === 0) {
        const expectLen = off + data.length;
        ops.push(store.read(h, 0, 1 * MiB).then((b) => assert.equal(b.length, expectLen)));
      }
    }
    await Promise.all(ops);
    for (const [h, parts] of models) {
      const model = Buffer.concat(parts);
      assert.ok((await store.read(h, 0, 1 * MiB)).equals(model));
      assert.deepEqual(await crcFile(dir, h), crcsFromScratch(model, 4 * KiB));
      await store.sync(h);
    }
    await store.close();
  });

  it('bounds the fd cache', { skip: !existsSync('/proc/self/fd') }, async () => {
    const dir = await freshDir();
    const fdCount = (): number => readdirSync('/proc/self/fd').length;
    const base = fdCount();
    const store = await openStore(dir, { maxOpenFiles: 4 });
    const handles = Array.from({ length: 20 }, (_, i) => (0x100 + i).toString(16).padStart(16, '0'));
    await Promise.all(handles.map((h) => store.create(h, 1)));
    await Promise.all(handles.map((h, i) => store.write(h, 0, Buffer.alloc(1000 + i, i))));
    await Promise.all(handles.map((h) => store.sync(h)));
    for (const [i, h] of handles.entries()) assert.ok((await store.read(h, 0, 5000)).equals(Buffer.alloc(1000 + i, i)));
    // Closes are fire-and-forget on eviction; give them a tick to land.
    await new Promise((r) => setTimeout(r, 20));
    // Small slack for fds the runtime itself may open meanwhile; an unbounded cache would hold ~40 here.
    assert.ok(fdCount() - base <= 4 + 2, `fds open: ${fdCount() - base}`);
    await store.close();
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(fdCount() <= base, 'close() releases every fd');
  });

  it('reports disk stats and refuses work after close', async () => {
    const dir = await freshDir();
    const store = await openStore(dir);
    const s = await store.diskStats();
    assert.ok(s.capacityBytes > 0 && s.freeBytes >= 0 && s.freeBytes <= s.capacityBytes);
    await store.create(H1, 1);
    await store.close();
    await assertCode(store.read(H1, 0, 1), 'UNAVAILABLE');
  });
});
