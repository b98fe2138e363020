// The mount's file system: namespace calls, open handles and truncate, over the attribute cache, write buffers and read-ahead.
import { constants as fsConstants } from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { FuseStat } from 'fuse-native';
import { GfsError } from '../shared/errors.js';
import { GfsClient } from './client.js';
import { AttrCache, toStat } from './mount-attrs.js';
import type { Handle } from './mount-handle.js';
import type { MountOptions } from './mount-options.js';
import { ReadAhead } from './mount-readahead.js';
import { WriteBuffers, throwPendingError } from './mount-writes.js';

const E = osConstants.errno;
const KiB = 1024;
const MiB = 1024 * KiB;

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

  async getattr(p: string): Promise<FuseStat> {
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
  async mkdir(p: string): Promise<void> {
    const path = this.gfs(p);
    await this.client.mkdir(path);
    this.attrs.forget(path);
  }

  async rmdir(p: string): Promise<void> {
    const path = this.gfs(p);
    const a = await this.attrs.stat(path);
    if (a.type !== 'dir') throw -E.ENOTDIR;
    if ((await this.client.list(path)).length > 0) throw -E.ENOTEMPTY;
    this.attrs.forget(path);
    await this.client.delete(path, { recursive: false, now: true });
    this.attrs.forget(path);
  }

  async unlink(p: string): Promise<void> {
    const path = this.gfs(p);
    await this.flushPath(path);
    this.attrs.forget(path);
    await this.client.delete(path, { recursive: false, now: false });
    this.attrs.forget(path);
    this.reads.drop(this.handles.values(), path);
  }

  /** rename(2) replaces an existing destination: a file by a file, an empty directory by a directory. */
  async rename(src: string, dst: string): Promise<void> {
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

  async create(p: string): Promise<number> {
    const path = this.gfs(p);
    this.attrs.forget(path);
    try {
      await this.client.create(path, { exclusive: true });
    } catch (e) {
      // The kernel asks for create only after a lookup found nothing; another
      // opener may have created it meanwhile (`>>` from many processes).
      // fuse-native does not pass O_EXCL, so treat that as an open.
      if (!(e instanceof GfsError && e.code === 'EXISTS')) throw e;
      const a = await this.client.stat(path);
      if (a.type === 'dir') throw -E.EISDIR;
    }
    this.attrs.forget(path);
    return this.newHandle(path, false).id;
  }

  async release(p: string, fd: number): Promise<void> {
    const h = this.handles.get(fd);
    if (!h) return;
    try {
      this.follow(h, p);
      if (h.dirty || h.wbuf || h.inflight.size) await this.writes.flushHandle(h, true);
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
    const a = await this.client.stat(path);
    if (a.type === 'dir') throw -E.EISDIR;
    if (size === a.sizeBytes) return;
    if (size === 0) {
      await this.client.delete(path, { now: true });
      await this.client.create(path, { replication: a.replication, exclusive: true });
    } else if (size > a.sizeBytes) {
      const last = size - 1;
      await this.client.writePiece(path, Math.floor(last / this.chunkSizeBytes), last % this.chunkSizeBytes, Buffer.alloc(1));
    } else {
      throw -E.EOPNOTSUPP;
    }
    this.attrs.forget(path);
  }

  /** Only "set to now" on a file changed in the last few seconds is true already; gfs keeps its own times. */
  async utimens(p: string, atimeMs: number): Promise<void> {
    const path = this.gfs(p);
    const a = await this.attrs.stat(path);
    // fuse-native hands over atime twice; UTIME_NOW/UTIME_OMIT arrive as ~1073 ms.
    const now = atimeMs < 2_000 || Math.abs(atimeMs - Date.now()) < 5_000;
    if (now && Date.now() - a.mtimeMs < 10_000) return;
    throw -E.EPERM;
  }
}
