import { closeSync, constants, openSync, unlinkSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { invariant } from '../shared/errors.js';

// Bulk chunk data written and read with O_DIRECT, from and into the pooled
// buffers pushes and reads already use (chunkserver/buffer-pool.ts). A
// buffered write copies every byte into the page cache, and on these VMs a
// page touched for the first time is expensive: copying 8 MiB pieces into
// a new file's cache ran at ~270 MB/s and took about a third of a
// chunkserver's CPU per megabyte, where O_DIRECT from a reused buffer moves
// 1.0-1.2 GB/s at a small fraction of the CPU. Reads then come from the disk
// (700 MB/s here) into reused buffers too, not through new cache pages.
//
// O_DIRECT wants the buffer's address, the file offset and the length
// aligned to the device's logical block. Node cannot allocate aligned memory
// or tell an address, so each pooled buffer is probed once when made: the
// kernel's own answer (EINVAL or not) to a one-block O_DIRECT write from
// each 16-byte offset of a slightly larger allocation says where it is
// aligned. Only pieces that start on such a boundary at a 4 KiB file offset
// go direct, and only their whole 4 KiB blocks; the rest is written and
// read as before. Where the file system has no O_DIRECT (tmpfs) or the probe
// finds nothing, everything stays buffered. The kernel keeps direct and
// buffered I/O of one file coherent (a direct write first writes back and
// drops cached pages of its range), and fdatasync still makes it durable.

/** File offsets and lengths of direct I/O are multiples of this (a page: right for 512-byte and 4 KiB devices alike). */
export const directAlignBytes = 4096;
/** Pieces smaller than this are not worth a separate open: they are buffered (and written on the loop's thread, shared/file-io.ts). */
export const directMinBytes = 256 * 1024;

export class DirectIo {
  /** Per buffer this made: the byteOffset at which it is aligned. */
  private readonly bases = new WeakMap<ArrayBufferLike, number>();
  readonly counters = { writes: 0, writtenBytes: 0, reads: 0, readBytes: 0, probesFailed: 0 };

  private constructor(private readonly probeFd: number) {}

  /** O_DIRECT support of the file system holding `dir`; undefined where there is none. */
  static probe(dir: string): DirectIo | undefined {
    if (constants.O_DIRECT === undefined) return undefined;
    const path = join(dir, `.direct-probe-${process.pid}`);
    try {
      const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_DIRECT, 0o600);
      unlinkSync(path); // the open descriptor is all the probes need
      const d = new DirectIo(fd);
      // A file system that takes O_DIRECT opens but refuses every write is no use.
      if (d.alignedBuffer(directAlignBytes) === undefined) {
        closeSync(fd);
        return undefined;
      }
      return d;
    } catch {
      return undefined;
    }
  }

  /** A buffer of `bytes` starting where the kernel takes it for O_DIRECT; undefined if no offset worked. */
  alignedBuffer(bytes: number): Buffer | undefined {
    const raw = Buffer.allocUnsafeSlow(bytes + directAlignBytes);
    for (let k = 0; k < directAlignBytes; k += 16) {
      try {
        writeSync(this.probeFd, raw, k, directAlignBytes, 0);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EINVAL') continue;
        break;
      }
      this.bases.set(raw.buffer, raw.byteOffset + k);
      return raw.subarray(k, k + bytes);
    }
    this.counters.probesFailed++;
    return undefined;
  }

  /** Whether buf starts on an aligned boundary of a buffer made by alignedBuffer. */
  aligned(buf: Buffer): boolean {
    const base = this.bases.get(buf.buffer);
    return base !== undefined && (buf.byteOffset - base) % directAlignBytes === 0;
  }

  /** The length of buf's leading part that can be written direct at `position` (0: none). */
  directLength(buf: Buffer, position: number): number {
    if (buf.length < directMinBytes || position % directAlignBytes !== 0 || !this.aligned(buf)) return 0;
    return buf.length - (buf.length % directAlignBytes);
  }

  /** Writes buf (aligned: see directLength) at position through an O_DIRECT descriptor of file. */
  async write(file: string, buf: Buffer, position: number): Promise<void> {
    invariant(buf.length % directAlignBytes === 0 && position % directAlignBytes === 0 && this.aligned(buf), 'direct write of an unaligned piece');
    const fh = await open(file, constants.O_WRONLY | constants.O_DIRECT);
    try {
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
        invariant(bytesWritten > 0 && bytesWritten % directAlignBytes === 0, 'a direct write makes whole-block progress');
        done += bytesWritten;
      }
    } finally {
      await fh.close();
    }
    this.counters.writes++;
    this.counters.writtenBytes += buf.length;
  }

  /**
   * Reads `length` bytes at position (a multiple of directAlignBytes) into buf through an O_DIRECT
   * descriptor; buf must be aligned and hold `length` rounded up to a block. Returns the bytes read
   * (fewer at the end of the file).
   */
  async read(file: string, buf: Buffer, length: number, position: number): Promise<number> {
    const span = Math.ceil(length / directAlignBytes) * directAlignBytes;
    invariant(position % directAlignBytes === 0 && buf.length >= span && this.aligned(buf), 'direct read into an unaligned buffer');
    const fh = await open(file, constants.O_RDONLY | constants.O_DIRECT);
    let done = 0;
    try {
      while (done < span) {
        const { bytesRead } = await fh.read(buf, done, span - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
        // Short of a whole block: the end of the file.
        if (bytesRead % directAlignBytes !== 0) break;
      }
    } finally {
      await fh.close();
    }
    this.counters.reads++;
    this.counters.readBytes += Math.min(done, length);
    return Math.min(done, length);
  }
}
