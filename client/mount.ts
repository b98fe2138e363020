import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync, constants as fsConstants } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import type FuseNative from 'fuse-native';
import type { FuseOps, FuseStat } from 'fuse-native';
import { GfsError } from '../shared/errors.js';
import { GfsClient } from './client.js';

// `gfs mount REMOTE_DIR MOUNTPOINT`: a FUSE file system (fuse-native over
// the system's libfuse2) backed by the client library.
//
// - Attributes come from the master (`stat`, which asks the replicas for the
//   last chunk's length). The kernel caches them for attrTimeoutS and this
//   process for attrCacheMs more; while a handle has unflushed writes the
//   size includes them.
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
// - truncate to 0 deletes and recreates the file with the same replication;
//   extension writes one zero byte at the new end (a hole before it reads as
//   zeros); shrinking to a non-zero size is EOPNOTSUPP. chmod/chown, links,
//   special files and times other than "now" on a fresh file are EPERM.
// - The process stays in the foreground until the file system is unmounted
//   (`gfs umount`, fusermount -u) or it gets SIGINT/SIGTERM, when it flushes
//   what it holds and unmounts.

const require = createRequire(import.meta.url);
const E = osConstants.errno;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const KiB = 1024;
const MiB = 1024 * KiB;

export const fuseInstallHint = 'install the Debian packages libfuse2 and fuse (apt-get install libfuse2 fuse)';

export interface MountOptions {
  masterUrl: string;
  remoteDir: string;
  mountpoint: string;
  debug?: boolean;
  allowOther?: boolean;
  /** Kernel attribute/entry cache in seconds (default 1). */
  attrTimeoutS?: number;
  /** Our own attribute cache in ms (default 500). */
  attrCacheMs?: number;
  /** Read-ahead window for sequential reads (default 8 MiB). */
  readAheadBytes?: number;
  /** Called once the file system is mounted. */
  onMounted?: () => void;
  log?: (line: string) => void;
}

/** Why FUSE cannot be used here, or undefined when it can. */
export function fuseUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `gfs mount needs Linux with FUSE (this is ${process.platform})`;
  if (!existsSync('/dev/fuse')) return `FUSE is not available: /dev/fuse is missing; ${fuseInstallHint} and load the fuse kernel module (modprobe fuse)`;
  try {
    require('fuse-native');
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    return `FUSE is not available: fuse-native cannot load (${why}); ${fuseInstallHint}`;
  }
  return undefined;
}

function loadFuse(): typeof FuseNative {
  const why = fuseUnavailable();
  if (why) throw new Error(why);
  return require('fuse-native') as typeof FuseNative;
}

/** GfsError codes (and node errors) to negative errnos for FUSE. */
export function toErrno(e: unknown): number {
  if (typeof e === 'number') return e < 0 ? e : -e;
  if (e instanceof GfsError) {
    switch (e.code) {
      case 'NOT_FOUND':
        return -E.ENOENT;
      case 'EXISTS':
        return -E.EEXIST;
      case 'NOT_EMPTY':
        return -E.ENOTEMPTY;
      case 'IS_A_DIRECTORY':
        return -E.EISDIR;
      case 'NOT_A_DIRECTORY':
        return -E.ENOTDIR;
      case 'INVALID_PATH':
      case 'BAD_REQUEST':
        return -E.EINVAL;
      case 'NO_SPACE':
        return -E.ENOSPC;
      case 'RECORD_TOO_LARGE':
      case 'PAYLOAD_TOO_LARGE':
        return -E.EFBIG;
      default:
        return -E.EIO;
    }
  }
  return -E.EIO;
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

interface Attr {
  type: 'file' | 'dir';
  sizeBytes: number;
  replication: number;
  mtimeMs: number;
  ctimeMs: number;
}

interface Piece {
  start: number;
  end: number;
  done: Promise<void>;
}

interface Window {
  start: number;
  size: number;
  data: Promise<Buffer>;
  /** Set once data resolved. */
  got?: Buffer;
  /** When it first served a read: it is trusted for readTtlMs from then on. */
  usedAtMs?: number;
}

interface Handle {
  id: number;
  path: string;
  append: boolean;
  /** Positional write buffer: bytes [start, start+len) of the piece [start, start+cap); buf grows as needed. */
  wbuf?: { start: number; cap: number; buf: Buffer; len: number };
  inflight: Set<Piece>;
  /** First error of a background write, reported by the next write/flush. */
  error?: unknown;
  /** Written (or appended) since the last sync. */
  dirty: boolean;
  /** Chunk indexes written since the last sync (flush syncs only these). */
  dirtyFirst: number;
  dirtyLast: number;
  /** The file size last learned for reading, and when. */
  knownSize?: { sizeBytes: number; atMs: number };
  /** Unlinked while open (the kernel then names it "-"). */
  unlinked?: boolean;
  /** Read-ahead windows, in file order. */
  windows: Window[];
  lastReadEnd: number;
}

const readTtlMs = 1_000;

export class GfsFuse {
  readonly client: GfsClient;
  private readonly remote: string;
  private readonly attrCacheMs: number;
  private readonly readAheadBytes: number;
  private readonly attrs = new Map<string, { attr: Attr; atMs: number }>();
  private readonly statting = new Map<string, Promise<Attr>>();
  private attrGen = 0;
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  private chunkSizeBytes = 64 * MiB;
  private statfsCache?: { atMs: number; v: Record<string, number> };
  private readonly log: (line: string) => void;

  constructor(readonly o: MountOptions) {
    this.client = new GfsClient({ masterUrl: o.masterUrl });
    this.remote = o.remoteDir === '/' ? '' : o.remoteDir.replace(/\/+$/, '');
    this.attrCacheMs = o.attrCacheMs ?? 500;
    this.readAheadBytes = o.readAheadBytes ?? 8 * MiB;
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

  private get writePieceBytes(): number {
    return Math.min(this.client.pieceBytes, this.chunkSizeBytes);
  }

  // ---- attributes ----
  private forget(path?: string): void {
    this.attrGen++; // a stat already under way must not cache what it learned before this change
    if (path === undefined) {
      this.attrs.clear();
      this.statting.clear();
    } else {
      this.attrs.delete(path);
      this.statting.delete(path);
    }
  }

  private async stat(path: string): Promise<Attr> {
    const c = this.attrs.get(path);
    if (c && Date.now() - c.atMs < this.attrCacheMs) return c.attr;
    let p = this.statting.get(path);
    if (!p) {
      const atMs = Date.now();
      const gen = this.attrGen;
      const q: Promise<Attr> = this.client.stat(path).then((i) => {
        const attr: Attr = { type: i.type, sizeBytes: i.sizeBytes, replication: i.replication, mtimeMs: i.mtimeMs, ctimeMs: i.ctimeMs };
        if (this.attrGen === gen) this.attrs.set(path, { attr, atMs });
        return attr;
      });
      p = q;
      q.finally(() => {
        if (this.statting.get(path) === q) this.statting.delete(path);
      }).catch(() => undefined);
      this.statting.set(path, q);
    }
    return p;
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

  private toStat(a: Attr, size: number): FuseStat {
    const dir = a.type === 'dir';
    return {
      mode: dir ? S_IFDIR | 0o755 : S_IFREG | 0o644,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      size: dir ? 4096 : size,
      nlink: dir ? 2 : 1,
      blksize: 128 * KiB,
      blocks: Math.ceil((dir ? 4096 : size) / 512),
      atime: a.mtimeMs,
      mtime: a.mtimeMs,
      ctime: a.ctimeMs || a.mtimeMs,
    };
  }

  async getattr(p: string): Promise<FuseStat> {
    const path = this.gfs(p);
    const a = await this.stat(path);
    return this.toStat(a, a.type === 'file' ? Math.max(a.sizeBytes, this.pendingEnd(path)) : 0);
  }

  async readdir(p: string): Promise<string[]> {
    const path = this.gfs(p);
    const entries = await this.client.list(path);
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
    this.forget(path);
  }

  async rmdir(p: string): Promise<void> {
    const path = this.gfs(p);
    const a = await this.stat(path);
    if (a.type !== 'dir') throw -E.ENOTDIR;
    if ((await this.client.list(path)).length > 0) throw -E.ENOTEMPTY;
    this.forget(path);
    await this.client.delete(path, { recursive: false, now: true });
    this.forget(path);
  }

  async unlink(p: string): Promise<void> {
    const path = this.gfs(p);
    await this.flushPath(path);
    this.forget(path);
    await this.client.delete(path, { recursive: false, now: false });
    this.forget(path);
    this.dropReadAhead(path);
  }

  /** rename(2) replaces an existing destination: a file by a file, an empty directory by a directory. */
  async rename(src: string, dst: string): Promise<void> {
    const s = this.gfs(src);
    const d = this.gfs(dst);
    await this.flushAll();
    this.forget();
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
      this.forget();
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
    const a = await this.stat(path);
    if (a.type === 'dir' && (flags & 3) !== fsConstants.O_RDONLY) throw -E.EISDIR;
    return this.newHandle(path, (flags & fsConstants.O_APPEND) !== 0).id;
  }

  async create(p: string): Promise<number> {
    const path = this.gfs(p);
    this.forget(path);
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
    this.forget(path);
    return this.newHandle(path, false).id;
  }

  async release(p: string, fd: number): Promise<void> {
    const h = this.handles.get(fd);
    if (!h) return;
    try {
      this.follow(h, p);
      if (h.dirty || h.wbuf || h.inflight.size) await this.flushHandle(h, true);
    } catch (e) {
      this.log(`gfs mount: release ${h.path}: ${(e as Error)?.message ?? e}`);
    } finally {
      this.handles.delete(fd);
    }
  }

  /** flush and fsync: written data reaches every replica's disk. */
  async flush(p: string, fd: number): Promise<void> {
    const h = this.handle(fd, p);
    await this.flushHandle(h, true);
  }

  private async flushHandle(h: Handle, sync: boolean): Promise<void> {
    this.sendBuffer(h);
    await Promise.allSettled([...h.inflight].map((x) => x.done));
    if (h.error !== undefined) {
      const e = h.error;
      h.error = undefined;
      throw e;
    }
    if (h.unlinked) h.dirty = false; // gone: nothing left to make durable
    if (sync && h.dirty) {
      const range = h.dirtyLast >= h.dirtyFirst ? { startIndex: h.dirtyFirst, count: h.dirtyLast - h.dirtyFirst + 1 } : undefined;
      h.dirtyFirst = Infinity;
      h.dirtyLast = -1;
      h.dirty = false;
      try {
        await this.client.sync(h.path, range);
      } catch (e) {
        h.dirty = true;
        if (range) this.markDirty(h, range.startIndex, range.startIndex + range.count - 1);
        throw e;
      }
    }
  }

  /** Sends and waits for every handle's buffered writes to path (no sync). */
  private async flushPath(path: string): Promise<void> {
    const hs = [...this.handles.values()].filter((h) => h.path === path && (h.wbuf || h.inflight.size));
    await Promise.all(hs.map((h) => this.flushHandle(h, false).catch((e) => void (h.error ??= e))));
  }

  async flushAll(sync = false): Promise<void> {
    await Promise.all([...this.handles.values()].map((h) => this.flushHandle(h, sync && h.dirty).catch((e) => void (h.error ??= e))));
  }

  get openHandles(): number {
    return this.handles.size;
  }

  // ---- writes ----
  private markDirty(h: Handle, firstIndex: number, lastIndex: number): void {
    h.dirty = true;
    h.dirtyFirst = Math.min(h.dirtyFirst, firstIndex);
    h.dirtyLast = Math.max(h.dirtyLast, lastIndex);
  }

  /** End of the write piece that holds `off`: pieces never straddle a chunk. */
  private pieceEnd(off: number): number {
    const cs = this.chunkSizeBytes;
    const chunkStart = Math.floor(off / cs) * cs;
    const pb = this.writePieceBytes;
    return chunkStart + Math.min(cs, (Math.floor((off - chunkStart) / pb) + 1) * pb);
  }

  private sendBuffer(h: Handle): void {
    const w = h.wbuf;
    h.wbuf = undefined;
    if (!w || w.len === 0) return;
    const start = w.start;
    const data = w.buf.subarray(0, w.len);
    const end = start + data.length;
    const overlapping = [...h.inflight].filter((x) => x.start < end && start < x.end).map((x) => x.done);
    const path = h.path;
    const cs = this.chunkSizeBytes;
    const piece: Piece = { start, end, done: Promise.resolve() };
    this.markDirty(h, Math.floor(start / cs), Math.floor(start / cs));
    piece.done = (async () => {
      // Overlapping earlier writes land first.
      if (overlapping.length) await Promise.allSettled(overlapping);
      await this.client.writePiece(path, Math.floor(start / cs), start % cs, data);
    })()
      .catch((e) => {
        h.error ??= e;
      })
      .finally(() => {
        h.inflight.delete(piece);
        this.forget(path);
      });
    h.inflight.add(piece);
  }

  async write(p: string, fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fd, p);
    if (h.error !== undefined) {
      const e = h.error;
      h.error = undefined;
      throw e;
    }
    this.dropReadAhead(h.path);
    h.dirty = true;
    if (h.append) return this.appendWrite(h, Buffer.from(buf.subarray(0, len)));
    if (h.wbuf && h.wbuf.start + h.wbuf.len !== pos) this.sendBuffer(h);
    let at = 0;
    while (at < len) {
      if (!h.wbuf) {
        const start = pos + at;
        const cap = this.pieceEnd(start) - start;
        h.wbuf = { start, cap, buf: Buffer.allocUnsafe(Math.min(cap, Math.max(len - at, 256 * KiB))), len: 0 };
      }
      const w = h.wbuf;
      const n = Math.min(len - at, w.cap - w.len);
      if (w.len + n > w.buf.length) {
        // Grow geometrically up to the piece size: small files do not hold whole pieces.
        const bigger = Buffer.allocUnsafe(Math.min(w.cap, Math.max(w.len + n, w.buf.length * 4)));
        w.buf.copy(bigger, 0, 0, w.len);
        w.buf = bigger;
      }
      buf.copy(w.buf, w.len, at, at + n);
      w.len += n;
      at += n;
      if (w.len === w.cap) this.sendBuffer(h);
    }
    // Bounded memory: at most `concurrency` pieces in flight per handle.
    while (h.inflight.size >= this.client.concurrency) await Promise.race([...h.inflight].map((x) => x.done));
    return len;
  }

  private async appendWrite(h: Handle, data: Buffer): Promise<number> {
    await this.flushPath(h.path);
    // One write() is one record; a write larger than the record limit (a quarter chunk) is split.
    const limit = Math.floor(this.chunkSizeBytes / 4);
    for (let at = 0; at < data.length; at += limit) {
      const off = await this.client.appendRaw(h.path, data.subarray(at, at + limit));
      this.markDirty(h, Math.floor(off / this.chunkSizeBytes), Math.floor(off / this.chunkSizeBytes));
    }
    this.forget(h.path);
    return data.length;
  }

  async truncate(p: string, size: number, fd?: number): Promise<void> {
    const path = this.gfs(p);
    if (fd !== undefined && this.handles.has(fd)) this.handle(fd, p);
    await this.flushPath(path);
    this.forget(path);
    this.dropReadAhead(path);
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
    this.forget(path);
  }

  /** Only "set to now" on a file changed in the last few seconds is true already; gfs keeps its own times. */
  async utimens(p: string, atimeMs: number): Promise<void> {
    const path = this.gfs(p);
    const a = await this.stat(path);
    // fuse-native hands over atime twice; UTIME_NOW/UTIME_OMIT arrive as ~1073 ms.
    const now = atimeMs < 2_000 || Math.abs(atimeMs - Date.now()) < 5_000;
    if (now && Date.now() - a.mtimeMs < 10_000) return;
    throw -E.EPERM;
  }

  // ---- reads ----
  private dropReadAhead(path: string): void {
    for (const h of this.handles.values()) {
      if (h.path !== path) continue;
      h.windows = [];
      h.knownSize = undefined;
    }
  }

  /**
   * Bytes [start, start+size) of path, short at the end of the file. Like
   * GfsClient.read, but the file's size is learned again only when the
   * window reaches past the size last learned for this handle or that is
   * older than readTtlMs, so a sequential reader costs no round trip for it
   * per window.
   */
  private async readRange(h: Handle, path: string, start: number, size: number): Promise<Buffer> {
    let known = h.knownSize;
    if (!known || start + size > known.sizeBytes || Date.now() - known.atMs > readTtlMs) {
      const atMs = Date.now();
      // Past what the client knows, it asks a replica of the last chunk (the master only when that chunk is full).
      const f = await this.client.extent(path, start + size);
      known = h.knownSize = { sizeBytes: f.sizeBytes, atMs };
    }
    const end = Math.min(start + size, known.sizeBytes);
    if (end <= start) return Buffer.alloc(0);
    const cs = this.chunkSizeBytes;
    // Locations for this window and those a sequential reader will want next, in one master call.
    const first = Math.floor(start / cs);
    await this.client.locate(path, first, Math.floor((end - 1) / cs) - first + 1 + Math.ceil((this.client.concurrency * this.readAheadBytes) / cs));
    const out = Buffer.alloc(end - start);
    // readPiece answers whole pieces (holes as zeros) except in the last chunk, whose replicas may hold less than the size said: the data ends there.
    let dataEnd = out.length;
    const jobs: Promise<void>[] = [];
    for (let at = start; at < end; ) {
      const index = Math.floor(at / cs);
      const inChunk = at % cs;
      const len = Math.min(end - at, cs - inChunk, this.client.pieceBytes);
      const to = at - start;
      jobs.push(
        this.client.readPiece(path, index, inChunk, len).then((b) => {
          b.copy(out, to, 0, Math.min(b.length, len));
          if (b.length < len) dataEnd = Math.min(dataEnd, to + b.length);
        }),
      );
      at += len;
    }
    await Promise.all(jobs);
    return dataEnd === out.length ? out : out.subarray(0, dataEnd);
  }

  private fetch(h: Handle, path: string, start: number, size: number): Window {
    const w: Window = { start, size, data: this.readRange(h, path, start, size) };
    w.data.then(
      (b) => (w.got = b),
      () => undefined,
    );
    return w;
  }

  async read(p: string, fd: number, out: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fd, p);
    const path = h.path;
    if (this.pendingEnd(path) > 0) await this.flushPath(path);
    const sequential = pos === h.lastReadEnd || pos === 0;
    const win = this.readAheadBytes;
    const now = Date.now();
    h.windows = h.windows.filter((w) => (w.usedAtMs === undefined || now - w.usedAtMs < readTtlMs) && w.start + w.size > pos - win);
    let done = 0;
    const fetchedNow = new Set<Window>();
    while (done < len) {
      const at = pos + done;
      let w = h.windows.find((x) => at >= x.start && at < x.start + x.size);
      if (!w) {
        w = this.fetch(h, path, at, sequential ? win : Math.max(len - done, 128 * KiB));
        fetchedNow.add(w);
        h.windows = h.windows.filter((x) => x.start > at);
        h.windows.unshift(w);
      }
      let data: Buffer;
      try {
        data = await w.data;
      } catch (e) {
        h.windows = h.windows.filter((x) => x !== w);
        throw e;
      }
      const off = at - w.start;
      if (off >= data.length) {
        // Past what existed when fetched: end of file then, maybe not now.
        h.windows = h.windows.filter((x) => x !== w);
        if (!fetchedNow.has(w)) continue;
        break;
      }
      w.usedAtMs ??= now;
      const n = data.copy(out, done, off, Math.min(data.length, off + (len - done)));
      done += n;
      if (data.length < w.size && off + n >= data.length) {
        // A short window ends at the then end of the file: fetch again next time.
        h.windows = h.windows.filter((x) => x !== w);
        break;
      }
    }
    h.lastReadEnd = pos + done;
    if (sequential && done > 0) this.readAhead(h, path, pos + done);
    return done;
  }

  /** Keeps up to `depth` full windows ahead of a sequential reader in flight. */
  private readAhead(h: Handle, path: string, from: number, depth = this.client.concurrency): void {
    const win = this.readAheadBytes;
    let last = h.windows.find((x) => from >= x.start && from < x.start + x.size);
    if (!last) return;
    for (let i = 0; i < depth; i++) {
      if (last.got && last.got.length < last.size) return; // end of file
      const next: Window | undefined = h.windows.find((x) => x.start === last!.start + last!.size);
      if (next) {
        last = next;
        continue;
      }
      const w = this.fetch(h, path, last.start + last.size, win);
      w.data.catch(() => undefined);
      h.windows.push(w);
      last = w;
    }
  }
}

/** FUSE operations bound to a GfsFuse: each async result goes to the callback, errors as negative errnos. */
function fuseOps(fs: GfsFuse, debug: boolean, log: (l: string) => void): FuseOps {
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
    create: (p, _mode, cb) => reply('create', p, cb, fs.create(p).then((fd) => [0, fd])),
    read: (p, fd, buf, len, pos, cb) => reply('read', p, cb, fs.read(p, fd, buf, len, pos).then((n) => [n])),
    write: (p, fd, buf, len, pos, cb) => reply('write', p, cb, fs.write(p, fd, buf, len, pos).then((n) => [n])),
    flush: (p, fd, cb) => reply('flush', p, cb, fs.flush(p, fd).then(() => [0])),
    fsync: (p, _datasync, fd, cb) => reply('fsync', p, cb, fs.flush(p, fd).then(() => [0])),
    release: (p, fd, cb) => reply('release', p, cb, fs.release(p, fd).then(() => [0])),
    truncate: (p, size, cb) => reply('truncate', p, cb, fs.truncate(p, size).then(() => [0])),
    ftruncate: (p, fd, size, cb) => reply('ftruncate', p, cb, fs.truncate(p, size, fd).then(() => [0])),
    unlink: (p, cb) => reply('unlink', p, cb, fs.unlink(p).then(() => [0])),
    rename: (src, dst, cb) => reply('rename', src, cb, fs.rename(src, dst).then(() => [0])),
    mkdir: (p, _mode, cb) => reply('mkdir', p, cb, fs.mkdir(p).then(() => [0])),
    rmdir: (p, cb) => reply('rmdir', p, cb, fs.rmdir(p).then(() => [0])),
    utimens: (p, atime, _mtime, cb) => reply('utimens', p, cb, fs.utimens(p, atime).then(() => [0])),
    // gfs has no owners, permissions, links or special files.
    chmod: (_p, _mode, cb) => cb(-E.EPERM),
    chown: (_p, _u, _g, cb) => cb(-E.EPERM),
    mknod: (_p, _mode, _dev, cb) => cb(-E.EPERM),
    link: (_s, _d, cb) => cb(-E.EPERM),
    symlink: (_s, _d, cb) => cb(-E.EPERM),
    readlink: (_p, cb) => cb(-E.EINVAL),
  };
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

  await new Promise<void>((resolve) => {
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
