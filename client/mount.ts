import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type FuseNative from 'fuse-native';
import { fuseBinding, loadFuseNative } from './mount-binding.js';
import { GfsFuse } from './mount-fs.js';
import { fuseOps } from './mount-ops.js';

export { GfsFuse } from './mount-fs.js';
export { toErrno } from './mount-errno.js';

// `gfs mount REMOTE_DIR MOUNTPOINT`: a FUSE file system (fuse-native over
// the system's libfuse2) backed by the client library.
//
// - Attributes come from the master (`stat`, which asks the replicas for the
//   last chunk's length). The kernel caches them for attrTimeoutS and this
//   process for attrCacheMs more; while a handle has unflushed writes the
//   size includes them. A directory listing fills this cache too where it is
//   exact (directories and empty files: `ls -l` of those is one listing, not a
//   stat per entry); a file with data is stat'ed, since its listed size comes
//   from heartbeats and may lag a write. Paths this mount changed in the last
//   30 s (mount-attrs.ts listingDistrustMs) are taken from stats only.
// - The mount uses direct_io: no kernel page cache, every read and write
//   reaches this process. That keeps readers coherent with appends made
//   elsewhere (`tail -f`) and with record appends, whose offset the system
//   picks (a page cache would hold them where the kernel thinks they went).
//   Sequential reads are served from per-handle read-ahead windows of
//   readAheadBytes (8 MiB), up to `concurrency` (4) fetched ahead in parallel
//   straight from the replicas; the file's size is learned again (from a
//   replica of the last chunk, GfsClient.extent) only when a window reaches
//   past the size last learned or that is over 1 s old.
//   A read first sends what this mount still buffers for the file.
// - Writes (big_writes, max_write=128 KiB) are gathered per handle into
//   pieces aligned to min(push piece, chunk) and sent with writePiece, up to
//   `concurrency` at a time, when a piece fills; the rest on flush/fsync/
//   release. flush and fsync then call GfsClient.sync for the chunks written
//   through that handle: the data is on every replica's disk. A failed
//   background write is reported (EIO etc.) by the next write or flush.
// - O_APPEND handles: each write() becomes one record append of exactly the
//   written bytes (appendRaw, no framing), so concurrent appenders get whole,
//   non-interleaved writes (at-least-once: a retried append may repeat).
//   fuse-native does not pass open flags to `create`, so a handle that
//   created the file writes at the offsets the kernel gives it, and a create
//   that finds the file already there opens it (O_EXCL is not visible).
// - unlink moves the file to the trash (undelete possible); rename replaces
//   an existing destination. hard_remove: a file unlinked while open gets
//   ENOENT on further writes.
// - truncate to any length is GfsClient.truncate: shorter drops the chunks
//   past the new end (master) and cuts the one holding it on every replica
//   (its primary, in order with its other mutations); longer writes one zero
//   byte at the new end (a hole before it reads as zeros). The file keeps its
//   identity, mode and owner; a length past 1 PiB is EFBIG.
// - Modes, owners, times and symbolic links are the master's (issue 20):
//   chmod, chown, utimens, symlink, readlink; create/mkdir take the mode the
//   kernel hands over (umask applied) and the caller's uid/gid. A write moves
//   mtime and ctime at flush (the master learns of writes only at chunk
//   allocation), unless utimens set the times since. Times reach the kernel
//   in whole ms (fuse-native's format). fuse-native's own binding passes
//   utimens atime twice, and libfuse then drops a change of one time alone;
//   npm run build builds a fixed binding (scripts/build-fuse-binding.mjs,
//   loaded by mount-binding.ts) that passes both times, UTIME_NOW/UTIME_OMIT
//   and the caller's uid/gid. Special files (mknod, mkfifo, a bound socket)
//   are master entries with their type and device number; the kernel does
//   their I/O. Hard links are EPERM. With --allow-other the kernel checks every user's access
//   against the modes (default_permissions); a mount only its user reaches
//   is not checked. A name over 255 bytes is ENAMETOOLONG.
// - The process stays in the foreground until the file system is unmounted
//   (`gfs umount`, fusermount -u) or it gets SIGINT/SIGTERM, when it flushes
//   what it holds and unmounts.

//
// This file mounts and unmounts; the parts: mount-fs.ts (the file system:
// namespace, handles), mount-ops.ts (the FUSE handler table), mount-attrs.ts
// (attribute cache), mount-writes.ts (write buffers), mount-readahead.ts
// (read-ahead), mount-handle.ts (an open file's state), mount-errno.ts.

const KiB = 1024;

export const fuseInstallHint = 'install the Debian packages libfuse2 and fuse (apt-get install libfuse2 fuse)';

import type { MountOptions } from './mount-options.js';
export type { MountOptions };

/** Why FUSE cannot be used here, or undefined when it can. */
export function fuseUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `gfs mount needs Linux with FUSE (this is ${process.platform})`;
  if (!existsSync('/dev/fuse')) return `FUSE is not available: /dev/fuse is missing; ${fuseInstallHint} and load the fuse kernel module (modprobe fuse)`;
  try {
    loadFuseNative();
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    return `FUSE is not available: fuse-native cannot load (${why}); ${fuseInstallHint}`;
  }
  return undefined;
}

function loadFuse(): typeof FuseNative {
  const why = fuseUnavailable();
  if (why) throw new Error(why);
  return loadFuseNative().Fuse;
}

/** Mount points in this process's mount namespace (octal escapes decoded). */
export function mountedAt(mountpoint: string): boolean {
  const target = resolvePath(mountpoint);
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return false;
  }
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === target) return true;
  }
  return false;
}

/**
 * Mounts and serves until the file system is unmounted (from outside, or on
 * SIGINT/SIGTERM here). Resolves once it is gone.
 */
export async function runMount(o: MountOptions): Promise<void> {
  const Fuse = loadFuse();
  const mnt = resolvePath(o.mountpoint);
  let st;
  try {
    st = statSync(mnt);
  } catch {
    throw new Error(`mount point does not exist: ${mnt}`);
  }
  if (!st.isDirectory()) throw new Error(`mount point is not a directory: ${mnt}`);
  if (mountedAt(mnt)) throw new Error(`something is already mounted on ${mnt} (gfs umount ${o.mountpoint})`);
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const fs = new GfsFuse(o);
  await fs.init();
  const attrTimeout = o.attrTimeoutS ?? 1;
  const checked = !!o.allowOther && fuseBinding() === 'patched';
  if (o.allowOther && !checked) log(`gfs mount: --allow-other with fuse-native's own binding: other users' access is not checked and what they create belongs to ${process.getuid?.() ?? 0} (npm run build builds the binding that knows the caller)`);

  class GfsFuseMount extends Fuse {
    override _fuseOptions(): string {
      const base = super._fuseOptions();
      const extra = [
        'big_writes',
        `max_write=${128 * KiB}`,
        `max_read=${128 * KiB}`,
        'direct_io',
        'hard_remove',
        `attr_timeout=${attrTimeout}`,
        `entry_timeout=${attrTimeout}`,
        'negative_timeout=0',
        'subtype=gfs',
        // Serving other users, the kernel checks their access against the modes and owners the
        // master keeps (EACCES, sticky directories, who may chmod/chown); a mount only its user
        // reaches is not checked, as before modes were kept (files made without the mount are 0:0).
        // Only with the fixed binding: fuse-native's own cannot tell who creates a file, so others'
        // new files would be the mount user's, and they could not even set their times.
        ...(checked ? ['default_permissions'] : []),
      ].join(',');
      return base ? `${base},${extra}` : `-o${extra}`;
    }
  }
  const fuse = new GfsFuseMount(mnt, fuseOps(fs, !!o.debug, log), {
    force: true,
    mkdir: false,
    debug: !!o.debug,
    allowOther: !!o.allowOther,
    fsname: 'gfs',
    timeout: 120_000,
  });
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(new Error(`cannot mount on ${mnt}: ${err.message}`)) : resolve())));
  o.onMounted?.();

  await untilUnmounted(fs, fuse, mnt);
}

/** Serves until unmounted from outside or SIGINT/SIGTERM here, then writes out what the mount holds and detaches. */
function untilUnmounted(fs: GfsFuse, fuse: { unmount(cb: (err?: Error | null) => void): void }, mnt: string): Promise<void> {
  return new Promise<void>((resolve) => {
    let stopping = false;
    const finish = async (how: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(timer);
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      if (how === 'signal') {
        // Write out what we hold, then detach (lazily: busy files do not block the exit).
        await Promise.race([fs.flushAll(true), new Promise((r) => setTimeout(r, 10_000))]);
        await new Promise<void>((r) => fuse.unmount(() => r()));
      } else {
        // Unmounted from outside (a lazy unmount may leave files open): let them finish, briefly.
        const until = Date.now() + 30_000;
        while (fs.openHandles > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
        await Promise.race([fs.flushAll(true), new Promise((r) => setTimeout(r, 10_000))]);
        await new Promise<void>((r) => fuse.unmount(() => r()));
      }
      resolve();
    };
    const onSignal = () => void finish('signal');
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const timer = setInterval(() => {
      if (!mountedAt(mnt)) void finish('external');
    }, 250);
  });
}

function run(cmd: string, args: string[]): Promise<{ ok: boolean; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, (e, _out, stderr) => resolve({ ok: !e, err: (stderr || (e?.message ?? '')).trim().split('\n')[0] ?? '' }));
  });
}

/** `gfs umount`: fusermount -u, falling back to umount(8). */
export async function unmount(mountpoint: string, o: { lazy?: boolean } = {}): Promise<void> {
  const mnt = resolvePath(mountpoint);
  if (!mountedAt(mnt)) throw new Error(`not mounted: ${mnt}`);
  const a = await run('fusermount', ['-u', ...(o.lazy ? ['-z'] : []), mnt]);
  if (a.ok) return;
  const b = await run('umount', [...(o.lazy ? ['-l'] : []), mnt]);
  if (b.ok) return;
  throw new Error(`cannot unmount ${mnt}: ${b.err || a.err}${/busy/i.test(b.err + a.err) ? ' (files are open; gfs umount --lazy detaches anyway)' : ''}`);
}
