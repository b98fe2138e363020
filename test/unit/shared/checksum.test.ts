import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BlockCrcStream, blockCrcsOf, crc32c, crc32cCombine, crcOfBlocks, decodeBlockCrcs, encodeBlockCrcs } from '../../../shared/checksum.js';
import { bodyMacVerifier, macBody } from '../../../shared/auth.js';
import { planChecksums, zeroBlockOf } from '../../../chunkserver/checksum-plan.js';

const KiB = 1024;

describe('block checksums', () => {
  it('the crc of the whole follows from the crcs of the blocks, for any length', () => {
    for (const n of [1, 100, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 200_000, 1024 * KiB + 3]) {
      const d = randomBytes(n);
      assert.equal(crcOfBlocks(blockCrcsOf(d, 64 * KiB), 64 * KiB, n), crc32c(d), `length ${n}`);
      const cut = Math.floor(n / 3);
      assert.equal(crc32cCombine(crc32c(d.subarray(0, cut)), crc32c(d.subarray(cut)), n - cut), crc32c(d), `combine at ${cut} of ${n}`);
    }
  });

  it('a stream fed in odd pieces gives the same block crcs, and names the first block that differs from the expected list', () => {
    const d = randomBytes(300 * KiB + 5);
    const want = blockCrcsOf(d, 64 * KiB);
    const s = new BlockCrcStream(d.length, 64 * KiB, want);
    for (let i = 0; i < d.length; i += 9_999) assert.equal(s.update(d.subarray(i, i + 9_999)), -1);
    assert.deepEqual([...s.crcs], [...want]);
    assert.equal(s.wholeCrc(), crc32c(d));
    const bad = Buffer.from(d);
    bad[3 * 64 * KiB + 7]! ^= 0x80;
    const t = new BlockCrcStream(d.length, 64 * KiB, want);
    let first = -1;
    for (let i = 0; i < bad.length && first < 0; i += 50_000) first = t.update(bad.subarray(i, i + 50_000));
    assert.equal(first, 3);
  });

  it('the header form round-trips and refuses a list of another length or alphabet', () => {
    const crcs = blockCrcsOf(randomBytes(130 * KiB), 64 * KiB);
    assert.deepEqual([...decodeBlockCrcs(encodeBlockCrcs(crcs), 3)!], [...crcs]);
    assert.equal(decodeBlockCrcs(encodeBlockCrcs(crcs), 2), undefined);
    assert.equal(decodeBlockCrcs('not base64!', 3), undefined);
  });

  it('a write on block boundaries stores the given crcs; unaligned or partial blocks are computed', () => {
    const B = 64 * KiB;
    const zero = zeroBlockOf(B);
    const data = randomBytes(2 * B + 100);
    // Deliberately "wrong" given crcs, to see which ones the plan takes as they are.
    const given = { crcs: Uint32Array.from([1, 2, 3]), blockBytes: B };
    const aligned = planChecksums(B, zero, 0, new Uint32Array(0), B, data, given);
    assert.deepEqual([...aligned.newCrcs], [0, 1, 2, 3].map((x, i) => (i === 0 ? zero.crc : x)));
    const unaligned = planChecksums(B, zero, 0, new Uint32Array(0), 10, data, given);
    assert.ok(![...unaligned.newCrcs].some((c) => c === 1 || c === 2 || c === 3), 'unaligned data must not take the given crcs');
    const other = planChecksums(B, zero, 0, new Uint32Array(0), 0, data, { crcs: given.crcs, blockBytes: 4 * KiB });
    assert.deepEqual([...other.newCrcs], [...blockCrcsOf(data, B)]);
  });
});

describe('body MAC (GMAC)', () => {
  it('verifies the body it was made for, in any split, and nothing else', () => {
    const key = randomBytes(32);
    const body = randomBytes(100_000);
    const header = macBody(body, key)!;
    const v = bodyMacVerifier(header, key);
    for (let i = 0; i < body.length; i += 7_000) v.update(body.subarray(i, i + 7_000));
    assert.equal(v.check(), true);
    const flipped = Buffer.from(body);
    flipped[99_999]! ^= 1;
    const w = bodyMacVerifier(header, key);
    w.update(flipped);
    assert.equal(w.check(), false);
    const x = bodyMacVerifier(header, randomBytes(32));
    x.update(body);
    assert.equal(x.check(), false, 'another key');
    assert.notEqual(macBody(body, key), header, 'a fresh IV each time');
    assert.throws(() => bodyMacVerifier('gmac1.short.tag', key), /well-formed/);
    assert.throws(() => bodyMacVerifier(undefined, key), /well-formed/);
  });
});
