import { z } from 'zod';
import { GfsError } from './errors.js';
import { handleSchema, idSchema } from './wire.js';

// Binary bodies of the small-mutation data path: record appends from a
// client to the primary, small writes, and the primary's ordered mutations to
// its secondaries. The bytes travel raw in the request body, never as base64
// inside JSON; the control fields (chunk, version, ids) travel in x-gfs-*
// headers, which the request signature covers (shared/auth.ts), and the
// body's own sha256 is signed as for any other body. Answers stay small JSON.
//
// Record batch (POST /chunk/append-batch):
//   u32 LE count | count x u32 LE record length | the records, back to back
// Ordered ops (POST /chunk/apply, content-type application/octet-stream):
//   "GFA1" | u32 LE count | count x 24-byte entry | data region
//   entry: u8 kind (1 write with its bytes, 2 write of pushed data, 3 pad, 4 truncate) |
//          u8 data id length | u16 0 | u32 LE size | f64 LE serial | f64 LE offset (pad, truncate: target length)
//   the data region holds, in op order, each kind-1 op's bytes and each kind-2 op's data id (ASCII).

export const binaryContentType = 'application/octet-stream';

/** Largest record batch body a primary accepts (and a client sends). */
export const recordBatchMaxBytes = 1024 * 1024;
/** Records in one batch at most. */
export const recordBatchMaxRecords = 16_384;

/** A mutation as the primary orders it: the bytes to write travel with it, or a pushed data id names them. */
/** `pad` extends a chunk with zeros; `truncate` sets its length exactly (shrinking it, or extending with zeros): a file truncated to within the chunk. */
export type OrderedOp =
  | { kind: 'write'; serial: number; offset: number; sizeBytes: number; data?: Buffer; dataId?: string }
  | { kind: 'pad'; serial: number; toSizeBytes: number }
  | { kind: 'truncate'; serial: number; toSizeBytes: number };

const applyMagic = Buffer.from('GFA1', 'latin1');
const entryBytes = 24;
const kindCode = { write: 1, pushed: 2, pad: 3, truncate: 4 } as const;

function bad(msg: string): GfsError {
  return new GfsError('BAD_REQUEST', msg);
}

export function recordBatchBytes(records: readonly Buffer[]): number {
  let n = 4 + 4 * records.length;
  for (const r of records) n += r.length;
  return n;
}

export function encodeRecordBatch(records: readonly Buffer[]): Buffer {
  const out = Buffer.allocUnsafe(recordBatchBytes(records));
  out.writeUInt32LE(records.length, 0);
  let pos = 4 + 4 * records.length;
  records.forEach((r, i) => {
    out.writeUInt32LE(r.length, 4 + 4 * i);
    r.copy(out, pos);
    pos += r.length;
  });
  return out;
}

/** The records of a batch body, as views into it; every length and the total are checked. */
export function decodeRecordBatch(body: Buffer): Buffer[] {
  if (body.length < 4) throw bad('record batch shorter than its header');
  const count = body.readUInt32LE(0);
  if (count < 1 || count > recordBatchMaxRecords) throw bad(`record batch must hold 1 to ${recordBatchMaxRecords} records, not ${count}`);
  let pos = 4 + 4 * count;
  if (pos > body.length) throw bad('record batch shorter than its length table');
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const len = body.readUInt32LE(4 + 4 * i);
    if (len === 0) throw bad(`record ${i} is empty`);
    if (pos + len > body.length) throw bad(`record ${i} runs past the end of the batch`);
    out.push(body.subarray(pos, pos + len));
    pos += len;
  }
  if (pos !== body.length) throw bad(`record batch has ${body.length - pos} bytes after its last record`);
  return out;
}

function opDataBytes(op: OrderedOp): number {
  if (op.kind === 'pad' || op.kind === 'truncate') return 0;
  if (op.data) return op.data.length;
  return Buffer.byteLength(op.dataId ?? '', 'latin1');
}

/** Bytes an op adds to an encoded apply body. */
export function orderedOpBytes(op: OrderedOp): number {
  return entryBytes + opDataBytes(op);
}

export function encodeOrderedOps(ops: readonly OrderedOp[]): Buffer {
  let total = 8;
  for (const op of ops) total += orderedOpBytes(op);
  const out = Buffer.allocUnsafe(total);
  applyMagic.copy(out, 0);
  out.writeUInt32LE(ops.length, 4);
  let data = 8 + entryBytes * ops.length;
  ops.forEach((op, i) => {
    const e = 8 + entryBytes * i;
    out.writeUInt16LE(0, e + 2);
    out.writeDoubleLE(op.serial, e + 8);
    if (op.kind === 'pad' || op.kind === 'truncate') {
      out.writeUInt8(kindCode[op.kind], e);
      out.writeUInt8(0, e + 1);
      out.writeUInt32LE(0, e + 4);
      out.writeDoubleLE(op.toSizeBytes, e + 16);
      return;
    }
    out.writeUInt32LE(op.sizeBytes, e + 4);
    out.writeDoubleLE(op.offset, e + 16);
    if (op.data) {
      out.writeUInt8(kindCode.write, e);
      out.writeUInt8(0, e + 1);
      op.data.copy(out, data);
      data += op.data.length;
    } else {
      const id = op.dataId ?? '';
      out.writeUInt8(kindCode.pushed, e);
      out.writeUInt8(id.length, e + 1);
      data += out.write(id, data, 'latin1');
    }
  });
  return out;
}

const dataIdRe = /^[A-Za-z0-9_-]{1,64}$/;

function intField(v: number, what: string, i: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw bad(`op ${i}: ${what} must be a non-negative integer`);
  return v;
}

/** The ops of an apply body; write data are views into it. */
export function decodeOrderedOps(body: Buffer, maxOps: number): OrderedOp[] {
  if (body.length < 8 || !body.subarray(0, 4).equals(applyMagic)) throw bad('apply body does not start with GFA1');
  const count = body.readUInt32LE(4);
  if (count < 1 || count > maxOps) throw bad(`apply body must hold 1 to ${maxOps} ops, not ${count}`);
  let data = 8 + entryBytes * count;
  if (data > body.length) throw bad('apply body shorter than its op table');
  const ops: OrderedOp[] = [];
  for (let i = 0; i < count; i++) {
    const e = 8 + entryBytes * i;
    const kind = body.readUInt8(e);
    const idLen = body.readUInt8(e + 1);
    const size = body.readUInt32LE(e + 4);
    const serial = intField(body.readDoubleLE(e + 8), 'serial', i);
    const offset = intField(body.readDoubleLE(e + 16), 'offset', i);
    if (kind === kindCode.pad || kind === kindCode.truncate) {
      ops.push({ kind: kind === kindCode.pad ? 'pad' : 'truncate', serial, toSizeBytes: offset });
    } else if (kind === kindCode.write) {
      if (data + size > body.length) throw bad(`op ${i}: data runs past the end of the body`);
      ops.push({ kind: 'write', serial, offset, sizeBytes: size, data: body.subarray(data, data + size) });
      data += size;
    } else if (kind === kindCode.pushed) {
      if (data + idLen > body.length) throw bad(`op ${i}: data id runs past the end of the body`);
      const dataId = body.toString('latin1', data, data + idLen);
      if (!dataIdRe.test(dataId)) throw bad(`op ${i}: invalid data id`);
      ops.push({ kind: 'write', serial, offset, sizeBytes: size, dataId });
      data += idLen;
    } else {
      throw bad(`op ${i}: unknown kind ${kind}`);
    }
  }
  if (data !== body.length) throw bad(`apply body has ${body.length - data} bytes after its last op`);
  return ops;
}

// ---- control headers (validated like any body: zod at the boundary) ----

const intHeader = (max: number) =>
  z
    .string()
    .regex(/^\d{1,16}$/, 'must be a non-negative integer')
    .transform(Number)
    .pipe(z.number().int().min(0).max(max));

const crcHeader = intHeader(0xffffffff);

/** POST /chunk/append-batch: which chunk, at which version, and the request's ids. */
export const appendBatchHeaders = z.object({
  'x-gfs-handle': handleSchema,
  'x-gfs-version': intHeader(Number.MAX_SAFE_INTEGER),
  'x-gfs-client': idSchema,
  'x-gfs-request': idSchema,
  /** crc32c of the whole body: damage between the client and the primary is caught even without a secret. */
  'x-gfs-crc32c': crcHeader,
});

/** POST /chunk/write with a binary body: the bytes to write at an offset of the chunk. */
export const writeBytesHeaders = appendBatchHeaders.extend({ 'x-gfs-offset': intHeader(2 ** 48) });

/** POST /chunk/apply with a binary body: the primary's ordered mutations. */
export const applyHeaders = z.object({
  'x-gfs-handle': handleSchema,
  'x-gfs-version': intHeader(Number.MAX_SAFE_INTEGER),
  'x-gfs-stream': idSchema.optional(),
  'x-gfs-acked-through': intHeader(Number.MAX_SAFE_INTEGER).optional(),
});

/** Answer to an append batch: the offsets of the records placed, in order; the ones after them found the chunk full (it is padded now). */
export interface AppendBatchAnswer {
  offsets: number[];
}
