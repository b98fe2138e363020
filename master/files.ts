import { GfsError, invariant } from '../shared/errors.js';
import { isUnder, joinPath, normalizePath, trashDir } from '../shared/paths.js';
import { requestContext } from '../shared/log.js';
import { rpcJson } from '../shared/rpc.js';
import type { AllocateAnswer, ChunkInfoAnswer, ChunkLocation, ChunksAnswer, FileInfo, ListEntry, PosixAttrs, SetattrReq, TimeArg } from '../shared/wire.js';
import type { MasterContext } from './context.js';
import { revokeLease } from './revoke.js';
import { initialChunkVersion, type Node, type Owner, type SpecialType, type TimeSpec } from './core/namespace.js';
import { chooseReplicas } from './core/placement.js';

// The namespace operations clients call: create, mkdir, symlink, setattr
// (chmod/chown/utimens), delete (lazily, into the trash), undelete, rename,
// stat, list, and the chunks of a file with
// their locations, allocating and placing new ones. Every mutation goes
// through MasterContext.mutate (lock, check, log, apply); reads need no lock
// (in-memory state changes only inside apply).

/** Bound on the number of chunk-creation RPCs a single allocation makes at once. */
const maxAllocateChunks = 1024;
/** Rounds of placement for one chunk: a creation that fails is retried on another server this many times at most. */
const maxPlacementRounds = 3;

/** Only the owner fields of a request (a zod-checked body carries others too). */
function pickOwner(o: Owner): Owner {
  return { mode: o.mode, uid: o.uid, gid: o.gid };
}

/** What stat and list entries carry besides sizes: mode, owner, the times' nanoseconds, a link's target. */
function posixAttrs(n: Node): PosixAttrs {
  return { mode: n.mode, uid: n.uid, gid: n.gid, atimeMs: n.atimeMs, atimeNs: n.atimeNs, mtimeNs: n.mtimeNs, ctimeNs: n.ctimeNs, ...(n.type === 'symlink' ? { target: n.target } : {}), ...('rdev' in n && n.rdev !== 0 ? { rdev: n.rdev } : {}), ...(n.nlink !== undefined && n.nlink > 1 ? { nlink: n.nlink } : {}), ...(n.ino !== undefined ? { ino: n.ino } : {}) };
}

export class Files {
  constructor(private readonly m: MasterContext) {}

  async mkdir(rawPath: string, parents: boolean, owner: Owner = {}): Promise<void> {
    const path = normalizePath(rawPath);
    this.checkNotReserved(path);
    await this.m.mutate([{ path, mode: 'w' }], () => this.m.ns.checkMkdir(path, parents, Date.now(), pickOwner(owner)));
  }

  async create(rawPath: string, replication: number | undefined, exclusive = true, owner: Owner = {}): Promise<FileInfo> {
    const path = normalizePath(rawPath);
    this.checkNotReserved(path);
    await this.m.mutate([{ path, mode: 'w' }], () => {
      const existing = this.m.ns.get(path);
      if (existing && !exclusive && existing.type === 'file') return undefined;
      return this.m.ns.checkCreate(path, replication ?? this.m.opts.defaultReplication, Date.now(), pickOwner(owner));
    });
    return this.stat(path);
  }

  async symlink(rawPath: string, target: string, owner: Owner = {}): Promise<void> {
    const path = normalizePath(rawPath);
    this.checkNotReserved(path);
    await this.m.mutate([{ path, mode: 'w' }], () => this.m.ns.checkSymlink(path, target, Date.now(), pickOwner(owner)));
  }

  /** A FIFO, socket or device node: metadata only (the kernel does its I/O on the machine that opens it). */
  async mknod(rawPath: string, type: SpecialType, rdev: number, owner: Owner = {}): Promise<void> {
    const path = normalizePath(rawPath);
    this.checkNotReserved(path);
    await this.m.mutate([{ path, mode: 'w' }], () => this.m.ns.checkMknod(path, type, rdev, Date.now(), pickOwner(owner)));
  }

  /** chmod/chown/utimens: "now" is this master's clock, resolved here so the logged record replays exactly. */
  async setattr(rawPath: string, change: Omit<SetattrReq, 'path'>): Promise<void> {
    const path = normalizePath(rawPath);
    await this.m.mutate([{ path, mode: 'w' }], () => {
      const now: TimeSpec = { ms: Date.now(), ns: 0 };
      const at = (t: TimeArg | undefined) => (t === 'now' ? now : t);
      return this.m.ns.checkSetattr(path, { mode: change.mode, uid: change.uid, gid: change.gid, atime: at(change.atime), mtime: at(change.mtime) }, now.ms, now.ns);
    });
  }

  /** Lazy deletion: the file moves to the trash and is reclaimed after the grace period; `now` skips it. */
  async delete(rawPath: string, recursive: boolean, now = false): Promise<void> {
    const path = normalizePath(rawPath);
    // A name of a file with others goes at once: the data stays under them, so there is nothing for
    // the trash to save, and the others' nlink drops now, as unlink(2) says.
    const n = this.m.ns.get(path);
    if (now || isUnder(path, trashDir) || (n !== undefined && n.type !== 'dir' && (n.nlink ?? 1) > 1)) {
      await this.m.mutate([{ path, mode: 'w' }], () => this.m.ns.checkDelete(path, recursive, Date.now()));
      return;
    }
    const t = Date.now();
    const to = `${trashDir}/${t}_${Math.random().toString(36).slice(2, 8)}/${path.slice(path.lastIndexOf('/') + 1)}`;
    await this.m.mutate(
      [
        { path, mode: 'w' },
        { path: to, mode: 'w' },
      ],
      () => this.m.ns.checkTrash(path, to, recursive, t),
    );
  }

  trashList(): { path: string; trashPath: string; deletedAtMs: number; reclaimAtMs: number }[] {
    return [...this.m.ns.trash.entries()]
      .map(([trashPath, e]) => ({ path: e.path, trashPath, deletedAtMs: e.deletedAtMs, reclaimAtMs: e.deletedAtMs + this.m.opts.trashGraceMs }))
      .sort((a, b) => b.deletedAtMs - a.deletedAtMs);
  }

  /** Brings back the most recently deleted file or directory that was at `path`. */
  async undelete(rawPath: string): Promise<void> {
    const path = normalizePath(rawPath);
    // A resent undelete whose first attempt moved the file back finds the trash empty: answer as then.
    const rid = requestContext.getStore()?.rid;
    if (rid !== undefined && this.m.ns.requests.has(rid)) return this.m.checkWritable();
    const entry = this.trashList().find((e) => e.path === path);
    if (!entry) throw new GfsError('NOT_FOUND', `nothing deleted at ${path} is in the trash`);
    await this.m.mutate(
      [
        { path: entry.trashPath, mode: 'w' },
        { path, mode: 'w' },
      ],
      () => this.m.ns.checkRename(entry.trashPath, path, Date.now()),
    );
    // The timestamped trash directory held only this entry: remove it too, or the trash fills with empty directories.
    const dir = entry.trashPath.slice(0, entry.trashPath.lastIndexOf('/'));
    await this.m.mutate([{ path: dir, mode: 'w' }], () => {
      const n = this.m.ns.get(dir);
      return n?.type === 'dir' && this.m.ns.childNames(dir).length === 0 ? this.m.ns.checkDelete(dir, false, Date.now()) : undefined;
    });
  }

  /** Deletes trash entries past the grace period for good; their chunks become orphans and go with heartbeats. */
  async reclaimTrash(): Promise<void> {
    // Background work, not a client's call: never file its mutations under a request id.
    if (requestContext.getStore() !== undefined) return requestContext.exit(() => this.reclaimTrash());
    const nowMs = Date.now();
    for (const e of this.trashList()) {
      if (e.reclaimAtMs > nowMs) continue;
      const dir = e.trashPath.slice(0, e.trashPath.lastIndexOf('/'));
      await this.m.mutate([{ path: dir, mode: 'w' }], () => (this.m.ns.get(dir) ? this.m.ns.checkDelete(dir, true, nowMs) : undefined)).then(
        () => void this.m.counters.trashReclaimed++,
        (err) => this.m.opts.log.warn({ err: (err as Error).message, path: dir }, 'trash reclaim failed'),
      );
    }
  }

  async rename(rawSrc: string, rawDst: string): Promise<void> {
    const src = normalizePath(rawSrc);
    const dst = normalizePath(rawDst);
    this.checkNotReserved(dst);
    await this.m.mutate(
      [
        { path: src, mode: 'w' },
        { path: dst, mode: 'w' },
      ],
      () => this.m.ns.checkRename(src, dst, Date.now()),
    );
  }

  /** A hard link: dst becomes another name of src's file (of its data, attributes and times). */
  async link(rawSrc: string, rawDst: string): Promise<void> {
    const src = normalizePath(rawSrc);
    const dst = normalizePath(rawDst);
    this.checkNotReserved(src);
    this.checkNotReserved(dst);
    await this.m.mutate(
      [
        { path: src, mode: 'w' },
        { path: dst, mode: 'w' },
      ],
      () => this.m.ns.checkLink(src, dst, Date.now()),
    );
  }

  private checkNotReserved(path: string): void {
    if (isUnder(path, trashDir)) throw new GfsError('INVALID_PATH', `${trashDir} is reserved`);
  }

  // ---- reads: in-memory state changes only inside apply, so reads need no locks ----
  async stat(rawPath: string): Promise<FileInfo> {
    const path = normalizePath(rawPath);
    const n = this.m.ns.get(path);
    if (!n) throw new GfsError('NOT_FOUND', `no such file or directory: ${path}`);
    return this.fileInfo(path, n, await this.fileSize(n, true));
  }

  private fileInfo(path: string, n: Node, sizeBytes: number): FileInfo {
    return {
      path,
      type: n.type,
      sizeBytes,
      replication: n.type === 'file' ? n.replication : 0,
      chunkCount: n.type === 'file' ? n.chunks.length : 0,
      chunkSizeBytes: this.m.opts.chunkSizeBytes,
      mtimeMs: n.mtimeMs,
      ctimeMs: n.ctimeMs,
      ...posixAttrs(n),
    };
  }

  list(rawPath: string, recursive: boolean): ListEntry[] {
    const path = normalizePath(rawPath);
    const n = this.m.ns.get(path);
    if (!n) throw new GfsError('NOT_FOUND', `no such file or directory: ${path}`);
    let paths = n.type === 'file' ? [path] : recursive ? this.m.ns.subtree(path).slice(1) : this.m.ns.childNames(path).map((c) => joinPath(path, c));
    // The trash is listed only when asked for by name.
    if (!isUnder(path, trashDir)) paths = paths.filter((p) => !isUnder(p, trashDir));
    const nowMs = this.m.now();
    return paths.map((p) => {
      const node = this.m.ns.get(p)!;
      return {
        name: p.slice(p.lastIndexOf('/') + 1),
        path: p,
        type: node.type,
        sizeBytes: this.cachedFileSize(node, nowMs),
        replication: node.type === 'file' ? node.replication : 0,
        chunkCount: node.type === 'file' ? node.chunks.length : 0,
        mtimeMs: node.mtimeMs,
        ctimeMs: node.ctimeMs,
        ...posixAttrs(node),
      };
    });
  }

  private cachedFileSize(n: Node, nowMs: number): number {
    if (n.type === 'symlink') return Buffer.byteLength(n.target);
    if (n.type !== 'file' || n.chunks.length === 0) return 0;
    return (n.chunks.length - 1) * this.m.opts.chunkSizeBytes + this.m.servers.reportedSize(n.chunks[n.chunks.length - 1]!, nowMs);
  }

  /**
   * A file's length is that of its full chunks plus its last chunk, whose length the replicas know
   * best. `stat` asks them; a chunks lookup answers from heartbeats only (a reader that reaches the
   * end of that asks a replica itself, client/client.ts extent), so reads never fan out to replicas.
   */
  private async fileSize(n: Node, askReplicas: boolean): Promise<number> {
    if (n.type === 'symlink') return Buffer.byteLength(n.target);
    if (n.type !== 'file' || n.chunks.length === 0) return 0;
    const last = n.chunks[n.chunks.length - 1]!;
    const meta = this.m.ns.chunks.get(last);
    const base = (n.chunks.length - 1) * this.m.opts.chunkSizeBytes;
    // Just restarted, the master may not have heard yet where a written last chunk is: its length is
    // unknown, not 0 (a reader would silently get a short read of acknowledged data; found by the partition suite).
    if (meta && meta.version !== initialChunkVersion && this.m.servers.liveLocations(last, this.m.now()).length === 0 && this.m.inSafeMode()) {
      throw new GfsError('SAFE_MODE', 'master is in safe mode, waiting for chunkserver reports', { retryAfterMs: 500 });
    }
    const size = this.m.servers.reportedSize(last, this.m.now());
    if (!askReplicas) return base + size;
    this.m.counters.replicaSizeAsks++;
    // When every replica answers, their answers win over heartbeats: a chunk cut by a truncate is
    // shorter than its last report. With one silent, a report may be all the master has of the longest.
    let answeredMax = 0;
    let answers = 0;
    const holders = this.m.servers.liveLocations(last, this.m.now());
    const asks = holders.map(async (id) => {
      const ref = this.m.servers.ref(id)!;
      const info = await rpcJson<ChunkInfoAnswer>(ref.url, '/chunk/info', undefined, { query: { handle: last }, targetName: id, timeoutMs: 2_000 });
      if (meta && info.version >= meta.version) {
        answers++;
        answeredMax = Math.max(answeredMax, info.sizeBytes);
      }
    });
    await Promise.allSettled(asks);
    return base + (answers > 0 && answers === holders.length ? answeredMax : Math.max(size, answeredMax));
  }

  // ---- chunks ----
  private locationOf(index: number, handle: string): ChunkLocation {
    const meta = this.m.ns.chunks.get(handle);
    invariant(meta, `file refers to unknown chunk ${handle}`);
    const nowMs = this.m.now();
    // Only replicas at the master's current version are listed: a stale replica is never handed out.
    const replicas = this.m.servers
      .liveLocations(handle, nowMs)
      .map((id) => this.m.servers.ref(id)!)
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    return { index, handle, version: meta.version, replicas };
  }

  async chunks(rawPath: string, startIndex: number, count: number): Promise<ChunksAnswer> {
    const path = normalizePath(rawPath);
    const f = this.m.ns.getFile(path);
    // From heartbeats only: a reader that needs more asks a replica itself (client/client.ts extent), so reads never fan out.
    const sizeBytes = await this.fileSize(f, false);
    const chunks: ChunkLocation[] = [];
    for (let i = startIndex; i < Math.min(f.chunks.length, startIndex + count); i++) chunks.push(this.locationOf(i, f.chunks[i]!));
    return { path, sizeBytes, replication: f.replication, chunkSizeBytes: this.m.opts.chunkSizeBytes, chunkCount: f.chunks.length, chunks };
  }


  /**
   * The chunk at `index` of a file, allocating it (and any missing before it) with replicas placed.
   * `exclude` names chunkservers a writer found unable to hold the chunk (NO_SPACE): they are taken
   * out of its replica set (dropReported) and never chosen for it here. A chunk never written (no
   * lease yet, so no data anywhere) with fewer replicas than its goal is placed afresh up to it.
   */
  async allocate(rawPath: string, index: number, exclude: readonly string[] = []): Promise<AllocateAnswer> {
    const path = normalizePath(rawPath);
    this.m.checkMaster();
    if (this.m.inSafeMode()) throw new GfsError('SAFE_MODE', 'master is in safe mode, waiting for chunkserver reports', { retryAfterMs: 500 });
    const avoid = new Set(exclude);
    // The file's write lock is held through placement, so two clients
    // allocating the same chunk see one allocation and one replica set.
    // The node's own lock too when it has other names (hard links), which are other paths.
    const release = await this.m.locks.acquireWithInos([{ path, mode: 'w' }], () => this.m.ns.inosAt(path));
    return (async () => {
      const f = this.m.ns.getFile(path);
      if (index >= f.chunks.length) {
        if (index - f.chunks.length >= maxAllocateChunks) throw new GfsError('OUT_OF_RANGE', `cannot allocate more than ${maxAllocateChunks} chunks at once`);
        if (this.m.servers.alive(this.m.now()).length === 0) throw new GfsError('NO_REPLICAS', 'no live chunkservers');
        const op = this.m.ns.checkAllocate(path, index, Date.now());
        invariant(op && op.op === 'allocate', 'allocation past the end built no record');
        await this.m.logOp(op);
        this.m.counters.allocations += op.handles.length;
        await Promise.all(op.handles.map((h) => this.placeNewChunk(h, f.replication, avoid)));
      } else {
        const handle = f.chunks[index]!;
        const meta = this.m.ns.chunks.get(handle)!;
        const unwritten = meta.version === initialChunkVersion && !this.m.st.granting.has(handle);
        if (avoid.size > 0) await this.dropReported(handle, avoid, unwritten);
        if (unwritten && this.m.servers.liveLocations(handle, this.m.now()).length < f.replication) await this.placeNewChunk(handle, f.replication, avoid);
      }
      const loc = this.locationOf(index, f.chunks[index]!);
      // A chunk never written placed nowhere, because no live server has room for one: a full
      // cluster, said as such (with no live server at all, the lease ask that follows says
      // NO_REPLICAS, retried; a written chunk without live replicas is missing, not unplaceable).
      const unplaced = loc.replicas.length === 0 && loc.version === initialChunkVersion;
      const views = unplaced ? this.m.servers.views(this.m.now()) : [];
      if (views.length > 0 && views.every((v) => v.freeBytes < this.m.opts.chunkSizeBytes)) {
        throw new GfsError('NO_SPACE', `no chunkserver has room for a new chunk of ${path} (each is below its reserve or has less than a chunk free: gfs status shows FULL)`, { retryAfterMs: 1_000 });
      }
      return { ...loc, goal: f.replication };
    })().finally(() => {
      release();
      this.m.checkpointSoon();
    });
  }

  /**
   * A writer found these servers unable to hold the chunk (a full disk). They leave its replica set
   * (ordered deleted: a report sent meanwhile does not list them again, core/report.ts). A written
   * chunk keeps at least one replica (it may hold the only copy of acknowledged data; the writer
   * then gets NO_SPACE); its lease, if it names them, is asked back, so the next grant moves the
   * rest to a new version without them (stale from then on) and the healer copies the chunk to a
   * server with room.
   */
  private async dropReported(handle: string, avoid: ReadonlySet<string>, unwritten: boolean): Promise<void> {
    const nowMs = this.m.now();
    const live = this.m.servers.liveLocations(handle, nowMs);
    const bad = live.filter((id) => avoid.has(id));
    if (!unwritten && bad.length === live.length) return;
    for (const id of bad) {
      this.m.st.orderDelete(id, handle);
      this.m.opts.log.warn({ handle, server: id }, 'replica dropped: a writer found its chunkserver unable to hold the chunk');
    }
    const l = this.m.st.leases.get(handle);
    if (!l || ![l.primary, ...l.secondaries].some((id) => avoid.has(id))) return;
    await revokeLease(this.m, handle);
  }

  /**
   * Creates replicas of a chunk up to `replication`, on the best servers with room. A creation that
   * fails (a full disk, an unreachable server) is placed afresh on another server, for a few rounds.
   */
  async placeNewChunk(handle: string, replication: number, avoid: ReadonlySet<string> = new Set()): Promise<void> {
    const version = this.m.ns.chunks.get(handle)!.version;
    const failed = new Set<string>();
    this.m.st.placing.add(handle);
    try {
      for (let round = 0; round < maxPlacementRounds; round++) {
        const nowMs = this.m.now();
        const have = new Set(this.m.servers.liveLocations(handle, nowMs));
        if (have.size >= replication) return;
        const ids = chooseReplicas(this.m.servers.views(nowMs), replication - have.size, new Set([...have, ...avoid, ...failed]), { chunkSizeBytes: this.m.opts.chunkSizeBytes, recentCreatesLimit: 32 });
        if (ids.length === 0) return;
        await Promise.all(
          ids.map(async (id) => {
            const ref = this.m.servers.ref(id)!;
            try {
              await rpcJson(ref.url, '/chunk/create', { handle, version }, { targetName: id, timeoutMs: 5_000 });
              this.m.servers.noteCreate(id, this.m.now());
              // Defence in depth (leases wait while a chunk is placed): a replica that missed a version bump is stale.
              if (this.m.ns.chunks.get(handle)?.version !== version) return;
              this.m.servers.addLocation(handle, id);
            } catch (e) {
              failed.add(id);
              this.m.opts.log.warn({ handle, server: id, err: (e as Error).message }, 'chunk creation failed; placing the replica elsewhere');
            }
          }),
        );
        if (failed.size === 0 || this.m.ns.chunks.get(handle)?.version !== version) return;
      }
    } finally {
      this.m.st.placing.delete(handle);
    }
  }
}
