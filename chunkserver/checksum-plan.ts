import { crc32c } from '../shared/checksum.js';
import { invariant } from '../shared/errors.js';

// The checksum plan of a mutation (pure, no I/O): which checksum blocks a
// write or pad changes, the new crc of each block that can be computed from
// the caller's bytes and the old crc alone, and which blocks must be read
// back (verified, then overlaid) because the mutation keeps some old bytes of
// them that are not a prefix.

export interface ChecksumPlan {
  firstBlock: number;
  lastBlock: number;
  newSizeBytes: number;
  /** New crcs of blocks firstBlock..lastBlock; entries of needRead blocks are filled in by the caller. */
  newCrcs: Uint32Array;
  /** Blocks to read, verify against their old crc, and overlay (at most the first and the last). */
  needRead: number[];
}

/** A whole block of zeros and its crc: gaps and pads are common, so computed once per store. */
export interface ZeroBlock {
  bytes: Buffer;
  crc: number;
}

export function zeroBlockOf(blockBytes: number): ZeroBlock {
  const bytes = Buffer.alloc(blockBytes);
  return { bytes, crc: crc32c(bytes) };
}

/** The crc32c of each blockBytes block of a mutation's data, counted from its first byte, as its sender computed them (a push). */
export interface GivenCrcs {
  crcs: Uint32Array;
  blockBytes: number;
}

/**
 * Plans data at offset onto a replica of oldSizeBytes whose crcs are oldCrcs
 * (for pad: offset = target length, data empty). Bytes between the old end
 * and offset become zeros. `given`: the data's own block crcs; a chunk block
 * that is exactly one of the data's blocks takes its crc from there instead
 * of computing it from the buffer again (the stored crc is then the one the
 * sender computed and every hop checked).
 */
export function planChecksums(blockBytes: number, zero: ZeroBlock, oldSizeBytes: number, oldCrcs: Uint32Array, offset: number, data: Buffer, given?: GivenCrcs): ChecksumPlan {
  const B = blockBytes;
  const oldSize = oldSizeBytes;
  const end = offset + data.length;
  const newSize = Math.max(oldSize, end);
  // Blocks whose content changes: from the first written (or zero-filled) byte to the last.
  const firstBlock = Math.floor(Math.min(offset, oldSize) / B);
  const lastBlock = Math.floor((end - 1) / B);
  invariant(end > Math.min(offset, oldSize), 'mutation changes nothing');
  const newCrcs = new Uint32Array(lastBlock - firstBlock + 1);
  const needRead: number[] = [];
  // The data's blocks line up with the chunk's: same size, and the data starts on a block boundary.
  const aligned = given !== undefined && given.blockBytes === B && offset % B === 0 && given.crcs.length === Math.ceil(data.length / B);

  for (let b = firstBlock; b <= lastBlock; b++) {
    const bs = b * B;
    const be = Math.min(bs + B, newSize);
    const hasOld = oldSize > bs;
    if (offset <= bs && end >= be) {
      // Whole block comes from the caller's buffer: with aligned given crcs, the chunk block [bs, be) is
      // the data's block (bs - offset) / B in full (a whole block, or the data's short last block).
      newCrcs[b - firstBlock] = aligned ? given.crcs[(bs - offset) / B]! : crc32c(data.subarray(bs - offset, be - offset));
    } else if (!hasOld || offset >= oldSize) {
      // The block's old bytes, if any, are exactly its prefix up to the old
      // end, followed by zeros (gap) and new bytes: continue the old crc
      // instead of reading them back. Corrupt old bytes still fail later
      // reads, since the continued crc describes the intended bytes.
      let c = hasOld ? oldCrcs[b]! : 0;
      const zs = Math.max(bs, oldSize);
      const ze = Math.min(be, offset);
      if (ze > zs) c = !hasOld && ze - zs === B ? zero.crc : crc32c(zero.bytes.subarray(0, ze - zs), c);
      const ds = Math.max(bs, offset);
      const de = Math.min(be, end);
      if (de > ds) c = crc32c(data.subarray(ds - offset, de - offset), c);
      newCrcs[b - firstBlock] = c;
    } else {
      // Overwrite that keeps some old bytes of the block: only the first and
      // last block can land here.
      needRead.push(b);
    }
  }
  return { firstBlock, lastBlock, newSizeBytes: newSize, newCrcs, needRead };
}

/** Copies the part of (offset, data) that falls in block b into buf, which holds the block's bytes from the block's start. */
export function overlayBlock(buf: Buffer, blockBytes: number, b: number, offset: number, data: Buffer): void {
  const bs = b * blockBytes;
  const ds = Math.max(bs, offset);
  const de = Math.min(bs + buf.length, offset + data.length);
  if (de > ds) data.copy(buf, ds - bs, ds - offset, de - offset);
}
