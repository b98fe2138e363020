import { Readable, Writable } from 'node:stream';
import { reloadSecret } from '../shared/auth.js';
import { GfsError } from '../shared/errors.js';
import { normalizePath } from '../shared/paths.js';
import type { BatchOp, BatchResult, ChunkLocation, EntryType, FileInfo, ListEntry } from '../shared/wire.js';
import { GfsClient, type AppenderOptions } from './client.js';
import { frameRecord, readRecords, recordIdBytes, type RecordRead } from './records.js';

// The library applications import (`import { connect } from 'gfs'`): a client
// shaped like node:fs/promises where that fits (mkdir, readdir, stat, rename,
// rm, readFile, writeFile, open, createReadStream, createWriteStream), plus
// what only gfs has (record append, records, snapshots, chunk locations,
// batches). It is a thin layer over GfsClient (client.ts), which the CLI and
// the mount use too, so every path here has the same retries, caches and
// durability: a write or a stream is durable on every replica once sync()
// (or close(), or the stream's 'finish') has resolved.

export { GfsError } from '../shared/errors.js';
export type { ErrorCode } from '../shared/errors.js';
export type { BatchOp, BatchResult, ChunkLocation, EntryType, FileInfo, ListEntry, SpecialEntryType } from '../shared/wire.js';
export type { RecordRead } from './records.js';
export type { AppenderOptions } from './appender.js';

export interface ConnectOptions {
  /** Master URL, or several (the master and its shadows); default $GFS_MASTER, else http://127.0.0.1:7070. */
  master?: string | string[];
  /** File holding the cluster secret (default $GFS_SECRET_FILE); sets it for this whole process. */
  secretFile?: string;
  /** The cluster secret itself (default $GFS_SECRET); sets it for this whole process. */
  secret?: string;
  /** PEM CA bundle to trust for https:// masters and chunkservers (default $GFS_TLS_CA). */
  tlsCa?: string;
  /** Chunk pieces moved at once per stream or read (default 4). */
  concurrency?: number;
}

/** What `stat` answers (as lstat: a symbolic link is not followed): gfs's own fields plus fs.Stats' type predicates. */
/** The type tests of node's fs.Stats and fs.Dirent. */
export interface TypeTests {
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
}

export interface Stats extends FileInfo, TypeTests {
  size: number;
  /** Names of the file: more than 1 for a hard-linked one (a directory counts 1 here). */
  nlink: number;
}

export interface Dirent extends ListEntry, TypeTests {}

function typeTests(type: EntryType): TypeTests {
  return {
    isFile: () => type === 'file',
    isDirectory: () => type === 'dir',
    isSymbolicLink: () => type === 'symlink',
    isFIFO: () => type === 'fifo',
    isSocket: () => type === 'socket',
    isCharacterDevice: () => type === 'chardev',
    isBlockDevice: () => type === 'blockdev',
  };
}

/** A batching appender (Gfs.appender): many records in flight to one file. */
export interface Appender {
  /** Resolves to the record's offset once it is on every replica. */
  append(record: Buffer | Uint8Array | string): Promise<number>;
  /** The same as append (the name streams use). */
  write(record: Buffer | Uint8Array | string): Promise<number>;
  /** Resolves once every record appended so far is acknowledged. */
  flush(): Promise<void>;
}

/** An open file: positioned reads and writes, sync, close (which syncs what was written). */
export interface FileHandle {
  readonly path: string;
  /** Up to `length` bytes at `position`; fewer only at the end of the file. */
  read(length: number, position: number): Promise<Buffer>;
  /** Writes `data` at `position` (default: where the last write through this handle ended). */
  write(data: Buffer | string, position?: number): Promise<{ bytesWritten: number }>;
  /** Makes everything written so far durable on every replica's disk. */
  sync(): Promise<void>;
  stat(): Promise<Stats>;
  /** Syncs when something was written, then closes. */
  close(): Promise<void>;
}

const defaultMaster = 'http://127.0.0.1:7070';

function stats(i: FileInfo): Stats {
  return { ...i, size: i.sizeBytes, nlink: i.nlink ?? 1, ...typeTests(i.type) };
}

function toBuffer(data: Buffer | Uint8Array | string): Buffer {
  return typeof data === 'string' ? Buffer.from(data) : Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

export class Gfs {
  /** The client underneath, for what this layer does not cover (see client/client.ts). */
  readonly client: GfsClient;

  constructor(client: GfsClient) {
    this.client = client;
  }

  /** Makes a directory; `recursive` makes its parents too and does not fail when it exists. */
  async mkdir(path: string, o: { recursive?: boolean } = {}): Promise<void> {
    await this.client.mkdir(path, { parents: o.recursive ?? false });
  }

  /** Names in a directory, or entries (`withFileTypes`) with type, size, replication and mtime. */
  async readdir(path: string): Promise<string[]>;
  async readdir(path: string, o: { withFileTypes: true }): Promise<Dirent[]>;
  async readdir(path: string, o: { withFileTypes?: boolean } = {}): Promise<string[] | Dirent[]> {
    // One call: listing a file answers the file itself (its own path), never a child of it.
    const entries = await this.client.list(path);
    const self = entries.length === 1 ? entries[0]! : undefined;
    if (self?.type === 'file' && self.path === normalizePath(path)) throw new GfsError('NOT_A_DIRECTORY', `not a directory: ${path}`);
    if (!o.withFileTypes) return entries.map((e) => e.name);
    return entries.map((e) => ({ ...e, ...typeTests(e.type) }));
  }

  async stat(path: string): Promise<Stats> {
    return stats(await this.client.stat(path));
  }

  async rename(src: string, dst: string): Promise<void> {
    await this.client.rename(src, dst);
  }

  /**
   * Removes a file or (with `recursive`) a directory tree. It goes to the trash (undelete() brings it
   * back until the grace period ends) unless `now`; `force` ignores a missing path.
   */
  async rm(path: string, o: { recursive?: boolean; force?: boolean; now?: boolean } = {}): Promise<void> {
    try {
      await this.client.delete(path, { recursive: o.recursive ?? false, now: o.now ?? false });
    } catch (e) {
      if (o.force && e instanceof GfsError && e.code === 'NOT_FOUND') return;
      throw e;
    }
  }

  async undelete(path: string): Promise<void> {
    await this.client.undelete(path);
  }

  /** The whole file. */
  async readFile(path: string): Promise<Buffer>;
  async readFile(path: string, encoding: BufferEncoding): Promise<string>;
  async readFile(path: string, encoding?: BufferEncoding): Promise<Buffer | string> {
    // Opening a file learns its chunks afresh, as HDFS's open does: another process may have replaced
    // it (rename over it) since this client cached where its chunks were.
    this.client.invalidate(path);
    const buf = await this.client.read(path, 0, (await this.client.stat(path)).sizeBytes);
    return encoding ? buf.toString(encoding) : buf;
  }

  /**
   * The file with exactly `data` in it, durable on every replica when this resolves. An existing file
   * is replaced: written under a temporary name, then renamed over the old one (never half-written).
   */
  async writeFile(path: string, data: Buffer | Uint8Array | string, o: { replication?: number } = {}): Promise<void> {
    const buf = toBuffer(data);
    const tmp = `${path}.gfs-tmp-${process.pid}-${Date.now().toString(36)}`;
    await this.client.create(tmp, { replication: o.replication });
    try {
      if (buf.length > 0) await this.client.write(tmp, 0, buf);
      await this.client.sync(tmp);
      await this.replaceWith(tmp, path);
    } catch (e) {
      await this.client.delete(tmp, { now: true }).catch(() => undefined);
      throw e;
    }
  }

  /** Renames tmp over path; an existing file at path goes for good (its replacement is already durable). */
  private async replaceWith(tmp: string, path: string): Promise<void> {
    try {
      await this.client.rename(tmp, path);
    } catch (e) {
      if (!(e instanceof GfsError && e.code === 'EXISTS')) throw e;
      await this.client.delete(path, { now: true });
      await this.client.rename(tmp, path);
    }
  }

  /**
   * Opens a file: flags 'r' (it must exist), 'r+' (read and write, it must exist), 'w' (create or
   * empty it), 'wx' (create; fails when it exists), 'a' (create if missing, writes go to the end).
   */
  async open(path: string, flags: 'r' | 'r+' | 'w' | 'wx' | 'a' = 'r', o: { replication?: number } = {}): Promise<FileHandle> {
    const c = this.client;
    if (flags === 'w') {
      await this.rm(path, { force: true, now: true });
      await c.create(path, { replication: o.replication });
    } else if (flags === 'wx') await c.create(path, { replication: o.replication, exclusive: true });
    else if (flags === 'a') await c.create(path, { replication: o.replication, exclusive: false });
    c.invalidate(path); // fresh chunk locations at open (see readFile)
    let st = await c.stat(path);
    if (st.type !== 'file') throw new GfsError('IS_A_DIRECTORY', `is a directory: ${path}`);
    let position = flags === 'a' ? st.sizeBytes : 0;
    let dirty = false;
    let closed = false;
    const check = (): void => {
      if (closed) throw new GfsError('BAD_REQUEST', `file handle of ${path} is closed`);
    };
    const gfs = this;
    return {
      path,
      async read(length: number, at: number) {
        check();
        return c.read(path, at, length);
      },
      async write(data: Buffer | string, at?: number) {
        check();
        if (flags === 'r') throw new GfsError('BAD_REQUEST', `${path} is open for reading only`);
        const buf = toBuffer(data);
        const where = flags === 'a' ? (st = await c.stat(path)).sizeBytes : (at ?? position);
        await c.write(path, where, buf);
        position = where + buf.length;
        dirty = true;
        return { bytesWritten: buf.length };
      },
      async sync() {
        check();
        await c.sync(path);
        dirty = false;
      },
      async stat() {
        check();
        return gfs.stat(path);
      },
      async close() {
        if (closed) return;
        if (dirty) await c.sync(path);
        closed = true;
      },
    };
  }

  /**
   * A Readable of the file's bytes from `start` to `end` (inclusive, as in node:fs), one piece per
   * read, so a slow consumer holds the reading back (backpressure).
   */
  createReadStream(path: string, o: { start?: number; end?: number; highWaterMark?: number } = {}): Readable {
    const c = this.client;
    let pos = o.start ?? 0;
    let limit: number | undefined;
    return new Readable({
      highWaterMark: o.highWaterMark ?? c.pieceBytes,
      async read(size) {
        try {
          if (limit === undefined) c.invalidate(path); // fresh chunk locations at open (see readFile)
          limit ??= Math.min((await c.stat(path)).sizeBytes, o.end === undefined ? Number.MAX_SAFE_INTEGER : o.end + 1);
          const len = Math.min(Math.max(size, c.pieceBytes), limit - pos);
          if (len <= 0) return void this.push(null);
          const buf = await c.read(path, pos, len);
          pos += buf.length;
          this.push(buf.length > 0 ? buf : null);
        } catch (e) {
          this.destroy(e as Error);
        }
      },
    });
  }

  /**
   * A Writable that writes the file from the start (creating it, or emptying an existing one, unless
   * `flags: 'a'` appends at its end) in pieces; 'finish' means durable on every replica.
   */
  createWriteStream(path: string, o: { flags?: 'w' | 'wx' | 'a'; replication?: number } = {}): Writable {
    let handle: FileHandle | undefined;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const pieceBytes = this.client.pieceBytes;
    const flushPending = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const buf = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      await handle!.write(buf);
    };
    return new Writable({
      highWaterMark: pieceBytes,
      construct: (cb) => {
        this.open(path, o.flags ?? 'w', { replication: o.replication }).then(
          (h) => {
            handle = h;
            cb();
          },
          (e: Error) => cb(e),
        );
      },
      write(chunk: Buffer, _enc, cb) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes < pieceBytes) return cb();
        flushPending().then(() => cb(), cb);
      },
      final(cb) {
        flushPending()
          .then(() => handle!.close())
          .then(() => cb(), cb);
      },
    });
  }

  /**
   * Appends one record atomically (at least once, whole, at an offset gfs chooses); returns that offset.
   * `id` (16 bytes) names the record: records() yields one record per id, so a producer that may send
   * the same record twice (a restart after a crash) gives it the same id and readers see it once.
   */
  async appendRecord(path: string, record: Buffer | Uint8Array | string, o: { id?: Buffer } = {}): Promise<number> {
    if (o.id !== undefined && o.id.length !== recordIdBytes) throw new GfsError('BAD_REQUEST', `a record id is ${recordIdBytes} bytes, got ${o.id.length}`);
    const frame = frameRecord(toBuffer(record), o.id);
    try {
      return await this.client.appendRaw(path, frame);
    } catch (e) {
      // Created when missing, as >> does (many appenders may race to create it: any of them wins).
      if (!(e instanceof GfsError && e.code === 'NOT_FOUND')) throw e;
      await this.client.create(path, { exclusive: false });
      return this.client.appendRaw(path, frame);
    }
  }

  /**
   * A batching appender for many records to one file: `append(record)` (or `write`) resolves to the
   * record's offset once it is on every replica; records appended while a batch is out go together in
   * the next request (up to `maxBatchBytes`), and a lone record is sent at once. `flush()` waits for all.
   */
  appender(path: string, o: AppenderOptions = {}): Appender {
    // The file is created when missing, as appendRecord does; appends wait for that.
    const ready = this.client.create(path, { exclusive: false }).then(() => undefined);
    ready.catch(() => undefined); // reported by the first append or flush
    const inner = this.client.appender(path, o);
    const append = async (record: Buffer | Uint8Array | string): Promise<number> => {
      await ready;
      return inner.append(toBuffer(record));
    };
    return {
      append,
      write: append,
      flush: async () => {
        await ready;
        await inner.flush();
      },
    };
  }

  /** Every record appended to the file, once each, in file order (padding and duplicates skipped). */
  records(path: string): AsyncGenerator<RecordRead> {
    return readRecords(this.client, path);
  }

  /** Permission bits (0..0o7777), as fs.chmod with a number. */
  async chmod(path: string, mode: number): Promise<void> {
    await this.client.chmod(path, mode);
  }

  /** Owner and group, as fs.chown (-1 leaves one as it is); a file's set-uid/set-gid go. */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    await this.client.chown(path, uid === -1 ? undefined : uid, gid === -1 ? undefined : gid);
  }

  /** Access and modification times, as fs.utimes: Dates, or seconds since the epoch (fractions kept to the ns). */
  async utimes(path: string, atime: Date | number, mtime: Date | number): Promise<void> {
    const ms = (t: Date | number) => (t instanceof Date ? t : t * 1000);
    await this.client.utimes(path, ms(atime), ms(mtime));
  }

  /** A symbolic link at path to target, as fs.symlink(target, path); the target is kept as written. */
  async symlink(target: string, path: string): Promise<void> {
    await this.client.symlink(target, path);
  }

  /** A hard link, as fs.link(existingPath, newPath): newPath becomes another name of the file (not of a directory). */
  async link(existingPath: string, newPath: string): Promise<void> {
    await this.client.link(existingPath, newPath);
  }

  async readlink(path: string): Promise<string> {
    return this.client.readlink(path);
  }

  /** A copy-on-write snapshot of a file or tree: instant, shares chunks until either side writes. */
  async snapshot(src: string, dst: string): Promise<void> {
    await this.client.snapshot(src, dst);
  }

  /** Where each chunk of the file is: handle, version and the replicas holding it. */
  async locations(path: string): Promise<ChunkLocation[]> {
    const st = await this.client.stat(path);
    if (st.type !== 'file') throw new GfsError('IS_A_DIRECTORY', `is a directory: ${path}`);
    if (st.chunkCount === 0) return [];
    const f = await this.client.locate(path, 0, st.chunkCount, true);
    return [...f.chunks.values()].sort((a, b) => a.index - b.index);
  }

  /** Many namespace operations in one call to the master, each answered on its own. */
  batch(ops: BatchOp[]): Promise<BatchResult[]> {
    return this.client.batch(ops);
  }
}

/** A client of the cluster at `o.master` (or $GFS_MASTER), with the secret and CA given or from the environment. */
export function connect(o: ConnectOptions = {}): Gfs {
  if (o.secretFile !== undefined) process.env.GFS_SECRET_FILE = o.secretFile;
  if (o.secret !== undefined) {
    delete process.env.GFS_SECRET_FILE;
    process.env.GFS_SECRET = o.secret;
  }
  if (o.secretFile !== undefined || o.secret !== undefined) reloadSecret();
  if (o.tlsCa !== undefined) process.env.GFS_TLS_CA = o.tlsCa;
  const master = Array.isArray(o.master) ? o.master.join(',') : (o.master ?? process.env.GFS_MASTER ?? defaultMaster);
  return new Gfs(new GfsClient({ masterUrl: master, concurrency: o.concurrency }));
}
