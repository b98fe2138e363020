import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GfsError } from '../../../shared/errors.js';
import { decodeOrderedOps, decodeRecordBatch, encodeOrderedOps, encodeRecordBatch, type OrderedOp } from '../../../shared/record-wire.js';

const isBad = (e: unknown) => e instanceof GfsError && e.code === 'BAD_REQUEST';

test('a record batch round-trips, records as views of the body', () => {
  const records = [Buffer.from('a'), Buffer.alloc(1024, 7), Buffer.from('hello world')];
  const body = encodeRecordBatch(records);
  assert.equal(body.length, 4 + 12 + 1 + 1024 + 11);
  const back = decodeRecordBatch(body);
  assert.deepEqual(back.map((b) => b.toString('hex')), records.map((b) => b.toString('hex')));
});

test('malformed record batches are refused, never read past their end', () => {
  const good = encodeRecordBatch([Buffer.from('abc'), Buffer.from('de')]);
  assert.throws(() => decodeRecordBatch(Buffer.alloc(2)), isBad);
  assert.throws(() => decodeRecordBatch(good.subarray(0, good.length - 1)), isBad, 'truncated');
  assert.throws(() => decodeRecordBatch(Buffer.concat([good, Buffer.from('x')])), isBad, 'trailing bytes');
  const zero = Buffer.alloc(4);
  assert.throws(() => decodeRecordBatch(zero), isBad, 'no records');
  const empty = encodeRecordBatch([Buffer.from('a')]);
  empty.writeUInt32LE(0, 4);
  assert.throws(() => decodeRecordBatch(empty), isBad, 'an empty record');
  const huge = Buffer.from(good);
  huge.writeUInt32LE(0xffffffff, 0);
  assert.throws(() => decodeRecordBatch(huge), isBad, 'a count beyond the bound');
});

test('ordered ops round-trip: raw data, pushed data ids, pads and truncates, in order', () => {
  const ops: OrderedOp[] = [
    { kind: 'write', serial: 1, offset: 0, sizeBytes: 3, data: Buffer.from('abc') },
    { kind: 'write', serial: 2, offset: 3, sizeBytes: 70_000, dataId: 'push_id-1' },
    { kind: 'pad', serial: 3, toSizeBytes: 64 * 1024 * 1024 },
    { kind: 'write', serial: 2 ** 40, offset: 2 ** 33, sizeBytes: 1, data: Buffer.from('z') },
    { kind: 'truncate', serial: 2 ** 40 + 1, toSizeBytes: 12_345 },
  ];
  const back = decodeOrderedOps(encodeOrderedOps(ops), 10);
  assert.equal(back.length, 5);
  assert.deepEqual(back.map((o) => ({ ...o, data: o.kind === 'write' ? o.data?.toString() : undefined })), ops.map((o) => ({ ...o, data: o.kind === 'write' ? o.data?.toString() : undefined })));
});

test('malformed op bodies are refused', () => {
  const body = encodeOrderedOps([{ kind: 'write', serial: 1, offset: 0, sizeBytes: 3, data: Buffer.from('abc') }]);
  assert.throws(() => decodeOrderedOps(Buffer.from('nope'), 10), isBad);
  assert.throws(() => decodeOrderedOps(body.subarray(0, body.length - 1), 10), isBad, 'truncated data');
  assert.throws(() => decodeOrderedOps(body, 0), isBad, 'more ops than allowed');
  const badKind = Buffer.from(body);
  badKind.writeUInt8(9, 8);
  assert.throws(() => decodeOrderedOps(badKind, 10), isBad);
  const negative = Buffer.from(body);
  negative.writeDoubleLE(-1, 16);
  assert.throws(() => decodeOrderedOps(negative, 10), isBad, 'a negative serial');
  const badId = encodeOrderedOps([{ kind: 'write', serial: 1, offset: 0, sizeBytes: 3, dataId: 'ok' }]);
  badId.write('/.', badId.length - 2, 'latin1');
  assert.throws(() => decodeOrderedOps(badId, 10), isBad, 'a data id that is not an id');
});
