import { crc32c } from '../shared/checksum.js';
import { invariant } from '../shared/errors.js';
import { overlayBlock, planChecksums, zeroBlockOf, type GivenCrcs, type ZeroBlock } from './checksum-plan.js';
import { directAlignBytes, type DirectIo } from './direct-io.js';
import type { FileHandle } from 'node:fs/promises';
import type { FdCache } from './fd-cache.js';
import type { Replica } from './replica.js';
import { crcBytes, preadFull, pwriteFull } from './replica-files.js';

// A replica's data with its checksums: reads verified block by block
// against the in-memory crc table, and mutations (write, pad) that verify
// what they keep, write data and crcs, and update the table. The caller
// holds the replica's lock.

export class ReplicaData {
  private readonly zero: ZeroBlock;
  /** Set by the store once it knows the file system takes O_DIRECT. */
  direct: DirectIo | undefined;

  constructor(
    private readonly blockBytes: number,
    private readonly maxBlocks: number,
    private readonly fds: FdCache,
    /** A replica's data file, for the O_DIRECT descriptors opened beside the cached ones. */
    private readonly dataFile: (handle: string) => string,
    /** A block failed verification: reports it and throws CORRUPT. */
    private readonly mismatch: (rep: Replica, block: number) => never,
    /** A mutation reached the data file: the replica grew by grownBytes, writtenBytes came from the caller. */
    private readonly applied: (grownBytes: number, writtenBytes: number) => void,
  ) {
    this.zero = zeroBlockOf(blockBytes);
  }

  /**
   * Applies data at offset (for pad: offset = target length, data empty).
   * All crcs are computed, and partially covered blocks verified, before
   * anything is written, so a CORRUPT error leaves the replica untouched.
   */
  async mutate(rep: Replica, offset: number, data: Buffer, given?: GivenCrcs): Promise<number> {
    const B = this.blockBytes;
    const oldSize = rep.sizeBytes;
    const plan = planChecksums(B, this.zero, oldSize, rep.crcs, offset, data, given);
    const { firstBlock, lastBlock, newCrcs, needRead } = plan;
    const newSize = plan.newSizeBytes;

    return this.fds.with(rep.handle, true, async (dataFh, crcFh) => {
      for (const b of needRead) {
        const bs = b * B;
        const oldEnd = Math.min(bs + B, oldSize);
        const buf = Buffer.allocUnsafe(Math.min(bs + B, newSize) - bs);
        const got = await preadFull(dataFh, buf, 0, oldEnd - bs, bs);
        // Verify before overlaying, so an overwrite never launders corruption into a fresh crc.
        if (got !== oldEnd - bs || crc32c(buf.subarray(0, oldEnd - bs)) !== rep.crcs[b]) this.mismatch(rep, b);
        overlayBlock(buf, B, b, offset, data);
        newCrcs[b - firstBlock] = crc32c(buf);
      }

      // Data and crc writes go out together (they are unordered on disk until
      // sync() anyway), which roughly halves the latency of small appends.
      const [dataDone, crcDone] = await Promise.allSettled([
        // pad: truncate extends with a hole, which reads as zeros
        data.length > 0 ? this.writeData(rep.handle, dataFh, data, offset) : dataFh.truncate(newSize),
        pwriteFull(crcFh!, crcBytes(newCrcs, 0, newCrcs.length), 4 * firstBlock),
      ]);
      // Failed data write: the old table still describes whatever survived, or
      // reads report the damage as CORRUPT.
      if (dataDone.status === 'rejected') throw dataDone.reason;
      // The data file holds the new bytes now, so the table must describe them
      // even if the crc file could not be updated (a restart would then find
      // the mismatch and the replica is re-replicated).
      this.ensureBlocks(rep, lastBlock + 1);
      rep.crcs.set(newCrcs, firstBlock);
      rep.sizeBytes = newSize;
      this.applied(newSize - oldSize, data.length);
      rep.dirty = true;
      if (crcDone.status === 'rejected') throw crcDone.reason;
      return newSize;
    });
  }

  /**
   * Cuts the replica to toSizeBytes (below its length): the last block kept
   * is verified first and its crc recomputed over what remains of it, so a
   * CORRUPT error leaves the replica untouched. The crc file keeps one entry
   * per block left.
   */
  async shrink(rep: Replica, toSizeBytes: number): Promise<number> {
    const B = this.blockBytes;
    const oldSize = rep.sizeBytes;
    invariant(toSizeBytes < oldSize, 'shrink that does not shrink');
    const blocks = Math.ceil(toSizeBytes / B);
    const partial = toSizeBytes % B;
    return this.fds.with(rep.handle, true, async (dataFh, crcFh) => {
      let lastCrc: number | undefined;
      if (partial > 0) {
        const b = blocks - 1;
        const bs = b * B;
        const oldEnd = Math.min(bs + B, oldSize);
        const buf = Buffer.allocUnsafe(oldEnd - bs);
        const got = await preadFull(dataFh, buf, 0, buf.length, bs);
        if (got !== buf.length || crc32c(buf) !== rep.crcs[b]) this.mismatch(rep, b);
        lastCrc = crc32c(buf.subarray(0, partial));
      }
      await dataFh.truncate(toSizeBytes);
      // The data file is cut: the table must describe it now, whatever happens to the crc file.
      rep.crcs.fill(0, blocks);
      if (lastCrc !== undefined) rep.crcs[blocks - 1] = lastCrc;
      rep.sizeBytes = toSizeBytes;
      this.applied(toSizeBytes - oldSize, 0);
      rep.dirty = true;
      await crcFh!.truncate(4 * blocks);
      if (lastCrc !== undefined) await pwriteFull(crcFh!, crcBytes(rep.crcs, blocks - 1, 1), 4 * (blocks - 1));
      return toSizeBytes;
    });
  }

  /** Reads blocks [firstBlock, lastBlock] (clamped at the chunk's end) in one pread and verifies each; into `scratch` when it is large enough. */
  async readVerified(rep: Replica, firstBlock: number, lastBlock: number, scratch?: Buffer): Promise<Buffer> {
    const B = this.blockBytes;
    const start = firstBlock * B;
    const stop = Math.min((lastBlock + 1) * B, rep.sizeBytes);
    const buf = scratch && scratch.length >= stop - start ? scratch.subarray(0, stop - start) : Buffer.allocUnsafe(stop - start);
    const got = await this.readData(rep.handle, buf, scratch, start);
    // A file shorter than recorded reads as zeros here; the crcs decide whether that is right.
    if (got < buf.length) buf.fill(0, got);
    for (let b = firstBlock; b <= lastBlock; b++) {
      const bs = b * B - start;
      const be = Math.min(bs + B, buf.length);
      if (crc32c(buf.subarray(bs, be)) !== rep.crcs[b]) this.mismatch(rep, b);
    }
    return buf;
  }

  /** data at offset: its whole aligned blocks through O_DIRECT when it can (chunkserver/direct-io.ts), the rest buffered. */
  private async writeData(handle: string, fh: FileHandle, data: Buffer, offset: number): Promise<void> {
    const directBytes = this.direct?.directLength(data, offset) ?? 0;
    if (directBytes > 0) await this.direct!.write(this.dataFile(handle), data.subarray(0, directBytes), offset);
    if (directBytes < data.length) await pwriteFull(fh, data.subarray(directBytes), offset + directBytes);
  }

  /** buf.length bytes at start: into a pooled aligned scratch through O_DIRECT when it can, else buffered. Returns the bytes read. */
  private async readData(handle: string, buf: Buffer, scratch: Buffer | undefined, start: number): Promise<number> {
    const d = this.direct;
    const span = Math.ceil(buf.length / directAlignBytes) * directAlignBytes;
    if (d && scratch && buf.buffer === scratch.buffer && buf.byteOffset === scratch.byteOffset && scratch.length >= span && d.directLength(buf, start) > 0) {
      return d.read(this.dataFile(handle), scratch, buf.length, start);
    }
    return this.fds.with(handle, false, (fh) => preadFull(fh, buf, 0, buf.length, start));
  }

  // Tables grow geometrically (bounded by the chunk's block count), so
  // sequential appends reallocate O(log n) times and a part-filled chunk only
  // costs memory for what it holds.
  private ensureBlocks(rep: Replica, blocks: number): void {
    if (rep.crcs.length >= blocks) return;
    const grown = new Uint32Array(Math.max(blocks, Math.min(this.maxBlocks, 2 * rep.crcs.length)));
    grown.set(rep.crcs);
    rep.crcs = grown;
  }
}
