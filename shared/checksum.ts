import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/** crc32c of data, continuing from `initial` (0 for a fresh checksum). */
export function crc32c(data: Uint8Array, initial = 0): number {
  return nativeCrc32c(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength), initial) >>> 0;
}

// ---- combining crcs (zlib's crc32_combine, for the crc32c polynomial) ----
// The crc of A||B follows from crc(A), crc(B) and B's length alone: multiply
// crc(A) by x^(8*len(B)) modulo the polynomial and add crc(B). This lets a
// push compute one crc per checksum block as the data streams (what the
// store keeps) and still answer with the crc of the whole piece, without a
// second pass over the bytes.

const poly = 0x82f63b78; // crc32c, reflected

/** a(x) * b(x) modulo the polynomial, in the reflected bit order. */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ poly : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) modulo the polynomial, k = 0..31. */
const x2nTable: number[] = (() => {
  const t: number[] = [];
  let p = 0x40000000; // x^1
  t.push(p);
  for (let n = 1; n < 32; n++) t.push((p = multModP(p, p)));
  return t;
})();

/** x^(n * 2^k) modulo the polynomial. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(x2nTable[k & 31]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** The operator that appends `lenBytes` bytes to a crc (reusable for many blocks of one length). */
export function crc32cShift(lenBytes: number): number {
  return x2nModP(lenBytes, 3);
}

/** crc32c(A || B) from crc32c(A), crc32c(B) and the shift of len(B) (crc32cShift). */
export function crc32cCombineShifted(crcA: number, crcB: number, shiftB: number): number {
  return (multModP(shiftB, crcA) ^ crcB) >>> 0;
}

export function crc32cCombine(crcA: number, crcB: number, lenB: number): number {
  return crc32cCombineShifted(crcA, crcB, crc32cShift(lenB));
}

// ---- per-block checksums of a piece of data ----

/** crc32c of each blockBytes block of data (the last may be shorter). */
export function blockCrcsOf(data: Buffer, blockBytes: number): Uint32Array {
  const n = Math.ceil(data.length / blockBytes);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = crc32c(data.subarray(i * blockBytes, Math.min(data.length, (i + 1) * blockBytes)));
  return out;
}

/** crc32c of the whole data, from the crcs of its blocks (each blockBytes long but the last). */
export function crcOfBlocks(crcs: Uint32Array, blockBytes: number, totalBytes: number): number {
  if (crcs.length === 0) return 0;
  const full = crc32cShift(blockBytes);
  let c = crcs[0]!;
  for (let i = 1; i < crcs.length; i++) {
    const len = Math.min(blockBytes, totalBytes - i * blockBytes);
    c = crc32cCombineShifted(c, crcs[i]!, len === blockBytes ? full : crc32cShift(len));
  }
  return c;
}

/** The block crc list as sent in a header: base64 of u32 big-endian values. */
export function encodeBlockCrcs(crcs: Uint32Array): string {
  const b = Buffer.allocUnsafe(crcs.length * 4);
  for (let i = 0; i < crcs.length; i++) b.writeUInt32BE(crcs[i]!, i * 4);
  return b.toString('base64');
}

/** The inverse of encodeBlockCrcs; undefined when the text is not such a list of exactly `count` values. */
export function decodeBlockCrcs(text: string, count: number): Uint32Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const b = Buffer.from(text, 'base64');
  if (b.length !== count * 4) return undefined;
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = b.readUInt32BE(i * 4);
  return out;
}

/**
 * Per-block crc32c of a stream of data, fed in pieces of any size: each block's crc is computed once, as
 * its bytes pass. `expected` (the sender's list), when given, is checked block by block as each completes.
 */
export class BlockCrcStream {
  readonly crcs: Uint32Array;
  private block = 0;
  private fill = 0;
  private crc = 0;

  constructor(
    readonly totalBytes: number,
    readonly blockBytes: number,
    private readonly expected?: Uint32Array,
  ) {
    this.crcs = new Uint32Array(Math.ceil(totalBytes / blockBytes));
  }

  /** Feeds the next bytes; returns the index of a block that does not match `expected`, else -1. */
  update(c: Buffer): number {
    let pos = 0;
    while (pos < c.length) {
      const want = Math.min(this.blockBytes, this.totalBytes - this.block * this.blockBytes) - this.fill;
      const take = Math.min(want, c.length - pos);
      this.crc = crc32c(c.subarray(pos, pos + take), this.crc);
      this.fill += take;
      pos += take;
      if (take === want) {
        this.crcs[this.block] = this.crc;
        if (this.expected && this.expected[this.block] !== this.crc) return this.block;
        this.block++;
        this.fill = 0;
        this.crc = 0;
      }
    }
    return -1;
  }

  /** crc32c of everything fed (call once all totalBytes are in). */
  wholeCrc(): number {
    return crcOfBlocks(this.crcs, this.blockBytes, this.totalBytes);
  }
}
