// Minimal types for fuse-native (the package ships none): only what
// client/mount.ts uses. Callbacks take a result first: 0 or a negative errno,
// or for read/write the byte count. The package is CommonJS (module.exports =
// Fuse); mount.ts loads it with createRequire and uses these types only
// (`import type`), so the default export below is just the class's type.
declare module 'fuse-native' {
  export type Callback = (result: number, ...values: unknown[]) => void;

  export interface FuseStat {
    mode: number;
    uid?: number;
    gid?: number;
    size?: number;
    nlink?: number;
    /** A device node's number (st_rdev). */
    rdev?: number;
    blksize?: number;
    blocks?: number;
    atime?: Date | number;
    mtime?: Date | number;
    ctime?: Date | number;
  }

  export interface FuseStatfs {
    bsize: number;
    frsize: number;
    blocks: number;
    bfree: number;
    bavail: number;
    files: number;
    ffree: number;
    favail: number;
    fsid?: number;
    flag?: number;
    namemax: number;
  }

  export interface FuseOps {
    init?(cb: Callback): void;
    statfs?(path: string, cb: Callback): void;
    getattr?(path: string, cb: Callback): void;
    readdir?(path: string, cb: Callback): void;
    open?(path: string, flags: number, cb: Callback): void;
    create?(path: string, mode: number, cb: Callback): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Callback): void;
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Callback): void;
    flush?(path: string, fd: number, cb: Callback): void;
    fsync?(path: string, datasync: number, fd: number, cb: Callback): void;
    release?(path: string, fd: number, cb: Callback): void;
    truncate?(path: string, size: number, cb: Callback): void;
    ftruncate?(path: string, fd: number, size: number, cb: Callback): void;
    unlink?(path: string, cb: Callback): void;
    rename?(src: string, dst: string, cb: Callback): void;
    mkdir?(path: string, mode: number, cb: Callback): void;
    rmdir?(path: string, cb: Callback): void;
    utimens?(path: string, atime: number, mtime: number, cb: Callback): void;
    chmod?(path: string, mode: number, cb: Callback): void;
    chown?(path: string, uid: number, gid: number, cb: Callback): void;
    mknod?(path: string, mode: number, dev: number, cb: Callback): void;
    link?(src: string, dst: string, cb: Callback): void;
    symlink?(src: string, dst: string, cb: Callback): void;
    readlink?(path: string, cb: Callback): void;
  }

  export interface FuseOptions {
    force?: boolean;
    mkdir?: boolean;
    debug?: boolean;
    allowOther?: boolean;
    fsname?: string;
    subtype?: string;
    attrTimeout?: number;
    entryTimeout?: number;
    /** Per-operation timeout in ms; false for none (default 15 s). */
    timeout?: number | false;
  }

  export default class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    /** The `-o a,b,c` string handed to libfuse. */
    _fuseOptions(): string;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
  }

}
