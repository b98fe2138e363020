import { test } from 'node:test';
import assert from 'node:assert/strict';
import { placeRecord, maxRecordBytes } from '../../../chunkserver/append.js';

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
