import { execFileSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';

// A small tmpfs for tests that need a disk that fills up (root only). Unmounted lazily: a failed
// test may leave a file open on it; and also when the process exits, since a test that hangs never
// reaches its finally.

/** Mounts a tmpfs of sizeBytes on dir (which must exist); returns the unmount, or why it could not. */
export function mountTmpfs(dir: string, sizeBytes: number): { unmount: () => void } | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'needs root to mount a small tmpfs' };
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (e) {
    return { skip: `cannot mount a tmpfs: ${(e as Error).message.split('\n')[0]}` };
  }
  const lazy = () => {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    } catch {
      // already unmounted
    }
  };
  process.once('exit', lazy);
  return {
    unmount: () => {
      process.off('exit', lazy);
      lazy();
    },
  };
}

/** Writes the file at path until the disk is full (ENOSPC); any other error is thrown. */
export function fillDisk(path: string): void {
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
}
