import { pooledRandomBytes } from '../shared/random-pool.js';
import { nanoid } from 'nanoid';
import { defaults } from '../shared/config.js';
import { GfsError } from '../shared/errors.js';
import { setRpcSelf } from '../shared/rpc.js';
import { maxBatchOps, maxFileSizeBytes } from '../shared/wire.js';
import type { BatchAnswer, BatchOp, BatchResult, ChunksAnswer, FileInfo, ListEntry, ReplicaRef, SetattrReq, SpecialEntryType, TimeArg, WriteAnswer } from '../shared/wire.js';
import { appendRaw, appendRawBatch } from './append-path.js';
import { RecordAppender, type AppenderOptions } from './appender.js';
import { ChunkAccess } from './chunk-access.js';
import type { DataContext } from './data-context.js';
import type { CachedFile } from './location-cache.js';
import { MasterCalls } from './master-calls.js';
import { read, readPiece, readReplica, type ReadCursor } from './read-path.js';
import type { RetryOptions } from './retry.js';
import { runLimited } from './run-limited.js';
import { push, setChunkLength, sync, write, writePiece } from './write-path.js';
import { reportOf, type ReplicationReport } from './write-report.js';

export type { CachedFile } from './location-cache.js';
export type { ReplicationReport } from './write-report.js';
export { closestFirst } from './replica-read.js';
export { appendRecord, maxRecordPayloadBytes, readRecords, type RecordRead } from './records.js';
export { RecordAppender, type AppenderOptions } from './appender.js';

// The client library (client/ is the client role: library, CLI, mount; it
// imports shared/ only). Metadata goes to the master (client/master-calls.ts);
// data goes straight to chunkservers: writes (write-path.ts), record appends
// (append-path.ts), reads (read-path.ts). Chunk locations, file sizes and
// leases are cached with expiry and dropped on error (chunk-access.ts);
// mutations are retried with the same request id, so a primary that already
// applied one answers with its earlier result. GfsClient is the one object
// that holds them together; client/index.ts is the fs-shaped API on top.

export interface ClientOptions {
  /** The master, or `URL,URL,...`: the master and its shadows (reads fall back to a shadow; mutations follow a promotion). */
  masterUrl: string;
  clientId?: string;
  /** How long cached chunk locations are trusted. */
  locationTtlMs?: number;
  /** Files whose locations are cached at most (least recently used dropped first). */
  locationCacheFiles?: number;
  /** Largest piece pushed and mutated at once. */
  pieceBytes?: number;
  /** Pieces in flight at once for large reads and writes. */
  concurrency?: number;
  retry?: Partial<RetryOptions>;
}

/** The mode and owner a creation sets. */
export interface Owner {
  mode?: number;
  uid?: number;
  gid?: number;
}

/** A time for utimes: a Date, ms since the epoch (a fraction is kept to the ns), {ms, ns} (ns within the ms), or 'now'. */
export type TimeInput = Date | number | { ms: number; ns: number } | 'now';

function owner(o: Owner): Owner {
  return { ...(o.mode !== undefined ? { mode: o.mode } : {}), ...(o.uid !== undefined ? { uid: o.uid } : {}), ...(o.gid !== undefined ? { gid: o.gid } : {}) };
}

function timeArg(t: TimeInput): TimeArg {
  if (t === 'now') return 'now';
  if (typeof t === 'object' && !(t instanceof Date)) return t;
  const ms = t instanceof Date ? t.getTime() : t;
  const whole = Math.floor(ms);
  return { ms: whole, ns: Math.min(999_999, Math.round((ms - whole) * 1e6)) };
}

/** Chunk entries one /api/chunks answer carries at most (the master's bound). */
const chunksPerAnswer = 10_000;

export class GfsClient implements DataContext {
  readonly masters: MasterCalls;
  readonly chunks: ChunkAccess;
  readonly clientId: string;
  readonly pieceBytes: number;
  readonly concurrency: number;
  readonly retry: Partial<RetryOptions>;
  readonly rack: string | undefined = process.env.GFS_RACK;
  private readonly cursor: ReadCursor = { next: 0 };

  constructor(o: ClientOptions) {
    this.clientId = o.clientId ?? `c${nanoid(12).replace(/[^A-Za-z0-9_-]/g, '_')}`;
    this.retry = o.retry ?? {};
    this.masters = new MasterCalls(o.masterUrl, this.clientId, this.retry);
    this.chunks = new ChunkAccess(this.masters, this.rack, { locationTtlMs: o.locationTtlMs ?? 30_000, locationCacheFiles: o.locationCacheFiles ?? 1024 });
    this.pieceBytes = o.pieceBytes ?? defaults.pushPieceBytes;
    this.concurrency = o.concurrency ?? 4;
    setRpcSelf(this.clientId);
  }

  /** The first master URL (the usual master). */
  get masterUrl(): string {
    return this.masters.masterUrl;
  }

  get masterUrls(): string[] {
    return this.masters.masterUrls;
  }

  /** When the last read was answered by a shadow: how stale it said it was (ms), else undefined. */
  get lastShadowRead(): { url: string; stalenessMs: number | undefined } | undefined {
    return this.masters.lastShadowRead;
  }

  // ---- namespace ----
  /** mode/uid/gid: of the new directories (default 0755, 0:0; the umask is the caller's to apply). */
  async mkdir(path: string, opts: { parents?: boolean } & Owner = {}): Promise<void> {
    await this.masters.call('/api/mkdir', { path, parents: opts.parents ?? false, ...owner(opts) });
  }

  /** mode/uid/gid: of the new file (default 0644, 0:0; the umask is the caller's to apply). */
  async create(path: string, opts: { replication?: number; exclusive?: boolean } & Owner = {}): Promise<FileInfo> {
    this.chunks.invalidate(path);
    return this.masters.call<FileInfo>('/api/create', { path, ...(opts.replication ? { replication: opts.replication } : {}), exclusive: opts.exclusive ?? true, ...owner(opts) });
  }

  /** chmod, chown and utimens in one call: only what is given changes (an absent time is UTIME_OMIT); ctime becomes the master's now. */
  async setattr(path: string, change: Omit<SetattrReq, 'path'>): Promise<void> {
    await this.masters.call('/api/setattr', { path, ...change });
  }

  /** Permission bits (0..0o7777). */
  chmod(path: string, mode: number): Promise<void> {
    return this.setattr(path, { mode });
  }

  /** Owner and/or group (undefined leaves one as it is); a file's set-uid/set-gid go as Linux drops them. */
  chown(path: string, uid: number | undefined, gid?: number): Promise<void> {
    return this.setattr(path, { ...(uid !== undefined ? { uid } : {}), ...(gid !== undefined ? { gid } : {}) });
  }

  /** Access and modification times: a Date, ms since the epoch (fractions kept to the ns), {ms, ns}, 'now', or undefined to leave one. */
  utimes(path: string, atime: TimeInput | undefined, mtime: TimeInput | undefined): Promise<void> {
    return this.setattr(path, { ...(atime !== undefined ? { atime: timeArg(atime) } : {}), ...(mtime !== undefined ? { mtime: timeArg(mtime) } : {}) });
  }

  /** A symbolic link at path pointing to target (stored as written, never resolved by gfs). */
  async symlink(target: string, path: string, o: Omit<Owner, 'mode'> = {}): Promise<void> {
    await this.masters.call('/api/symlink', { path, target, ...owner(o) });
  }

  /** A FIFO, socket or device node at path (mkfifo, mknod): metadata only; the kernel of whoever opens it does its I/O. */
  async mknod(path: string, type: SpecialEntryType, o: Owner & { rdev?: number } = {}): Promise<void> {
    await this.masters.call('/api/mknod', { path, type, ...owner(o), ...(o.rdev !== undefined ? { rdev: o.rdev } : {}) });
  }

  /** The target of the symbolic link at path. */
  async readlink(path: string): Promise<string> {
    const st = await this.stat(path);
    if (st.type !== 'symlink' || st.target === undefined) throw new GfsError('BAD_REQUEST', `not a symbolic link: ${path}`);
    return st.target;
  }

  stat(path: string): Promise<FileInfo> {
    return this.masters.call<FileInfo>('/api/stat', undefined, { path });
  }

  async list(path: string, opts: { recursive?: boolean } = {}): Promise<ListEntry[]> {
    const r = await this.masters.call<{ entries: ListEntry[] }>('/api/list', undefined, { path, recursive: opts.recursive ? '1' : '0' });
    return r.entries;
  }

  /** Moves to the trash (undelete possible until the grace period ends); `now` deletes for good at once. */
  async delete(path: string, opts: { recursive?: boolean; now?: boolean } = {}): Promise<void> {
    this.chunks.invalidate(path);
    await this.masters.call('/api/delete', { path, recursive: opts.recursive ?? false, now: opts.now ?? false });
  }

  /**
   * Many namespace operations in one call (at most maxBatchOps), each answered on its own: one that
   * fails leaves the others standing. Operations on unrelated paths share the master's fsyncs;
   * related ones (a path under another's) run in the order given. Retried as a whole: the master
   * skips the operations a lost first attempt already logged.
   */
  async batch(ops: BatchOp[]): Promise<BatchResult[]> {
    const out: BatchResult[] = [];
    for (let i = 0; i < ops.length; i += maxBatchOps) {
      const part = ops.slice(i, i + maxBatchOps);
      for (const op of part) for (const p of op.op === 'rename' ? [op.src, op.dst] : [op.path]) this.chunks.invalidate(p);
      const readOnly = part.every((op) => op.op === 'stat');
      out.push(...(await this.masters.call<BatchAnswer>('/api/batch', { ops: part }, undefined, readOnly)).results);
    }
    return out;
  }

  async undelete(path: string): Promise<void> {
    await this.masters.call('/api/undelete', { path });
  }

  async trash(): Promise<{ path: string; trashPath: string; deletedAtMs: number; reclaimAtMs: number }[]> {
    return (await this.masters.call<{ entries: { path: string; trashPath: string; deletedAtMs: number; reclaimAtMs: number }[] }>('/api/trash')).entries;
  }

  fsck(path: string): Promise<{ files: { path: string; replication: number; chunks: { index: number; handle: string; version: number; live: string[]; corrupt: string[]; state: string }[] }[]; summary: { files: number; dirs: number; chunks: number; healthy: number; underReplicated: number; overReplicated: number; missing: number; corrupt: number } }> {
    return this.masters.call('/api/fsck', undefined, { path });
  }

  async rename(src: string, dst: string): Promise<void> {
    this.chunks.invalidate(src);
    this.chunks.invalidate(dst);
    await this.masters.call('/api/rename', { src, dst });
  }

  /** A hard link: dst becomes another name of the file at src (its data, attributes and times are shared). */
  async link(src: string, dst: string): Promise<void> {
    this.chunks.invalidate(dst);
    await this.masters.call('/api/link', { src, dst });
  }

  async snapshot(src: string, dst: string): Promise<void> {
    await this.masters.call('/api/snapshot', { src, dst });
  }

  status(): Promise<Record<string, unknown>> {
    return this.masters.call('/api/status');
  }

  // ---- locations ----
  invalidate(path?: string): void {
    this.chunks.invalidate(path);
  }

  /** Locations for chunks [startIndex, startIndex+count) plus the file's size, from cache or the master. */
  locate(path: string, startIndex: number, count: number, fresh = false): Promise<CachedFile> {
    return this.chunks.locate(path, startIndex, count, fresh);
  }

  /** The file's entry, its size known at least as far as `wantEnd` if the file reaches that far (client/chunk-access.ts). */
  extent(path: string, wantEnd: number): Promise<CachedFile> {
    return this.chunks.extent(path, wantEnd);
  }

  /** Where each chunk of the file is now, as the master sees it (and `gfs fsck` reports), against the file's replication goal. */
  async replication(path: string): Promise<ReplicationReport> {
    const chunks: { index: number; replicas: string[] }[] = [];
    let goal = 0;
    for (let start = 0; ; start += chunksPerAnswer) {
      const a = await this.masters.call<ChunksAnswer>('/api/chunks', { path, startIndex: start, count: chunksPerAnswer });
      goal = a.replication ?? (await this.stat(path)).replication;
      for (const c of a.chunks) chunks.push({ index: c.index, replicas: c.replicas.map((r) => r.id).sort() });
      if (start + chunksPerAnswer >= a.chunkCount) break;
    }
    return reportOf(goal, chunks);
  }

  // ---- data ----
  /** Pushes data along a pipelined chain of the replicas, closest first; resolves to its id and crc32c (client/write-path.ts). */
  push(replicas: ReplicaRef[], data: Buffer): Promise<{ dataId: string; crc: number }> {
    return push(this, replicas, data);
  }

  /** Writes data at a file offset, across chunks; resolves when every replica applied every piece (client/write-path.ts). */
  write(path: string, offset: number, data: Buffer): Promise<ReplicationReport> {
    return write(this, path, offset, data);
  }

  /** Writes one piece within one chunk; resolves once every replica applied it, naming them. */
  writePiece(path: string, index: number, offsetInChunk: number, data: Buffer): Promise<WriteAnswer & { replicas: string[] }> {
    return writePiece(this, path, index, offsetInChunk, data);
  }

  /**
   * Sets the file's length, as truncate(2): a shorter file loses its tail (the master drops the chunks
   * past the new end; the chunk holding it is cut on every replica, so its old bytes never read back);
   * a longer one reads as zeros up to the new end. mtime and ctime move when the length changes.
   * Not atomic for a reader meanwhile: one may see the old tail of the last chunk kept until this returns.
   */
  async truncate(path: string, sizeBytes: number): Promise<void> {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new GfsError('BAD_REQUEST', `length ${sizeBytes} is not a non-negative integer`);
    if (sizeBytes > maxFileSizeBytes) throw new GfsError('FILE_TOO_LARGE', `length ${sizeBytes} is past the largest file gfs keeps (${maxFileSizeBytes} bytes)`);
    const st = await this.stat(path);
    if (st.type !== 'file') throw new GfsError(st.type === 'dir' ? 'IS_A_DIRECTORY' : 'BAD_REQUEST', `not a regular file: ${path}`);
    if (sizeBytes === st.sizeBytes) return;
    const C = st.chunkSizeBytes;
    if (sizeBytes > st.sizeBytes) {
      // Longer: one zero byte at the new end; the gap before it reads as zeros.
      const last = sizeBytes - 1;
      await writePiece(this, path, Math.floor(last / C), last % C, Buffer.alloc(1));
      await this.setattr(path, { mtime: 'now' });
      return;
    }
    await this.masters.call('/api/truncate', { path, sizeBytes });
    this.invalidate(path);
    if (sizeBytes === 0) return;
    // The chunk now last holds the new end: exactly that many of its bytes stay (a hole before it is filled with zeros).
    const last = Math.ceil(sizeBytes / C) - 1;
    await setChunkLength(this, path, last, sizeBytes - last * C);
  }

  /** Record append of raw bytes (no framing): the system picks the offset and returns it. At least once. */
  appendRaw(path: string, data: Buffer): Promise<number> {
    return appendRaw(this, path, data);
  }

  /** Record append of many raw records in as few requests as fit; one file offset per record, in order (client/append-path.ts). */
  appendRawBatch(path: string, records: Buffer[]): Promise<number[]> {
    return appendRawBatch(this, path, records);
  }

  /**
   * A batching appender of framed records to `path` (client/appender.ts):
   * `append(record)` resolves to the record's file offset; records appended
   * while a batch is in flight go together in the next request.
   */
  appender(path: string, o: AppenderOptions = {}): RecordAppender {
    return new RecordAppender(this, path, o);
  }

  /** Reads up to `length` bytes at `offset`: short only at the end of the file (client/read-path.ts). */
  read(path: string, offset: number, length: number): Promise<Buffer> {
    return read(this, this.cursor, path, offset, length);
  }

  /** One piece of one chunk, failing over between replicas. */
  readPiece(path: string, index: number, inChunk: number, len: number): Promise<Buffer> {
    return readPiece(this, this.cursor, path, index, inChunk, len);
  }

  readReplica(r: ReplicaRef, handle: string, version: number, offset: number, length: number): Promise<Buffer> {
    return readReplica(r, handle, version, offset, length);
  }

  /** Makes every chunk of the file (or those in `range`) durable on every replica's disk (fsync). */
  sync(path: string, range: { startIndex: number; count: number } = { startIndex: 0, count: chunksPerAnswer }): Promise<void> {
    return sync(this, path, range);
  }

  /** Runs fn over items with at most `limit` in flight; the first error fails the whole run. */
  runLimited<T>(items: T[], fn: (item: T) => Promise<unknown>, limit = this.concurrency): Promise<void> {
    return runLimited(items, fn, limit);
  }

  static newRecordId(): Buffer {
    return pooledRandomBytes(16);
  }
}
