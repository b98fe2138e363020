import { test } from 'node:test';
import assert from 'node:assert/strict';
import { placeRecord, maxRecordBytes, planGroup } from '../../../chunkserver/append.js';

const chunk = 64 * 1024 * 1024;

test('maxRecordBytes is a quarter of the chunk size', () => {
  assert.equal(maxRecordBytes(chunk), 16 * 1024 * 1024);
  assert.equal(maxRecordBytes(1000), 250);
  assert.equal(maxRecordBytes(1001), 250);
});

test('a record that fits goes at the current end of the chunk', () => {
  assert.deepEqual(placeRecord(0, 100, 1000), { kind: 'append', offset: 0 });
  assert.deepEqual(placeRecord(500, 100, 1000), { kind: 'append', offset: 500 });
  // exactly filling the chunk is still an append
  assert.deepEqual(placeRecord(750, 250, 1000), { kind: 'append', offset: 750 });
  assert.deepEqual(placeRecord(1000, 0, 1000), { kind: 'append', offset: 1000 });
  assert.deepEqual(placeRecord(chunk - 10, 10, chunk), { kind: 'append', offset: chunk - 10 });
});

test('a record that does not fit pads the chunk to its full size', () => {
  assert.deepEqual(placeRecord(751, 250, 1000), { kind: 'pad', toSizeBytes: 1000 });
  assert.deepEqual(placeRecord(1000, 1, 1000), { kind: 'pad', toSizeBytes: 1000 });
  assert.deepEqual(placeRecord(chunk - 10, 11, chunk), { kind: 'pad', toSizeBytes: chunk });
});

test('records over a quarter of the chunk size are refused, wherever the chunk ends', () => {
  assert.deepEqual(placeRecord(0, 251, 1000), { kind: 'too-large', maxBytes: 250 });
  assert.deepEqual(placeRecord(900, 251, 1000), { kind: 'too-large', maxBytes: 250 });
  assert.deepEqual(placeRecord(0, chunk, chunk), { kind: 'too-large', maxBytes: chunk / 4 });
  assert.deepEqual(placeRecord(0, 250, 1000), { kind: 'append', offset: 0 });
});

test('padding wastes less than a quarter of a chunk, and appends never cross the chunk end', () => {
  let seed = 7;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const size = 4096;
  for (let i = 0; i < 20_000; i++) {
    const len = Math.floor(rnd() * (size + 1));
    const rec = Math.floor(rnd() * (size / 4 + 1));
    const p = placeRecord(len, rec, size);
    if (p.kind === 'append') {
      assert.equal(p.offset, len);
      assert.ok(p.offset + rec <= size);
    } else {
      assert.equal(p.kind, 'pad');
      assert.ok(size - len < rec && rec <= size / 4, 'padding only when the record does not fit; less than a quarter wasted');
    }
  }
});

// ---- group commit planning (planGroup) ----

const wide = { maxRecords: 1000, maxBytes: 1_000_000 };

test('a group places every record back to back from the chunk end, request by request', () => {
  const p = planGroup(100, 1000, [[10, 20], [5], [30, 1]], wide);
  assert.equal(p.taken, 3);
  assert.deepEqual(p.offsets, [[100, 110], [130], [135, 165]]);
  assert.equal(p.writeOffset, 100);
  assert.equal(p.writeBytes, 66);
  assert.equal(p.padTo, undefined);
});

test('a record that would straddle the chunk end pads the chunk; it and every later record find it full', () => {
  // 900 + 50 fits, 950 + 60 does not: the 10 after it would fit but must not jump the queue.
  const p = planGroup(900, 1000, [[50, 60], [10]], wide);
  assert.deepEqual(p.offsets, [[900], []]);
  assert.equal(p.writeBytes, 50);
  assert.equal(p.padTo, 1000);
  // Exactly filling the chunk is no pad; a record after it finds the chunk full.
  const q = planGroup(900, 1000, [[100], [1]], wide);
  assert.deepEqual(q.offsets, [[900], []]);
  assert.equal(q.padTo, undefined);
  // A chunk already full: nothing placed, nothing to pad.
  const r = planGroup(1000, 1000, [[1]], wide);
  assert.deepEqual(r, { taken: 1, offsets: [[]], writeOffset: 1000, writeBytes: 0, padTo: undefined });
});

test('a group takes whole requests within its bounds, and always the first request', () => {
  const byRecords = planGroup(0, 1_000_000, [[1, 1], [1, 1], [1]], { maxRecords: 4, maxBytes: 1_000_000 });
  assert.equal(byRecords.taken, 2);
  assert.deepEqual(byRecords.offsets, [[0, 1], [2, 3]]);
  const byBytes = planGroup(0, 1_000_000, [[300], [300], [300]], { maxRecords: 100, maxBytes: 650 });
  assert.equal(byBytes.taken, 2);
  assert.equal(byBytes.writeBytes, 600);
  // A request larger than the bounds on its own still goes (alone).
  const big = planGroup(0, 1_000_000, [[400, 400], [1]], { maxRecords: 1, maxBytes: 100 });
  assert.equal(big.taken, 1);
  assert.deepEqual(big.offsets, [[0, 400]]);
});

test('planned offsets never overlap and never pass the chunk size (random groups)', () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 500; round++) {
    const size = 1000;
    const len = Math.floor(rand() * 1001);
    const waiting = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => Array.from({ length: 1 + Math.floor(rand() * 4) }, () => 1 + Math.floor(rand() * 250)));
    const p = planGroup(len, size, waiting, { maxRecords: 8, maxBytes: 900 });
    assert.ok(p.taken >= 1 && p.taken <= waiting.length);
    let pos = len;
    let ended = false;
    p.offsets.forEach((offs, i) => {
      assert.ok(offs.length <= waiting[i]!.length);
      if (offs.length < waiting[i]!.length) ended = true;
      else assert.ok(!ended || offs.length === 0, 'nothing is placed after a record that did not fit');
      offs.forEach((o, k) => {
        assert.equal(o, pos, 'back to back');
        pos += waiting[i]![k]!;
        assert.ok(pos <= size, 'never past the chunk size');
      });
    });
    assert.equal(p.writeBytes, pos - len);
    if (p.padTo !== undefined) assert.ok(ended && p.padTo === size && pos < size);
  }
});
