import { closeSync, fsyncSync, openSync, promises as fsp, renameSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

// Small local state replaced atomically and durably: after a crash the file
// holds either the old content or the new, never a torn mix or nothing.
// The data goes to a temp file in the same directory (a rename is atomic only
// within one filesystem), which is fsynced, renamed over the target, and the
// directory fsynced so the rename itself survives a crash. Temp names end in
// `.tmp` and start with the target's name, so a start-up scan can remove
// what a crash left behind.

export const atomicTmpSuffix = '.tmp';

function tmpName(file: string): string {
  // Unique per call: concurrent writers of one file never share a temp file.
  return join(dirname(file), `${basename(file)}.${process.pid}-${randomBytes(4).toString('hex')}${atomicTmpSuffix}`);
}

export interface AtomicWriteOptions {
  /** fsyncs the directory instead of the default (e.g. one fsync shared by many writers). */
  syncDir?: (dir: string) => Promise<void>;
  /** Runs each fsync of the file (e.g. to time it). */
  timeFsync?: (fsync: () => Promise<void>) => Promise<void>;
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces path with data: temp file in the same directory, write, fsync, rename, fsync the directory. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const tmp = tmpName(path);
  try {
    const fh = await fsp.open(tmp, 'w');
    try {
      await fh.writeFile(data);
      const sync = () => fh.sync();
      await (opts.timeFsync ? opts.timeFsync(sync) : sync());
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => undefined);
    throw e;
  }
  await (opts.syncDir ?? fsyncDir)(dirname(path));
}

/** writeFileAtomic for start-up code that runs before anything else can (no event loop needed). */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  const tmp = tmpName(path);
  try {
    const fd = openSync(tmp, 'w');
    try {
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      let done = 0;
      while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already renamed
    }
    throw e;
  }
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
