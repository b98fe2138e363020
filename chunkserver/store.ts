import { constants as fsConstants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { GfsError, invariant } from '../shared/errors.js';
import { checkHandle, isHandle } from '../shared/handles.js';
import { RwLock } from '../shared/rwlock.js';
import type { ChunkReport } from '../shared/wire.js';
import type { GivenCrcs } from './checksum-plan.js';
import { FdCache } from './fd-cache.js';
import { ReplicaData } from './replica-data.js';
import { recoverReplicas } from './recovery.js';
import { checkAtVersion, checkByteCount, checkVersion, corruptError, notFound, type Replica } from './replica.js';
import { DirectIo } from './direct-io.js';
import { crcBytes, noSpaceError, pwriteFull, ReplicaFiles, unlinkIfPresent, type FsyncKind } from './replica-files.js';

// The chunkserver's replica store: the public API over replicas (create,
// version, delete, local copy, write, pad, read, sync, verify). Each replica
// is three files under <dir>/chunks/:
//   <handle>.chunk  the data; its file size is the chunk's length (may be sparse)
//   <handle>.crc    u32 LE crc32c per checksum block, block i at byte 4*i; the
//                   last block's crc covers only the bytes present
//   <handle>.meta   JSON {version}, replaced atomically (tmp + rename)
// The crc tables live in memory (loaded at open) and are what every read is
// verified against: a restarted chunkserver never recomputes them from data it
// cannot trust. Mutations are applied (data + crc pwritten) before they
// resolve but only reach the disk on sync(), as in GFS; creation, version
// changes and local copies are durable before they resolve.
// Its parts: replica-data.ts (verified reads, checksummed mutations),
// checksum-plan.ts (which blocks a mutation recomputes or verifies),
// fd-cache.ts, replica-files.ts (file I/O, corrupt markers), recovery.ts
// (start-up scan), replica.ts (the in-memory replica and argument checks).

export interface StoreOptions {
  dir: string;
  chunkSizeBytes: number;
  checksumBlockBytes: number;
  /** The server's id, named in errors (NO_SPACE) so a client can tell which disk is full. */
  serverId?: string;
  /** Called every time corruption is detected (not deduplicated). Must not throw. */
  onCorrupt?: (handle: string) => void;
  /** Bound on cached open file descriptors (default 256). */
  maxOpenFiles?: number;
  /** Told when a corrupt replica could not be marked on disk (it is still out of service until restart). Must not throw. */
  onMarkFailed?: (handle: string, err: Error) => void;
  /** Told how long each fsync took (metrics): chunk data + checksums, version metadata, the chunks directory. */
  onFsync?: (kind: FsyncKind, seconds: number) => void;
  /** Bulk pieces through O_DIRECT where the file system has it (chunkserver/direct-io.ts; default off here, on in the server). */
  directIo?: boolean;
}

const defaultMaxOpenFiles = 256;
/** verify() reads this much per step and releases the lock in between, so scrubbing never stalls writers for long. */
const scrubPieceBytes = 4 * 1024 * 1024;

export class ReplicaStore {
  private readonly chunkSizeBytes: number;
  private readonly blockBytes: number;
  private readonly serverId: string;
  private readonly onCorrupt: ((handle: string) => void) | undefined;
  private readonly onMarkFailed: StoreOptions['onMarkFailed'];
  private readonly replicas = new Map<string, Replica>();
  private readonly files: ReplicaFiles;
  private readonly fds: FdCache;
  private usedTotalBytes = 0;
  private readonly io: ReplicaData;
  private readonly inflight = new Set<Promise<unknown>>();
  private closed = false;
  /** O_DIRECT for bulk pieces, where the chunks directory's file system has it: buffers for them come from alignedBuffer. */
  get direct(): DirectIo | undefined {
    return this.io.direct;
  }

  /** Bytes written into replica files (mutations, pads excluded, and clones), ever. */
  writtenBytes = 0;

  private constructor(opts: StoreOptions) {
    invariant(Number.isSafeInteger(opts.chunkSizeBytes) && opts.chunkSizeBytes > 0, 'chunkSizeBytes must be a positive integer');
    invariant(
      Number.isSafeInteger(opts.checksumBlockBytes) && opts.checksumBlockBytes > 0 && opts.checksumBlockBytes <= 64 * 1024 * 1024,
      'checksumBlockBytes must be a positive integer (at most 64 MiB)',
    );
    this.files = new ReplicaFiles(path.join(opts.dir, 'chunks'), opts.onFsync);
    this.fds = new FdCache(opts.maxOpenFiles ?? defaultMaxOpenFiles, (handle, kind) => this.files.file(handle, kind));
    this.chunkSizeBytes = opts.chunkSizeBytes;
    this.blockBytes = opts.checksumBlockBytes;
    this.serverId = opts.serverId ?? opts.dir;
    this.onCorrupt = opts.onCorrupt;
    this.onMarkFailed = opts.onMarkFailed;
    this.io = new ReplicaData(
      this.blockBytes,
      Math.ceil(opts.chunkSizeBytes / opts.checksumBlockBytes),
      this.fds,
      (handle) => this.files.file(handle, 'chunk'),
      (rep, block) => this.corrupt(rep, block),
      (grownBytes, writtenBytes) => {
        this.usedTotalBytes += grownBytes;
        this.writtenBytes += writtenBytes;
      },
    );
  }

  static async open(opts: StoreOptions): Promise<ReplicaStore> {
    const store = new ReplicaStore(opts);
    await fsp.mkdir(store.files.chunksDir, { recursive: true });
    if (opts.directIo) store.io.direct = DirectIo.probe(store.files.chunksDir);
    for (const rep of await recoverReplicas(store.files, store.blockBytes)) {
      store.replicas.set(rep.handle, rep);
      store.usedTotalBytes += rep.sizeBytes;
    }
    return store;
  }

  // ---- queries (synchronous, from memory) ----

  /** Replicas that may be served (the chunk report); corrupt ones are listed by corruptList() instead. */
  list(): ChunkReport[] {
    const out: ChunkReport[] = [];
    for (const r of this.replicas.values()) {
      if (r.state === 'live' && !r.corrupt) out.push({ handle: r.handle, version: r.version, sizeBytes: r.sizeBytes });
    }
    return out;
  }

  /** Handles of replicas marked corrupt, until they are deleted (reported to the master in every heartbeat). */
  corruptList(): string[] {
    const out: string[] = [];
    for (const r of this.replicas.values()) if (r.state === 'live' && r.corrupt) out.push(r.handle);
    return out;
  }

  /** Replicas held. */
  get count(): number {
    return this.replicas.size;
  }

  /** False for unknown handles and for strings that are not handles at all. */
  has(handle: string): boolean {
    return this.servable(handle) !== undefined;
  }

  /** Version and length of a replica that may be served; undefined if absent or corrupt. */
  info(handle: string): { version: number; sizeBytes: number } | undefined {
    const r = this.servable(handle);
    return r ? { version: r.version, sizeBytes: r.sizeBytes } : undefined;
  }

  /** info(), but a clear error for a replica that is absent (NOT_FOUND) or marked corrupt (CORRUPT). */
  require(handle: string): { version: number; sizeBytes: number } {
    const info = this.info(handle);
    if (info) return info;
    throw isHandle(handle) && this.replicas.get(handle)?.corrupt ? corruptError(handle) : notFound(handle);
  }

  private servable(handle: string): Replica | undefined {
    if (!isHandle(handle)) return undefined;
    const r = this.replicas.get(handle);
    return r?.state === 'live' && !r.corrupt ? r : undefined;
  }

  usedBytes(): number {
    return this.usedTotalBytes;
  }

  async diskStats(): Promise<{ capacityBytes: number; freeBytes: number }> {
    const s = await fsp.statfs(this.files.chunksDir);
    return { capacityBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
  }

  // ---- lifecycle of replicas ----

  async create(handle: string, version: number): Promise<void> {
    checkHandle(handle);
    checkVersion(version);
    return this.track(() =>
      this.creating(handle, async (rep) => {
        await this.files.createEmpty(handle, 'chunk');
        await this.files.createEmpty(handle, 'crc');
        // The meta is written last: a crash before it leaves a .chunk without
        // .meta, which open() removes. Its dir fsync also covers the two files above.
        await this.files.writeMeta(handle, version);
        rep.version = version;
      }),
    );
  }

  async setVersion(handle: string, version: number): Promise<void> {
    checkHandle(handle);
    checkVersion(version);
    return this.track(() =>
      this.withReplica(handle, true, async (rep) => {
        if (version < rep.version) {
          throw new GfsError('STALE_VERSION', `chunk ${handle} is at version ${rep.version}, refusing to lower it to ${version}`, {
            version: rep.version,
          });
        }
        if (version === rep.version) return;
        await this.files.writeMeta(handle, version);
        rep.version = version;
      }),
    );
  }

  async delete(handle: string): Promise<void> {
    checkHandle(handle);
    return this.track(() =>
      this.withReplica(
        handle,
        true,
        async (rep) => {
          rep.state = 'deleting';
          this.usedTotalBytes -= rep.sizeBytes;
          try {
            await this.fds.drop(handle);
            // A crash part-way leaves a .chunk without .meta, which open() cleans up.
            // No dir fsync: a deletion undone by a crash is an orphan the master deletes again.
            await this.files.removeAll(handle);
          } finally {
            this.replicas.delete(handle);
          }
        },
        true,
      ),
    );
  }

  async copyLocal(handle: string, newHandle: string, version: number): Promise<void> {
    checkHandle(handle);
    checkHandle(newHandle);
    checkVersion(version);
    if (!this.has(handle)) throw notFound(handle);
    return this.track(() =>
      this.creating(newHandle, async (dst) => {
        await this.withReplica(handle, false, async (src) => {
          // FICLONE shares extents where the filesystem can (btrfs, xfs) and
          // falls back to a plain copy elsewhere.
          await fsp.copyFile(this.files.file(handle, 'chunk'), this.files.file(newHandle, 'chunk'), fsConstants.COPYFILE_FICLONE);
          // The crc file is written from the in-memory table rather than
          // copied: that table is what the source's reads are verified against.
          const blocks = Math.ceil(src.sizeBytes / this.blockBytes);
          dst.crcs = src.crcs.slice(0, Math.max(blocks, 1));
          dst.sizeBytes = src.sizeBytes;
          const crcFh = await fsp.open(this.files.file(newHandle, 'crc'), 'w');
          try {
            await pwriteFull(crcFh, crcBytes(dst.crcs, 0, blocks), 0);
            await crcFh.sync();
          } finally {
            await crcFh.close();
          }
        });
        const dataFh = await fsp.open(this.files.file(newHandle, 'chunk'), 'r+');
        try {
          await dataFh.sync();
        } finally {
          await dataFh.close();
        }
        await this.files.writeMeta(newHandle, version);
        dst.version = version;
      }),
    );
  }

  // ---- data ----

  /**
   * Writes data at offset; returns the chunk's new length. `atVersion`: only while the replica is at this version, checked under the
   * replica's lock, which setVersion takes too: a mutation ordered under a lease at version v never
   * lands after the replica moved on to v+1 (a clone copied from it then would miss it). `given`: the
   * data's block crcs as its sender computed them (chunkserver/checksum-plan.ts), used where they line up.
   */
  async write(handle: string, offset: number, data: Buffer, atVersion?: number, given?: GivenCrcs): Promise<number> {
    checkHandle(handle);
    checkByteCount('offset', offset);
    if (offset + data.length > this.chunkSizeBytes) {
      throw new GfsError('OUT_OF_RANGE', `write of ${data.length} bytes at ${offset} passes the chunk size ${this.chunkSizeBytes}`);
    }
    return this.track(() =>
      this.withReplica(handle, true, async (rep) => {
        checkAtVersion(rep, atVersion);
        // An empty write changes nothing, not even the length.
        if (data.length === 0) return rep.sizeBytes;
        return this.io.mutate(rep, offset, data, given);
      }),
    );
  }

  /** Extends the chunk with zeros to toSizeBytes (no-op if already that long); returns the chunk's length. `atVersion` as for write. */
  async pad(handle: string, toSizeBytes: number, atVersion?: number): Promise<number> {
    checkHandle(handle);
    checkByteCount('toSizeBytes', toSizeBytes);
    if (toSizeBytes > this.chunkSizeBytes) {
      throw new GfsError('OUT_OF_RANGE', `cannot pad to ${toSizeBytes} bytes, the chunk size is ${this.chunkSizeBytes}`);
    }
    return this.track(() =>
      this.withReplica(handle, true, async (rep) => {
        checkAtVersion(rep, atVersion);
        if (toSizeBytes <= rep.sizeBytes) return rep.sizeBytes;
        return this.io.mutate(rep, toSizeBytes, Buffer.alloc(0));
      }),
    );
  }

  /**
   * Sets the chunk's length to exactly toSizeBytes (a file truncated to within this chunk): cut when
   * longer, extended with zeros when shorter; returns the length. `atVersion` as for write.
   */
  async setLength(handle: string, toSizeBytes: number, atVersion?: number): Promise<number> {
    checkHandle(handle);
    checkByteCount('toSizeBytes', toSizeBytes);
    if (toSizeBytes > this.chunkSizeBytes) throw new GfsError('OUT_OF_RANGE', `cannot set the length to ${toSizeBytes} bytes, the chunk size is ${this.chunkSizeBytes}`);
    return this.track(() =>
      this.withReplica(handle, true, async (rep) => {
        checkAtVersion(rep, atVersion);
        if (toSizeBytes === rep.sizeBytes) return rep.sizeBytes;
        return toSizeBytes > rep.sizeBytes ? this.io.mutate(rep, toSizeBytes, Buffer.alloc(0)) : this.io.shrink(rep, toSizeBytes);
      }),
    );
  }

  /**
   * Reads up to length bytes at offset, clamped at the chunk's end; every block touched is verified in full.
   * `scratch`: a buffer to read into (a reused one, see chunkserver/buffer-pool.ts), used when it holds
   * every block touched; the answer is then a part of it.
   */
  async read(handle: string, offset: number, length: number, scratch?: Buffer): Promise<Buffer> {
    checkHandle(handle);
    checkByteCount('offset', offset);
    checkByteCount('length', length);
    return this.track(() =>
      this.withReplica(handle, false, async (rep) => {
        const sizeBytes = rep.sizeBytes;
        if (offset >= sizeBytes || length === 0) return Buffer.alloc(0);
        const end = Math.min(sizeBytes, offset + length);
        const B = this.blockBytes;
        const firstBlock = Math.floor(offset / B);
        const lastBlock = Math.floor((end - 1) / B);
        const start = firstBlock * B;
        const buf = await this.io.readVerified(rep, firstBlock, lastBlock, scratch);
        return buf.subarray(offset - start, end - start);
      }),
    );
  }

  /** fdatasync of data and crc file: everything applied before this call is on disk when it resolves. */
  async sync(handle: string): Promise<void> {
    checkHandle(handle);
    return this.track(() =>
      // Shared: syncing excludes mutations (so it covers exactly what came
      // before) but not reads.
      this.withReplica(handle, false, async (rep) => {
        if (rep.dirty) {
          rep.dirty = false;
          const p = this.fds.with(rep.handle, true, (data, crc) => this.files.timed('chunk', async () => void (await Promise.all([data.datasync(), crc!.datasync()]))));
          rep.syncing = p;
          try {
            await p;
          } catch (e) {
            rep.dirty = true;
            throw e;
          } finally {
            if (rep.syncing === p) rep.syncing = undefined;
          }
        } else if (rep.syncing) {
          await rep.syncing;
        }
      }),
    );
  }

  /** Full scan for scrubbing: false (and onCorrupt) if any block mismatches its crc. */
  async verify(handle: string): Promise<boolean> {
    checkHandle(handle);
    return this.track(async () => {
      const B = this.blockBytes;
      const pieceBlocks = Math.max(1, Math.floor(scrubPieceBytes / B));
      let block = 0;
      for (;;) {
        const step = await this.withReplica(handle, false, async (rep): Promise<'done' | 'more'> => {
          const blocks = Math.ceil(rep.sizeBytes / this.blockBytes);
          if (block >= blocks) return 'done';
          const last = Math.min(blocks, block + pieceBlocks) - 1;
          await this.io.readVerified(rep, block, last);
          block = last + 1;
          return 'more';
        }).catch((e: unknown) => {
          if (e instanceof GfsError && e.code === 'CORRUPT') return 'corrupt' as const;
          throw e;
        });
        if (step === 'done') return true;
        if (step === 'corrupt') return false;
      }
    });
  }

  /** Waits for operations in flight, then closes every fd. Later calls fail with UNAVAILABLE. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    await this.fds.closeAll();
    await this.files.settle();
  }

  private corrupt(rep: Replica, block: number): never {
    const handle = rep.handle;
    this.markCorrupt(rep, `checksum mismatch in block ${block}`);
    try {
      this.onCorrupt?.(handle);
    } catch {
      // A failing reporter must not turn a CORRUPT answer into some other error.
    }
    throw new GfsError('CORRUPT', `chunk ${handle}: checksum mismatch in block ${block}`, { handle, block });
  }

  /**
   * Stops serving rep at once and marks it on disk, so a restart keeps it
   * out of service and reported until the master has it deleted. The marker
   * is written under the exclusive lock, after whoever found the damage lets
   * go: a deletion that got there first leaves no marker behind.
   */
  private markCorrupt(rep: Replica, reason: string): void {
    if (rep.corrupt) return;
    rep.corrupt = true;
    if (this.closed) return;
    this.track(() =>
      rep.lock.exclusive(async () => {
        if (rep.state !== 'live' || this.replicas.get(rep.handle) !== rep) return;
        await this.files.writeCorruptMark(rep.handle, reason);
      }),
    ).catch((e: unknown) => this.onMarkFailed?.(rep.handle, e as Error));
  }

  // ---- internals: per-handle serialization ----

  private track<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new GfsError('UNAVAILABLE', 'replica store is closed'));
    const p = fn().catch((e: unknown) => {
      throw noSpaceError(e, this.serverId);
    });
    this.inflight.add(p);
    const done = (): void => {
      this.inflight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  /**
   * Runs fn under the replica's lock (exclusive for mutations). A replica
   * still being created is NOT_FOUND rather than waited for: creation holds
   * another replica's lock during copyLocal, and waiting here could close a cycle.
   */
  private withReplica<T>(handle: string, exclusive: boolean, fn: (rep: Replica) => Promise<T>, corruptToo = false): Promise<T> {
    // Only deletion touches a replica marked corrupt (corruptToo).
    const rep = this.replicas.get(handle);
    if (!rep || rep.state !== 'live') return Promise.reject(notFound(handle));
    if (rep.corrupt && !corruptToo) return Promise.reject(corruptError(handle));
    const body = async (): Promise<T> => {
      // Deleted (or found corrupt) while we queued.
      if (rep.state !== 'live') throw notFound(handle);
      if (rep.corrupt && !corruptToo) throw corruptError(handle);
      return fn(rep);
    };
    return exclusive ? rep.lock.exclusive(body) : rep.lock.shared(body);
  }

  /** Reserves handle (EXISTS if present), runs fn under its lock, and makes it live; undoes everything on failure. */
  private async creating(handle: string, fn: (rep: Replica) => Promise<void>): Promise<void> {
    for (;;) {
      const existing = this.replicas.get(handle);
      if (!existing) break;
      // A fresh copy replaces one found corrupt.
      if (existing.state === 'live' && existing.corrupt) {
        await this.delete(handle);
        continue;
      }
      if (existing.state !== 'deleting') throw new GfsError('EXISTS', `chunk ${handle} already exists here`);
      // Wait for the deletion to finish removing files before creating new ones.
      await existing.lock.exclusive(async () => {});
    }
    const rep: Replica = {
      handle,
      state: 'creating',
      version: 0,
      sizeBytes: 0,
      crcs: new Uint32Array(1),
      dirty: false,
      syncing: undefined,
      corrupt: false,
      lock: new RwLock(),
    };
    this.replicas.set(handle, rep);
    await rep.lock.exclusive(async () => {
      try {
        await fn(rep);
      } catch (e) {
        this.replicas.delete(handle);
        await this.fds.drop(handle).catch(() => {});
        await Promise.allSettled([
          unlinkIfPresent(this.files.file(handle, 'meta')),
          unlinkIfPresent(this.files.file(handle, 'chunk')),
          unlinkIfPresent(this.files.file(handle, 'crc')),
        ]);
        throw e;
      }
      rep.state = 'live';
      this.usedTotalBytes += rep.sizeBytes;
    });
  }
}
