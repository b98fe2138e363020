// The mount's file system: namespace calls, open handles and truncate, over the attribute cache, write buffers and read-ahead.
import { constants as fsConstants } from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { FuseStat } from 'fuse-native';
import { GfsError } from '../shared/errors.js';
import { typeOfMode } from '../shared/file-types.js';
import { baseName, maxNameBytes, parentOf } from '../shared/paths.js';
import { specialEntryTypes, type TimeArg } from '../shared/wire.js';
import { GfsClient } from './client.js';
import { fuseCaller } from './mount-binding.js';
import { AttrCache, toStat } from './mount-attrs.js';
import type { Handle } from './mount-handle.js';
import type { MountOptions } from './mount-options.js';
import { ReadAhead } from './mount-readahead.js';
import { WriteBuffers, throwPendingError } from './mount-writes.js';

const E = osConstants.errno;
const KiB = 1024;
const MiB = 1024 * KiB;
/** chown's "leave unchanged" ((uid_t)-1 as fuse-native hands it over). */
const unchangedId = 0xffffffff;
/**
 * How utimens times arrive. fuse-native turns a timespec into whole ms, so UTIME_NOW and UTIME_OMIT
 * (tv_sec 0, tv_nsec 2^30-1 and 2^30-2) both arrive as 1073 ms; a binding that tells them apart
 * sends these values instead (beyond any real time: year 287,000).
 */
export const fuseTimeNow = 2 ** 53 - 1;
export const fuseTimeOmit = 2 ** 53 - 2;
/** UTIME_NOW or UTIME_OMIT as stock fuse-native hands them over (1073 ms), where they cannot be told apart. */
const blurredSpecial = (ms: number) => ms >= 1073 && ms < 1074;

/**
 * The times a utimens call sets. Stock fuse-native hands over atime twice (its mtime argument is
 * atime): equal values are then taken for both (touch, touch -d), and a blurred UTIME_NOW/OMIT as
 * "now" for both; a binding that sends both times and the sentinels above gets exactly what was asked.
 */
export function utimensTimes(atimeMs: number, mtimeMs: number): { atime?: TimeArg; mtime?: TimeArg } {
  const one = (ms: number): TimeArg | undefined => {
    if (ms === fuseTimeOmit) return undefined;
    if (ms === fuseTimeNow || blurredSpecial(ms)) return 'now';
    return { ms: Math.floor(ms), ns: 0 };
  };
  const atime = one(atimeMs);
  const mtime = one(mtimeMs);
  return { ...(atime !== undefined ? { atime } : {}), ...(mtime !== undefined ? { mtime } : {}) };
}

export class GfsFuse {
  readonly client: GfsClient;
  private readonly remote: string;
  readonly attrs: AttrCache;
  private readonly writes: WriteBuffers;
  private readonly reads: ReadAhead;
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  /** Learned from the master at init. */
  chunkSizeBytes = 64 * MiB;
  private statfsCache?: { atMs: number; v: Record<string, number> };
  private readonly log: (line: string) => void;

  constructor(readonly o: MountOptions) {
    this.client = new GfsClient({ masterUrl: o.masterUrl });
    this.remote = o.remoteDir === '/' ? '' : o.remoteDir.replace(/\/+$/, '');
    this.attrs = new AttrCache(this.client, o.attrCacheMs ?? 500);
    this.writes = new WriteBuffers(this);
    this.reads = new ReadAhead(this, o.readAheadBytes ?? 8 * MiB);
    this.log = o.log ?? ((l) => process.stderr.write(l + '\n'));
  }

  /** Checks the remote directory and learns the chunk size. */
  async init(): Promise<void> {
    const root = await this.client.stat(this.remote || '/');
    if (root.type !== 'dir') throw new GfsError('NOT_A_DIRECTORY', `not a directory: ${this.remote || '/'}`);
    this.chunkSizeBytes = root.chunkSizeBytes;
  }

  private gfs(p: string): string {
    return p === '/' ? this.remote || '/' : this.remote + p;
  }

  /** End of data this mount holds for path but has not yet written. */
  private pendingEnd(path: string): number {
    let end = 0;
    for (const h of this.handles.values()) {
      if (h.path !== path) continue;
      if (h.wbuf && h.wbuf.len > 0) end = Math.max(end, h.wbuf.start + h.wbuf.len);
      for (const p of h.inflight) end = Math.max(end, p.end);
    }
    return end;
  }

  /**
   * The owner of what this mount creates: the calling process's uid and gid with the patched binding
   * (mount-binding.ts; read before the handler's first await), else the mount's own (without
   * allow_other only the mounting user can reach the mount, so it is the caller's uid then too).
   */
  private owner(): { uid: number; gid: number } {
    return fuseCaller() ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  }

  /** A name over 255 bytes is ENAMETOOLONG here, before any master call. */
  private checkName(p: string): void {
    if (Buffer.byteLength(baseName(p)) > maxNameBytes) throw -E.ENAMETOOLONG;
  }

  async getattr(p: string): Promise<FuseStat> {
    this.checkName(p);
    const path = this.gfs(p);
    const a = await this.attrs.stat(path);
    return toStat(a, a.type === 'file' ? Math.max(a.sizeBytes, this.pendingEnd(path)) : 0);
  }

  async readdir(p: string): Promise<string[]> {
    const path = this.gfs(p);
    const generation = this.attrs.generation;
    const entries = await this.client.list(path);
    this.attrs.fill(entries, generation);
    return ['.', '..', ...entries.map((e) => e.name)];
  }

  async statfs(): Promise<Record<string, number>> {
    if (this.statfsCache && Date.now() - this.statfsCache.atMs < 5_000) return this.statfsCache.v;
    const s = (await this.client.status()) as { files?: number; chunkservers?: { alive?: boolean; usedBytes?: number; freeBytes?: number }[] };
    let used = 0;
    let free = 0;
    for (const c of s.chunkservers ?? []) {
      if (c.alive === false) continue;
      used += c.usedBytes ?? 0;
      free += c.freeBytes ?? 0;
    }
    const frsize = MiB;
    const clamp = (n: number) => Math.min(0xffffffff, Math.max(0, Math.floor(n)));
    const v = {
      bsize: 128 * KiB,
      frsize,
      blocks: clamp((used + free) / frsize),
      bfree: clamp(free / frsize),
      bavail: clamp(free / frsize),
      files: clamp((s.files ?? 0) + 1_000_000),
      ffree: 1_000_000,
      favail: 1_000_000,
      namemax: 255,
    };
    this.statfsCache = { atMs: Date.now(), v };
    return v;
  }

  // ---- namespace ----
  /** mode: as the kernel hands it over, the umask already applied. */
  async mkdir(p: string, mode = 0o755): Promise<void> {
    this.checkName(p);
    const path = this.gfs(p);
    await this.client.mkdir(path, { mode: mode & 0o7777, ...this.owner() });
    this.forgetWithParent(path);
  }

  /** A change to path changes its directory's mtime and ctime too: neither is served from the cache afterwards. */
  private forgetWithParent(path: string): void {
    this.attrs.forget(path);
    this.attrs.forget(parentOf(path));
  }

  async symlink(target: string, p: string): Promise<void> {
    this.checkName(p);
    const path = this.gfs(p);
    await this.client.symlink(target, path, this.owner());
    this.forgetWithParent(path);
  }

  /** mknod(2), mkfifo, a socket bound to a path: a regular file is created as by open(O_CREAT|O_EXCL); the rest are metadata. */
  async mknod(p: string, mode: number, dev: number): Promise<void> {
    this.checkName(p);
    const path = this.gfs(p);
    const type = typeOfMode(mode);
    const special = specialEntryTypes.find((t) => t === type);
    if (type === 'file') await this.client.create(path, { exclusive: true, mode: mode & 0o7777, ...this.owner() });
    else if (special) await this.client.mknod(path, special, { mode: mode & 0o7777, ...this.owner(), ...(special === 'chardev' || special === 'blockdev' ? { rdev: dev >>> 0 } : {}) });
    else throw -E.EINVAL;
    this.forgetWithParent(path);
  }

  /** link(2): dst becomes another name of src's file; what this mount still holds for src is written first. */
  async link(src: string, dst: string): Promise<void> {
    this.checkName(dst);
    const s = this.gfs(src);
    const d = this.gfs(dst);
    await this.flushPath(s);
    try {
      await this.client.link(s, d);
    } finally {
      this.attrs.forget(s);
      this.forgetWithParent(d);
    }
  }

  async readlink(p: string): Promise<string> {
    const a = await this.attrs.stat(this.gfs(p));
    if (a.type !== 'symlink' || a.target === undefined) throw -E.EINVAL;
    return a.target;
  }

  async chmod(p: string, mode: number): Promise<void> {
    const path = this.gfs(p);
    try {
      await this.client.chmod(path, mode & 0o7777);
    } finally {
      this.attrs.forget(path);
    }
  }

  async chown(p: string, uid: number, gid: number): Promise<void> {
    const path = this.gfs(p);
    try {
      await this.client.chown(path, uid === unchangedId ? undefined : uid, gid === unchangedId ? undefined : gid);
    } finally {
      this.attrs.forget(path);
    }
  }

  async rmdir(p: string): Promise<void> {
    const path = this.gfs(p);
    const a = await this.attrs.stat(path);
    if (a.type !== 'dir') throw -E.ENOTDIR;
    if ((await this.client.list(path)).length > 0) throw -E.ENOTEMPTY;
    this.attrs.forget(path);
    await this.client.delete(path, { recursive: false, now: true });
    this.forgetWithParent(path);
  }

  async unlink(p: string): Promise<void> {
    const path = this.gfs(p);
    await this.flushPath(path);
    this.attrs.forget(path);
    await this.client.delete(path, { recursive: false, now: false });
    this.forgetWithParent(path);
    this.reads.drop(this.handles.values(), path);
  }

  /** rename(2) replaces an existing destination: a file by a file, an empty directory by a directory. */
  async rename(src: string, dst: string): Promise<void> {
    this.checkName(dst);
    const s = this.gfs(src);
    const d = this.gfs(dst);
    await this.flushAll();
    this.attrs.forgetTrees([s, d]);
    if (s === d) return;
    try {
      await this.client.rename(s, d);
    } catch (e) {
      if (!(e instanceof GfsError && e.code === 'EXISTS')) throw e;
      const [sa, da] = await Promise.all([this.client.stat(s), this.client.stat(d)]);
      // Two names of one file: rename(2) does nothing and succeeds.
      if (sa.ino !== undefined && sa.ino === da.ino) return;
      if (sa.type === 'file' && da.type === 'dir') throw -E.EISDIR;
      if (sa.type === 'dir' && da.type === 'file') throw -E.ENOTDIR;
      if (da.type === 'dir') {
        if ((await this.client.list(d)).length > 0) throw -E.ENOTEMPTY;
        await this.client.delete(d, { recursive: false, now: true });
      } else {
        await this.client.delete(d, { now: false });
      }
      await this.client.rename(s, d);
    } finally {
      this.attrs.forgetTrees([s, d]);
      this.attrs.forget(parentOf(s));
      this.attrs.forget(parentOf(d));
    }
    for (const h of this.handles.values()) {
      if (h.path === s) h.path = d;
      else if (h.path.startsWith(s + '/')) h.path = d + h.path.slice(s.length);
    }
  }

  // ---- handles ----
  private newHandle(path: string, append: boolean): Handle {
    while (this.handles.has(this.nextHandle)) this.nextHandle = this.nextHandle >= 0x7fffffff ? 1 : this.nextHandle + 1;
    const h: Handle = { id: this.nextHandle, path, append, inflight: new Set(), dirty: false, dirtyFirst: Infinity, dirtyLast: -1, windows: [], lastReadEnd: -1 };
    this.nextHandle = this.nextHandle >= 0x7fffffff ? 1 : this.nextHandle + 1;
    this.handles.set(h.id, h);
    return h;
  }

  private handle(fd: number, p: string): Handle {
    const h = this.handles.get(fd);
    if (!h) throw -E.EBADF;
    this.follow(h, p);
    return h;
  }

  /** The kernel names the file in every call, so a handle follows renames; "-" means it was unlinked while open. */
  private follow(h: Handle, p: string): void {
    if (typeof p === 'string' && p.startsWith('/')) h.path = this.gfs(p);
    else h.unlinked = true;
  }

  async open(p: string, flags: number): Promise<number> {
    const path = this.gfs(p);
    const a = await this.attrs.stat(path);
    if (a.type === 'dir' && (flags & 3) !== fsConstants.O_RDONLY) throw -E.EISDIR;
    return this.newHandle(path, (flags & fsConstants.O_APPEND) !== 0).id;
  }

  /** mode: as the kernel hands it over (type bits and all), the umask already applied. */
  async create(p: string, mode = 0o644): Promise<number> {
    this.checkName(p);
    const path = this.gfs(p);
    this.attrs.forget(path);
    try {
      this.attrs.created(path, await this.client.create(path, { exclusive: true, mode: mode & 0o7777, ...this.owner() }));
      this.attrs.forget(parentOf(path));
    } catch (e) {
      // The kernel asks for create only after a lookup found nothing; another
      // opener may have created it meanwhile (`>>` from many processes).
      // fuse-native does not pass O_EXCL, so treat that as an open.
      if (!(e instanceof GfsError && e.code === 'EXISTS')) throw e;
      const a = await this.client.stat(path);
      if (a.type === 'dir') throw -E.EISDIR;
      this.forgetWithParent(path);
    }
    return this.newHandle(path, false).id;
  }

  async release(p: string, fd: number): Promise<void> {
    const h = this.handles.get(fd);
    if (!h) return;
    try {
      this.follow(h, p);
      if (h.dirty || h.wbuf || h.inflight.size) await this.writes.flushHandle(h, true);
      await this.settleTimes(h);
    } catch (e) {
      this.log(`gfs mount: release ${h.path}: ${(e as Error)?.message ?? e}`);
    } finally {
      this.handles.delete(fd);
    }
  }

  /** flush and fsync: written data reaches every replica's disk. */
  async flush(p: string, fd: number): Promise<void> {
    const h = this.handle(fd, p);
    await this.writes.flushHandle(h, true);
    await this.settleTimes(h);
  }

  /** After writes through h: the file's mtime and ctime move to now (the master learns of writes only at allocation). */
  private async settleTimes(h: Handle): Promise<void> {
    if (!h.timesDue || h.unlinked) return;
    h.timesDue = false;
    await this.client.setattr(h.path, { mtime: 'now' });
    this.attrs.forget(h.path);
  }

  /** Sends and waits for every handle's buffered writes to path (no sync). */
  private async flushPath(path: string): Promise<void> {
    const hs = [...this.handles.values()].filter((h) => h.path === path && (h.wbuf || h.inflight.size));
    await Promise.all(hs.map((h) => this.writes.flushHandle(h, false).catch((e) => void (h.error ??= e))));
  }

  async flushAll(sync = false): Promise<void> {
    await Promise.all([...this.handles.values()].map((h) => this.writes.flushHandle(h, sync && h.dirty).catch((e) => void (h.error ??= e))));
  }

  get openHandles(): number {
    return this.handles.size;
  }

  async write(p: string, fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fd, p);
    throwPendingError(h);
    this.reads.drop(this.handles.values(), h.path);
    h.dirty = true;
    h.timesDue = true;
    if (!h.append) return this.writes.write(h, buf, len, pos);
    await this.flushPath(h.path);
    return this.writes.append(h, Buffer.from(buf.subarray(0, len)));
  }

  async read(p: string, fd: number, out: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fd, p);
    if (this.pendingEnd(h.path) > 0) await this.flushPath(h.path);
    return this.reads.read(h, out, len, pos);
  }

  async truncate(p: string, size: number, fd?: number): Promise<void> {
    const path = this.gfs(p);
    if (fd !== undefined && this.handles.has(fd)) this.handle(fd, p);
    await this.flushPath(path);
    this.attrs.forget(path);
    this.reads.drop(this.handles.values(), path);
    try {
      await this.client.truncate(path, size);
    } finally {
      this.reads.drop(this.handles.values(), path);
    }
    this.attrs.forget(path);
  }

  /** Explicit times, UTIME_NOW and UTIME_OMIT as far as the binding tells them (utimensTimes); ctime moves to now. */
  async utimens(p: string, atimeMs: number, mtimeMs: number): Promise<void> {
    const path = this.gfs(p);
    // Buffered writes first (their flush would move mtime past the times set here); they are then settled.
    await this.flushPath(path);
    for (const h of this.handles.values()) if (h.path === path) h.timesDue = false;
    try {
      await this.client.setattr(path, utimensTimes(atimeMs, mtimeMs));
    } finally {
      this.attrs.forget(path);
    }
  }
}
