// The FUSE handler table: each kernel call to its GfsFuse method, results to the callback, errors as negative errnos.
import { constants as osConstants } from 'node:os';
import type { FuseOps } from 'fuse-native';
import type { GfsFuse } from './mount-fs.js';
import { toErrno } from './mount-errno.js';

const E = osConstants.errno;

/** FUSE operations bound to a GfsFuse: each async result goes to the callback, errors as negative errnos. */
export function fuseOps(fs: GfsFuse, debug: boolean, log: (l: string) => void): FuseOps {
  type Cb = (result: number, ...values: unknown[]) => void;
  const reply = (name: string, arg: string, cb: Cb, p: Promise<unknown[]>) => {
    p.then(
      (r) => cb(...(r as [number, ...unknown[]])),
      (e) => {
        const errno = toErrno(e);
        if (debug || (errno === -E.EIO && typeof e !== 'number')) log(`gfs mount: ${name} ${arg}: ${e instanceof Error ? e.message : `errno ${-errno}`}`);
        cb(errno);
      },
    );
  };
  return {
    init: (cb) => cb(0),
    statfs: (_p, cb) => reply('statfs', '/', cb, fs.statfs().then((v) => [0, v])),
    getattr: (p, cb) => reply('getattr', p, cb, fs.getattr(p).then((st) => [0, st])),
    readdir: (p, cb) => reply('readdir', p, cb, fs.readdir(p).then((names) => [0, names])),
    open: (p, flags, cb) => reply('open', p, cb, fs.open(p, flags).then((fd) => [0, fd])),
    create: (p, mode, cb) => reply('create', p, cb, fs.create(p, mode).then((fd) => [0, fd])),
    read: (p, fd, buf, len, pos, cb) => reply('read', p, cb, fs.read(p, fd, buf, len, pos).then((n) => [n])),
    write: (p, fd, buf, len, pos, cb) => reply('write', p, cb, fs.write(p, fd, buf, len, pos).then((n) => [n])),
    flush: (p, fd, cb) => reply('flush', p, cb, fs.flush(p, fd).then(() => [0])),
    fsync: (p, _datasync, fd, cb) => reply('fsync', p, cb, fs.flush(p, fd).then(() => [0])),
    release: (p, fd, cb) => reply('release', p, cb, fs.release(p, fd).then(() => [0])),
    truncate: (p, size, cb) => reply('truncate', p, cb, fs.truncate(p, size).then(() => [0])),
    ftruncate: (p, fd, size, cb) => reply('ftruncate', p, cb, fs.truncate(p, size, fd).then(() => [0])),
    unlink: (p, cb) => reply('unlink', p, cb, fs.unlink(p).then(() => [0])),
    rename: (src, dst, cb) => reply('rename', src, cb, fs.rename(src, dst).then(() => [0])),
    mkdir: (p, mode, cb) => reply('mkdir', p, cb, fs.mkdir(p, mode).then(() => [0])),
    rmdir: (p, cb) => reply('rmdir', p, cb, fs.rmdir(p).then(() => [0])),
    utimens: (p, atime, mtime, cb) => reply('utimens', p, cb, fs.utimens(p, atime, mtime).then(() => [0])),
    chmod: (p, mode, cb) => reply('chmod', p, cb, fs.chmod(p, mode).then(() => [0])),
    chown: (p, uid, gid, cb) => reply('chown', p, cb, fs.chown(p, uid, gid).then(() => [0])),
    // fuse-native hands libfuse's (target, linkpath) over in that order.
    symlink: (target, p, cb) => reply('symlink', p, cb, fs.symlink(target, p).then(() => [0])),
    readlink: (p, cb) => reply('readlink', p, cb, fs.readlink(p).then((target) => [0, target])),
    mknod: (p, mode, dev, cb) => reply('mknod', p, cb, fs.mknod(p, mode, dev).then(() => [0])),
    link: (src, dst, cb) => reply('link', dst, cb, fs.link(src, dst).then(() => [0])),
  };
}
