import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { crc32c } from '../shared/checksum.js';
import { GfsError, invariant } from '../shared/errors.js';
import { checkHandle, isHandle } from '../shared/handles.js';
import type { ChunkReport } from '../shared/wire.js';
import { timedFsync } from '../shared/metrics.js';

// The chunkserver's replica store. Each replica is three files under
// <dir>/chunks/:
//   <handle>.chunk  the data; its file size is the chunk's length (may be sparse)
//   <handle>.crc    u32 LE crc32c per checksum block, block i at byte 4*i; the
//                   last block's crc covers only the bytes present
//   <handle>.meta   JSON {version}, replaced atomically (tmp + rename)
// The crc tables live in memory (loaded at open) and are what every read is
// verified against: a restarted chunkserver never recomputes them from data it
// cannot trust. Mutations are applied (data + crc pwritten) before they
// resolve but only reach the disk on sync(), as in GFS; creation, version
// changes and local copies are durable before they resolve.

export interface StoreOptions {
  dir: string;
  chunkSizeBytes: number;
  checksumBlockBytes: number;
  /** Called every time corruption is detected (not deduplicated). Must not throw. */
  onCorrupt?: (handle: string) => void;
  /** Bound on cached open file descriptors (default 256). */
  maxOpenFiles?: number;
  /** Told how long each fsync took (metrics): chunk data + checksums, version metadata, the chunks directory. */
  onFsync?: (kind: 'chunk' | 'meta' | 'dir', seconds: number) => void;
}

const defaultMaxOpenFiles = 256;
/** Replicas loaded in parallel at open: enough to hide latency, few enough to bound fds. */
const loadConcurrency = 32;
/** verify() reads this much per step and releases the lock in between, so scrubbing never stalls writers for long. */
const scrubPieceBytes = 4 * 1024 * 1024;
const tmpSuffix = '.tmp';
const fileNameRe = /^([0-9a-f]{16})\.(chunk|crc|meta)$/;

type ReplicaState = 'creating' | 'live' | 'deleting';

interface Replica {
  readonly handle: string;
  state: ReplicaState;
  version: number;
  sizeBytes: number;
  /** crc per block; entries past ceil(sizeBytes / blockBytes) are meaningless. Grows on demand. */
  crcs: Uint32Array;
  /** Mutated since the last successful sync(). */
  dirty: boolean;
  /** The sync in flight, so a concurrent sync() waits for it instead of returning early. */
  syncing: Promise<void> | undefined;
  readonly lock: RwLock;
}

interface FdEntry {
  data: Promise<FileHandle>;
  /** Opened lazily: only mutations and sync need it. */
  crc: Promise<FileHandle> | undefined;
  users: number;
  closed: boolean;
}

/**
 * Per-handle reader/writer lock. FIFO, so a queued writer is not starved by a
 * stream of readers and mutations apply in the order they were called.
 */
class RwLock {
  private readers = 0;
  private writer = false;
  private readonly waiters: { exclusive: boolean; grant: () => void }[] = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await fn();
    } finally {
      this.readers--;
      this.drain();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(true);
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.drain();
    }
  }

  // Grants synchronously when free, so a caller that just made the lock holds
  // it before anyone else can queue.
  private acquire(exclusive: boolean): Promise<void> | undefined {
    if (this.waiters.length === 0 && this.canGrant(exclusive)) {
      this.take(exclusive);
      return undefined;
    }
    return new Promise((grant) => this.waiters.push({ exclusive, grant }));
  }

  private canGrant(exclusive: boolean): boolean {
    return exclusive ? !this.writer && this.readers === 0 : !this.writer;
  }

  private take(exclusive: boolean): void {
    if (exclusive) this.writer = true;
    else this.readers++;
  }

  private drain(): void {
    while (this.waiters.length > 0 && this.canGrant(this.waiters[0]!.exclusive)) {
      const w = this.waiters.shift()!;
      this.take(w.exclusive);
      w.grant();
    }
  }
}

function notFound(handle: string): GfsError {
  return new GfsError('NOT_FOUND', `no replica of chunk ${handle} here`);
}

function checkVersion(version: unknown): number {
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
    throw new GfsError('BAD_REQUEST', `invalid chunk version: ${String(version)}`);
  }
  return version;
}

function checkByteCount(name: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new GfsError('OUT_OF_RANGE', `${name} must be a non-negative integer, got ${String(n)}`);
  }
  return n;
}

function isErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as NodeJS.ErrnoException).code === code;
}

async function unlinkIfPresent(file: string): Promise<void> {
  try {
    await fsp.unlink(file);
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
  }
}

/** pread until `length` bytes or EOF; returns the bytes read. */
async function preadFull(fh: FileHandle, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, at + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function pwriteFull(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

function crcBytes(crcs: Uint32Array, first: number, count: number): Buffer {
  // Explicit LE rather than viewing the Uint32Array's memory: the file format must not depend on host endianness.
  const out = Buffer.allocUnsafe(4 * count);
  for (let i = 0; i < count; i++) out.writeUInt32LE(crcs[first + i]!, 4 * i);
  return out;
}

export class ReplicaStore {
  private readonly chunksDir: string;
  private readonly chunkSizeBytes: number;
  private readonly blockBytes: number;
  private readonly maxBlocks: number;
  private readonly maxOpenFiles: number;
  private readonly onCorrupt: ((handle: string) => void) | undefined;
  private readonly replicas = new Map<string, Replica>();
  /** LRU of open fds: Map iteration order is insertion order, touched entries are re-inserted. */
  private readonly fds = new Map<string, FdEntry>();
  private openFdCount = 0;
  private usedTotalBytes = 0;
  /** Zeros for gap and pad crcs, and the crc of one whole zero block (holes are common). */
  private readonly zeroBlock: Buffer;
  private readonly zeroBlockCrc: number;
  private readonly inflight = new Set<Promise<unknown>>();
  private closed = false;
  private dirSyncCurrent: Promise<void> | undefined;
  private dirSyncNext: Promise<void> | undefined;
  private readonly onFsync: StoreOptions['onFsync'];
  /** Bytes written into replica files (mutations, pads excluded, and clones), ever. */
  writtenBytes = 0;

  private constructor(opts: StoreOptions) {
    invariant(Number.isSafeInteger(opts.chunkSizeBytes) && opts.chunkSizeBytes > 0, 'chunkSizeBytes must be a positive integer');
    invariant(
      Number.isSafeInteger(opts.checksumBlockBytes) && opts.checksumBlockBytes > 0 && opts.checksumBlockBytes <= 64 * 1024 * 1024,
      'checksumBlockBytes must be a positive integer (at most 64 MiB)',
    );
    const maxOpenFiles = opts.maxOpenFiles ?? defaultMaxOpenFiles;
    // Two fds per replica (data + crc), so fewer than two could never hold one replica open.
    invariant(Number.isSafeInteger(maxOpenFiles) && maxOpenFiles >= 2, 'maxOpenFiles must be an integer >= 2');
    this.chunksDir = path.join(opts.dir, 'chunks');
    this.chunkSizeBytes = opts.chunkSizeBytes;
    this.blockBytes = opts.checksumBlockBytes;
    this.maxBlocks = Math.ceil(opts.chunkSizeBytes / opts.checksumBlockBytes);
    this.maxOpenFiles = maxOpenFiles;
    this.onCorrupt = opts.onCorrupt;
    this.onFsync = opts.onFsync;
    this.zeroBlock = Buffer.alloc(this.blockBytes);
    this.zeroBlockCrc = crc32c(this.zeroBlock);
  }

  static async open(opts: StoreOptions): Promise<ReplicaStore> {
    const store = new ReplicaStore(opts);
    await fsp.mkdir(store.chunksDir, { recursive: true });
    await store.scan();
    return store;
  }

  // ---- queries (synchronous, from memory) ----

  list(): ChunkReport[] {
    const out: ChunkReport[] = [];
    for (const r of this.replicas.values()) {
      if (r.state === 'live') out.push({ handle: r.handle, version: r.version, sizeBytes: r.sizeBytes });
    }
    return out;
  }

  /** Replicas held. */
  get count(): number {
    return this.replicas.size;
  }

  /** False for unknown handles and for strings that are not handles at all. */
  has(handle: string): boolean {
    return isHandle(handle) && this.replicas.get(handle)?.state === 'live';
  }

  info(handle: string): { version: number; sizeBytes: number } | undefined {
    if (!isHandle(handle)) return undefined;
    const r = this.replicas.get(handle);
    return r?.state === 'live' ? { version: r.version, sizeBytes: r.sizeBytes } : undefined;
  }

  usedBytes(): number {
    return this.usedTotalBytes;
  }

  async diskStats(): Promise<{ capacityBytes: number; freeBytes: number }> {
    const s = await fsp.statfs(this.chunksDir);
    return { capacityBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
  }

  // ---- lifecycle of replicas ----

  async create(handle: string, version: number): Promise<void> {
    checkHandle(handle);
    checkVersion(version);
    return this.track(() =>
      this.creating(handle, async (rep) => {
        await this.createEmptyFile(this.file(handle, 'chunk'));
        await this.createEmptyFile(this.file(handle, 'crc'));
        // The meta is written last: a crash before it leaves a .chunk without
        // .meta, which open() removes. Its dir fsync also covers the two files above.
        await this.writeMeta(handle, version);
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
        await this.writeMeta(handle, version);
        rep.version = version;
      }),
    );
  }

  async delete(handle: string): Promise<void> {
    checkHandle(handle);
    return this.track(() =>
      this.withReplica(handle, true, async (rep) => {
        rep.state = 'deleting';
        this.usedTotalBytes -= rep.sizeBytes;
        try {
          await this.dropFds(handle);
          // Meta first: a crash part-way leaves a .chunk without .meta, which
          // open() cleans up, never a replica that comes back half-deleted.
          // No dir fsync: a deletion undone by a crash is an orphan the master deletes again.
          await unlinkIfPresent(this.file(handle, 'meta'));
          await unlinkIfPresent(this.file(handle, 'chunk'));
          await unlinkIfPresent(this.file(handle, 'crc'));
        } finally {
          this.replicas.delete(handle);
        }
      }),
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
          await fsp.copyFile(this.file(handle, 'chunk'), this.file(newHandle, 'chunk'), fsConstants.COPYFILE_FICLONE);
          // The crc file is written from the in-memory table rather than
          // copied: that table is what the source's reads are verified against.
          const blocks = this.blocksFor(src.sizeBytes);
          dst.crcs = src.crcs.slice(0, Math.max(blocks, 1));
          dst.sizeBytes = src.sizeBytes;
          const crcFh = await fsp.open(this.file(newHandle, 'crc'), 'w');
          try {
            await pwriteFull(crcFh, crcBytes(dst.crcs, 0, blocks), 0);
            await crcFh.sync();
          } finally {
            await crcFh.close();
          }
        });
        const dataFh = await fsp.open(this.file(newHandle, 'chunk'), 'r+');
        try {
          await dataFh.sync();
        } finally {
          await dataFh.close();
        }
        await this.writeMeta(newHandle, version);
        dst.version = version;
      }),
    );
  }

  // ---- data ----

  /**
   * Writes data at offset; returns the chunk's new length. `atVersion`: only while the replica is at this version, checked under the
   * replica's lock, which setVersion takes too: a mutation ordered under a lease at version v never
   * lands after the replica moved on to v+1 (a clone copied from it then would miss it).
   */
  async write(handle: string, offset: number, data: Buffer, atVersion?: number): Promise<number> {
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
        return this.mutate(rep, offset, data);
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
        return this.mutate(rep, toSizeBytes, Buffer.alloc(0));
      }),
    );
  }

  /** Reads up to length bytes at offset, clamped at the chunk's end; every block touched is verified in full. */
  async read(handle: string, offset: number, length: number): Promise<Buffer> {
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
        const buf = await this.readVerified(rep, firstBlock, lastBlock);
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
          const p = this.withFds(rep, true, (data, crc) => this.timed('chunk', async () => void (await Promise.all([data.datasync(), crc!.datasync()]))));
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
          const blocks = this.blocksFor(rep.sizeBytes);
          if (block >= blocks) return 'done';
          const last = Math.min(blocks, block + pieceBlocks) - 1;
          await this.readVerified(rep, block, last);
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
    const entries = [...this.fds.values()];
    this.fds.clear();
    await Promise.all(entries.map((e) => this.closeEntry(e)));
    await Promise.allSettled([this.dirSyncCurrent, this.dirSyncNext]);
  }

  // ---- internals: mutation ----

  /**
   * Applies data at offset (for pad: offset = target length, data empty).
   * Bytes between the current end and offset become zeros. All crcs are
   * computed, and partially covered blocks verified, before anything is
   * written, so a CORRUPT error leaves the replica untouched.
   */
  private async mutate(rep: Replica, offset: number, data: Buffer): Promise<number> {
    const B = this.blockBytes;
    const oldSize = rep.sizeBytes;
    const end = offset + data.length;
    const newSize = Math.max(oldSize, end);
    // Blocks whose content changes: from the first written (or zero-filled) byte to the last.
    const firstBlock = Math.floor(Math.min(offset, oldSize) / B);
    const lastBlock = Math.floor((end - 1) / B);
    invariant(end > Math.min(offset, oldSize), 'mutation changes nothing');
    const count = lastBlock - firstBlock + 1;
    const newCrcs = new Uint32Array(count);
    const needRead: number[] = [];

    for (let b = firstBlock; b <= lastBlock; b++) {
      const bs = b * B;
      const be = Math.min(bs + B, newSize);
      const hasOld = oldSize > bs;
      if (offset <= bs && end >= be) {
        // Whole block comes from the caller's buffer.
        newCrcs[b - firstBlock] = crc32c(data.subarray(bs - offset, be - offset));
      } else if (!hasOld || offset >= oldSize) {
        // The block's old bytes, if any, are exactly its prefix up to the old
        // end, followed by zeros (gap) and new bytes: continue the old crc
        // instead of reading them back. Corrupt old bytes still fail later
        // reads, since the continued crc describes the intended bytes.
        let c = hasOld ? rep.crcs[b]! : 0;
        const zs = Math.max(bs, oldSize);
        const ze = Math.min(be, offset);
        if (ze > zs) c = !hasOld && ze - zs === B ? this.zeroBlockCrc : crc32c(this.zeroBlock.subarray(0, ze - zs), c);
        const ds = Math.max(bs, offset);
        const de = Math.min(be, end);
        if (de > ds) c = crc32c(data.subarray(ds - offset, de - offset), c);
        newCrcs[b - firstBlock] = c;
      } else {
        // Overwrite that keeps some old bytes of the block: only the first and
        // last block can land here.
        needRead.push(b);
      }
    }

    return this.withFds(rep, true, async (dataFh, crcFh) => {
      for (const b of needRead) {
        const bs = b * B;
        const oldEnd = Math.min(bs + B, oldSize);
        const be = Math.min(bs + B, newSize);
        const buf = Buffer.allocUnsafe(be - bs);
        const got = await preadFull(dataFh, buf, 0, oldEnd - bs, bs);
        // Verify before overlaying, so an overwrite never launders corruption into a fresh crc.
        if (got !== oldEnd - bs || crc32c(buf.subarray(0, oldEnd - bs)) !== rep.crcs[b]) this.corrupt(rep.handle, b);
        const ds = Math.max(bs, offset);
        const de = Math.min(be, end);
        data.copy(buf, ds - bs, ds - offset, de - offset);
        newCrcs[b - firstBlock] = crc32c(buf);
      }

      // Data and crc writes go out together (they are unordered on disk until
      // sync() anyway), which roughly halves the latency of small appends.
      const [dataDone, crcDone] = await Promise.allSettled([
        // pad: truncate extends with a hole, which reads as zeros
        data.length > 0 ? pwriteFull(dataFh, data, offset) : dataFh.truncate(newSize),
        pwriteFull(crcFh!, crcBytes(newCrcs, 0, count), 4 * firstBlock),
      ]);
      // Failed data write: the old table still describes whatever survived, or
      // reads report the damage as CORRUPT.
      if (dataDone.status === 'rejected') throw dataDone.reason;
      // The data file holds the new bytes now, so the table must describe them
      // even if the crc file could not be updated (a restart would then find
      // the mismatch and the replica is re-replicated).
      this.ensureBlocks(rep, lastBlock + 1);
      rep.crcs.set(newCrcs, firstBlock);
      rep.sizeBytes = newSize;
      this.usedTotalBytes += newSize - oldSize;
      this.writtenBytes += data.length;
      rep.dirty = true;
      if (crcDone.status === 'rejected') throw crcDone.reason;
      return newSize;
    });
  }

  /** Reads blocks [firstBlock, lastBlock] (clamped at the chunk's end) in one pread and verifies each. */
  private async readVerified(rep: Replica, firstBlock: number, lastBlock: number): Promise<Buffer> {
    const B = this.blockBytes;
    const start = firstBlock * B;
    const stop = Math.min((lastBlock + 1) * B, rep.sizeBytes);
    const buf = Buffer.allocUnsafe(stop - start);
    const got = await this.withFds(rep, false, (fh) => preadFull(fh, buf, 0, buf.length, start));
    // A file shorter than recorded reads as zeros here; the crcs decide whether that is right.
    if (got < buf.length) buf.fill(0, got);
    for (let b = firstBlock; b <= lastBlock; b++) {
      const bs = b * B - start;
      const be = Math.min(bs + B, buf.length);
      if (crc32c(buf.subarray(bs, be)) !== rep.crcs[b]) this.corrupt(rep.handle, b);
    }
    return buf;
  }

  private corrupt(handle: string, block: number): never {
    try {
      this.onCorrupt?.(handle);
    } catch {
      // A failing reporter must not turn a CORRUPT answer into some other error.
    }
    throw new GfsError('CORRUPT', `chunk ${handle}: checksum mismatch in block ${block}`, { handle, block });
  }

  private blocksFor(sizeBytes: number): number {
    return Math.ceil(sizeBytes / this.blockBytes);
  }

  // Tables grow geometrically (bounded by the chunk's block count), so
  // sequential appends reallocate O(log n) times and a part-filled chunk only
  // costs memory for what it holds.
  private ensureBlocks(rep: Replica, blocks: number): void {
    if (rep.crcs.length >= blocks) return;
    const grown = new Uint32Array(Math.max(blocks, Math.min(this.maxBlocks, 2 * rep.crcs.length)));
    grown.set(rep.crcs);
    rep.crcs = grown;
  }

  // ---- internals: per-handle serialization ----

  private track<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new GfsError('UNAVAILABLE', 'replica store is closed'));
    const p = fn();
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
  private withReplica<T>(handle: string, exclusive: boolean, fn: (rep: Replica) => Promise<T>): Promise<T> {
    const rep = this.replicas.get(handle);
    if (!rep || rep.state !== 'live') return Promise.reject(notFound(handle));
    const body = async (): Promise<T> => {
      // Deleted while we queued.
      if (rep.state !== 'live') throw notFound(handle);
      return fn(rep);
    };
    return exclusive ? rep.lock.exclusive(body) : rep.lock.shared(body);
  }

  /** Reserves handle (EXISTS if present), runs fn under its lock, and makes it live; undoes everything on failure. */
  private async creating(handle: string, fn: (rep: Replica) => Promise<void>): Promise<void> {
    for (;;) {
      const existing = this.replicas.get(handle);
      if (!existing) break;
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
      lock: new RwLock(),
    };
    this.replicas.set(handle, rep);
    await rep.lock.exclusive(async () => {
      try {
        await fn(rep);
      } catch (e) {
        this.replicas.delete(handle);
        await this.dropFds(handle).catch(() => {});
        await Promise.allSettled([
          unlinkIfPresent(this.file(handle, 'meta')),
          unlinkIfPresent(this.file(handle, 'chunk')),
          unlinkIfPresent(this.file(handle, 'crc')),
        ]);
        throw e;
      }
      rep.state = 'live';
      this.usedTotalBytes += rep.sizeBytes;
    });
  }

  // ---- internals: fd cache ----

  private async withFds<T>(rep: Replica, needCrc: boolean, fn: (data: FileHandle, crc: FileHandle | undefined) => Promise<T>): Promise<T> {
    const handle = rep.handle;
    let e = this.fds.get(handle);
    if (e) {
      this.fds.delete(handle);
      this.fds.set(handle, e);
    } else {
      e = { data: this.openFd(this.file(handle, 'chunk')), crc: undefined, users: 0, closed: false };
      this.fds.set(handle, e);
    }
    if (needCrc && !e.crc) e.crc = this.openFd(this.file(handle, 'crc'));
    e.users++;
    this.evictIdle();
    try {
      let data: FileHandle;
      let crc: FileHandle | undefined;
      try {
        data = await e.data;
        crc = needCrc ? await e.crc : undefined;
      } catch (err) {
        // Never keep a failed open cached; the entry closes once its last user leaves.
        if (this.fds.get(handle) === e) this.fds.delete(handle);
        throw err;
      }
      return await fn(data, crc);
    } finally {
      e.users--;
      if (e.users === 0 && this.fds.get(handle) !== e) void this.closeEntry(e);
      else if (this.openFdCount > this.maxOpenFiles) this.evictIdle();
    }
  }

  private openFd(file: string): Promise<FileHandle> {
    this.openFdCount++;
    const p = fsp.open(file, 'r+');
    p.catch(() => {
      this.openFdCount--;
    });
    return p;
  }

  /** Closes least recently used entries nobody is using until under the bound; entries in use are skipped, never closed. */
  private evictIdle(): void {
    if (this.openFdCount <= this.maxOpenFiles) return;
    for (const [handle, e] of this.fds) {
      if (this.openFdCount <= this.maxOpenFiles) break;
      if (e.users > 0) continue;
      this.fds.delete(handle);
      void this.closeEntry(e);
    }
  }

  private async closeEntry(e: FdEntry): Promise<void> {
    if (e.closed) return;
    e.closed = true;
    const all: Promise<FileHandle>[] = e.crc ? [e.data, e.crc] : [e.data];
    // Counted down before the close completes so eviction stops at once; a
    // failed open was already counted down by openFd.
    await Promise.allSettled(
      all.map(async (p) => {
        const fh = await p;
        this.openFdCount--;
        await fh.close();
      }),
    );
  }

  private async dropFds(handle: string): Promise<void> {
    const e = this.fds.get(handle);
    if (!e) return;
    invariant(e.users === 0, 'dropping fds still in use');
    this.fds.delete(handle);
    await this.closeEntry(e);
  }

  private timed<T>(kind: 'chunk' | 'meta' | 'dir', fn: () => Promise<T>): Promise<T> {
    const onFsync = this.onFsync;
    return timedFsync(onFsync && ((seconds) => onFsync(kind, seconds)), fn);
  }

  // ---- internals: files ----

  private file(handle: string, kind: 'chunk' | 'crc' | 'meta'): string {
    // Handles come from the wire: re-check here so no path is ever built from an unchecked string.
    return path.join(this.chunksDir, `${checkHandle(handle)}.${kind}`);
  }

  private async createEmptyFile(file: string): Promise<void> {
    // 'w' rather than 'wx': a leftover from a deletion interrupted by an I/O error must not block re-creation.
    const fh = await fsp.open(file, 'w');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Replaces <handle>.meta atomically and durably: tmp, fsync, rename, fsync dir. */
  private async writeMeta(handle: string, version: number): Promise<void> {
    const target = this.file(handle, 'meta');
    const tmp = target + tmpSuffix; // one writer per handle (its lock), so the name cannot collide
    const fh = await fsp.open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify({ version }));
      await this.timed('meta', () => fh.sync());
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, target);
    await this.syncDir();
  }

  /**
   * fsyncs the chunks directory. Concurrent callers share one fsync when it
   * started after their change, so a burst of creates costs two fsyncs, not one each.
   */
  private syncDir(): Promise<void> {
    if (this.dirSyncNext) return this.dirSyncNext;
    if (!this.dirSyncCurrent) return this.startDirSync();
    // The running fsync may have started before our rename: queue one more after it.
    const next = this.dirSyncCurrent
      .catch(() => {})
      .then(() => {
        this.dirSyncNext = undefined;
        return this.startDirSync();
      });
    this.dirSyncNext = next;
    return next;
  }

  private startDirSync(): Promise<void> {
    const p = (async () => {
      const fh = await fsp.open(this.chunksDir, 'r');
      try {
        await this.timed('dir', () => fh.sync());
      } finally {
        await fh.close();
      }
    })();
    this.dirSyncCurrent = p;
    const clear = (): void => {
      if (this.dirSyncCurrent === p) this.dirSyncCurrent = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  // ---- internals: startup ----

  private async scan(): Promise<void> {
    const names = await fsp.readdir(this.chunksDir);
    const groups = new Map<string, Set<string>>();
    const leftovers: string[] = [];
    for (const name of names) {
      if (name.endsWith(tmpSuffix)) {
        leftovers.push(name);
        continue;
      }
      const m = fileNameRe.exec(name);
      if (!m) continue; // not ours: leave it alone
      const kinds = groups.get(m[1]!) ?? new Set<string>();
      kinds.add(m[2]!);
      groups.set(m[1]!, kinds);
    }

    const toLoad: string[] = [];
    for (const [handle, kinds] of groups) {
      // A .chunk without .meta is a create or delete interrupted by a crash; a
      // .meta without .chunk has lost its data. Neither is a replica.
      if (kinds.has('chunk') && kinds.has('meta')) toLoad.push(handle);
      else for (const k of kinds) leftovers.push(`${handle}.${k}`);
    }

    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < toLoad.length) {
        const handle = toLoad[next++]!;
        const rep = await this.loadReplica(handle, groups.get(handle)!.has('crc'));
        if (rep) {
          this.replicas.set(handle, rep);
          this.usedTotalBytes += rep.sizeBytes;
        } else {
          leftovers.push(`${handle}.meta`, `${handle}.chunk`, `${handle}.crc`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(loadConcurrency, toLoad.length) }, worker));

    if (leftovers.length > 0) {
      await Promise.all(leftovers.map((name) => unlinkIfPresent(path.join(this.chunksDir, name))));
      await this.syncDir();
    }
  }

  /** Loads one replica's version, length and crc table; undefined if its meta is unusable. */
  private async loadReplica(handle: string, hasCrcFile: boolean): Promise<Replica | undefined> {
    let version: number;
    try {
      const meta: unknown = JSON.parse(await fsp.readFile(this.file(handle, 'meta'), 'utf8'));
      version = checkVersion((meta as { version?: unknown } | null)?.version);
    } catch {
      // Meta is replaced atomically, so this is damage, not a torn write; a
      // replica of unknown version can never be served, so drop it and let the
      // master re-replicate.
      return undefined;
    }
    const sizeBytes = (await fsp.stat(this.file(handle, 'chunk'))).size;
    const blocks = this.blocksFor(sizeBytes);
    const crcs = new Uint32Array(Math.max(blocks, 1));
    if (hasCrcFile) {
      const raw = await fsp.readFile(this.file(handle, 'crc'));
      const have = Math.min(blocks, Math.floor(raw.length / 4));
      for (let i = 0; i < have; i++) crcs[i] = raw.readUInt32LE(4 * i);
      // Blocks past the crc file's end (a crash between the data and crc
      // writes of an unsynced mutation) keep crc 0: they fail verification
      // (barring a 2^-32 coincidence) rather than being trusted.
    } else {
      await this.createEmptyFile(this.file(handle, 'crc'));
    }
    return {
      handle,
      state: 'live',
      version,
      sizeBytes,
      crcs,
      dirty: false,
      syncing: undefined,
      lock: new RwLock(),
    };
  }
}

/** A mutation ordered at one version must not land at another (see ReplicaStore.write). */
function checkAtVersion(rep: { handle: string; version: number }, atVersion: number | undefined): void {
  if (atVersion !== undefined && rep.version !== atVersion) {
    throw new GfsError('STALE_VERSION', `replica of ${rep.handle} is at version ${rep.version}, the mutation was ordered at ${atVersion}`, { version: rep.version });
  }
}
