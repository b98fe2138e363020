import { readSync, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { invariant } from './errors.js';

// Positioned reads and writes of whole buffers, for the chunk store and the
// master's op log: small ones on the event loop's thread, large ones through
// libuv's thread pool.

/**
 * Pieces up to this size are written, and read, on the event loop's own thread. An fs/promises call
 * goes through libuv's thread pool, and waking a pool thread costs 75-90 us of CPU per call on these
 * VMs (a cross-CPU wake-up is a VM exit), while a page-cache write of 64 KiB takes 24 us and a 1 KiB
 * record 5-8 us (measured: 4 KiB 7.6 vs 98.5 us, 256 KiB 78 vs 151 us). A buffered write does not
 * wait for the disk; only a larger piece would hold the loop long enough to matter.
 */
export const syncWriteMaxBytes = 256 * 1024;
/**
 * Reads up to one checksum block go on the loop's thread too (a partial last block re-read to extend
 * its checksum, small reads of recent records): mostly page-cache hits (64 KiB: 6.7 us against
 * 78 us through the pool). A read from the disk holds the loop for that one read; bulk reads (1 MiB
 * pieces) keep going through the pool.
 */
export const syncReadMaxBytes = 64 * 1024;

/** pread until `length` bytes or EOF; returns the bytes read. */
export async function preadFull(fh: FileHandle, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  let done = 0;
  const sync = length <= syncReadMaxBytes;
  while (done < length) {
    const bytesRead = sync ? readSync(fh.fd, buf, at + done, length - done, position + done) : (await fh.read(buf, at + done, length - done, position + done)).bytesRead;
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export async function pwriteFull(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  const sync = buf.length <= syncWriteMaxBytes;
  while (done < buf.length) {
    const n = sync ? writeSync(fh.fd, buf, done, buf.length - done, position + done) : (await fh.write(buf, done, buf.length - done, position + done)).bytesWritten;
    invariant(n > 0, 'a write makes progress');
    done += n;
  }
}
