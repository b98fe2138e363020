import { performance } from 'node:perf_hooks';
import { GfsError, invariant } from '../shared/errors.js';
import { normalizePath, isUnder, joinPath, trashDir } from '../shared/paths.js';
import { rpcJson } from '../shared/rpc.js';
import type { Logger } from '../shared/log.js';
import type {
  ChunkInfoAnswer,
  ChunkLocation,
  ChunkReport,
  ChunksAnswer,
  FileInfo,
  HeartbeatAnswer,
  HeartbeatReq,
  LeaseAnswer,
  LeaseConfirmAnswer,
  ListEntry,
  RegisterReq,
  ReplicaRef,
} from '../shared/wire.js';
import { ChunkServers } from './chunkservers.js';
import { decideLease, extendLease, type Lease } from './leases.js';
import { LockManager, type LockMode } from './locks.js';
import { Namespace, initialChunkVersion, type NamespaceSnapshot, type Node, type Op } from './namespace.js';
import { OpLog } from './oplog.js';
import { chooseReplicas } from './placement.js';

export interface MasterOptions {
  dir: string;
  chunkSizeBytes: number;
  leaseMs: number;
  heartbeatMs: number;
  deadMs: number;
  safeModeMs: number;
  checkpointLogBytes: number;
  defaultReplication: number;
  log: Logger;
  /** Monotonic clock in ms; injectable for tests. */
  clock?: () => number;
}

/** A chunk whose version changed this recently may still be reported at the old version by a heartbeat in flight. */
const versionRaceMs = 15_000;
/** Bound on the number of chunk-creation RPCs a single allocation makes at once. */
const maxAllocateChunks = 1024;

export class Master {
  readonly locks = new LockManager();
  readonly servers: ChunkServers;
  readonly leases = new Map<string, Lease>();
  private readonly grantsInFlight = new Map<string, Promise<LeaseAnswer>>();
  private readonly versionBumpedAtMs = new Map<string, number>();
  private readonly clock: () => number;
  readonly startedAtMs: number;
  private grantsAllowedAtMs: number;
  private safeModeUntilMs: number;
  private safeModeLeft = false;
  private checkpointing: Promise<void> | undefined;
  readonly counters = { leaseGrants: 0, leaseExtensions: 0, allocations: 0, staleReplicasDropped: 0, orphansDeleted: 0 };

  private constructor(
    readonly opts: MasterOptions,
    public ns: Namespace,
    readonly oplog: OpLog,
    recovered: boolean,
  ) {
    this.clock = opts.clock ?? (() => performance.now());
    this.servers = new ChunkServers(opts.deadMs, 60_000);
    this.startedAtMs = this.clock();
    // A master that recovered state may have granted leases before it died;
    // none of them outlives leaseMs from now.
    this.grantsAllowedAtMs = recovered && ns.chunks.size > 0 ? this.startedAtMs + opts.leaseMs : this.startedAtMs;
    this.safeModeUntilMs = recovered && ns.chunks.size > 0 ? this.startedAtMs + opts.safeModeMs : this.startedAtMs;
  }

  static async open(opts: MasterOptions): Promise<Master> {
    let master: Master | undefined;
    const { oplog, recovery } = await OpLog.open({
      dir: opts.dir,
      checkpointLogBytes: opts.checkpointLogBytes,
      log: opts.log,
      apply: (record) => {
        invariant(master, 'apply before the master exists');
        master.ns.apply(record as Op);
        return undefined;
      },
    });
    const ns = recovery.checkpoint ? Namespace.fromSnapshot(recovery.checkpoint as NamespaceSnapshot) : new Namespace();
    for (const r of recovery.records) ns.apply(r as Op);
    const recovered = recovery.checkpoint !== undefined || recovery.records.length > 0;
    master = new Master(opts, ns, oplog, recovered);
    opts.log.info(
      { files: ns.fileCount, chunks: ns.chunks.size, replayed: recovery.records.length, droppedTailBytes: recovery.droppedTailBytes },
      'master state recovered',
    );
    return master;
  }

  now(): number {
    return this.clock();
  }

  async close(): Promise<void> {
    await this.checkpointing;
    await this.oplog.close();
  }

  // ---- mutations: lock, validate, log (durable), apply ----
  private async mutate(leaves: { path: string; mode: LockMode }[], build: () => Op | undefined): Promise<Op | undefined> {
    const release = await this.locks.acquire(leaves);
    try {
      const op = build();
      if (op) await this.oplog.append(op);
      return op;
    } finally {
      release();
      this.maybeCheckpoint();
    }
  }

  private maybeCheckpoint(): void {
    if (this.checkpointing || !this.oplog.needsCheckpoint()) return;
    this.checkpointing = this.oplog
      .checkpoint(() => this.ns.snapshot())
      .catch((e) => this.opts.log.error({ err: e }, 'checkpoint failed'))
      .finally(() => {
        this.checkpointing = undefined;
      });
  }

  async checkpointNow(): Promise<void> {
    await this.oplog.checkpoint(() => this.ns.snapshot());
  }

  async mkdir(rawPath: string, parents: boolean): Promise<void> {
    const path = normalizePath(rawPath);
    this.checkNotReserved(path);
    await this.mutate([{ path, mode: 'w' }], () => this.ns.checkMkdir(path, parents, Date.now()));
  }

  async create(rawPath: string, replication: number | undefined, exclusive = true): Promise<FileInfo> {
    const path = normalizePath(rawPath);
    this.checkNotReserved(path);
    await this.mutate([{ path, mode: 'w' }], () => {
      const existing = this.ns.get(path);
      if (existing && !exclusive && existing.type === 'file') return undefined;
      return this.ns.checkCreate(path, replication ?? this.opts.defaultReplication, Date.now());
    });
    return this.stat(path);
  }

  async delete(rawPath: string, recursive: boolean): Promise<void> {
    const path = normalizePath(rawPath);
    await this.mutate([{ path, mode: 'w' }], () => this.ns.checkDelete(path, recursive, Date.now()));
  }

  async rename(rawSrc: string, rawDst: string): Promise<void> {
    const src = normalizePath(rawSrc);
    const dst = normalizePath(rawDst);
    this.checkNotReserved(dst);
    await this.mutate(
      [
        { path: src, mode: 'w' },
        { path: dst, mode: 'w' },
      ],
      () => this.ns.checkRename(src, dst, Date.now()),
    );
  }

  private checkNotReserved(path: string): void {
    if (isUnder(path, trashDir)) throw new GfsError('INVALID_PATH', `${trashDir} is reserved`);
  }

  // ---- reads: in-memory state changes only inside apply, so reads need no locks ----
  async stat(rawPath: string): Promise<FileInfo> {
    const path = normalizePath(rawPath);
    const n = this.ns.get(path);
    if (!n) throw new GfsError('NOT_FOUND', `no such file or directory: ${path}`);
    return this.fileInfo(path, n, await this.fileSize(n));
  }

  private fileInfo(path: string, n: Node, sizeBytes: number): FileInfo {
    return {
      path,
      type: n.type,
      sizeBytes,
      replication: n.type === 'file' ? n.replication : 0,
      chunkCount: n.type === 'file' ? n.chunks.length : 0,
      chunkSizeBytes: this.opts.chunkSizeBytes,
      mtimeMs: n.mtimeMs,
      ctimeMs: n.ctimeMs,
    };
  }

  list(rawPath: string, recursive: boolean): ListEntry[] {
    const path = normalizePath(rawPath);
    const n = this.ns.get(path);
    if (!n) throw new GfsError('NOT_FOUND', `no such file or directory: ${path}`);
    const paths = n.type === 'file' ? [path] : recursive ? this.ns.subtree(path).slice(1) : this.ns.childNames(path).map((c) => joinPath(path, c));
    const nowMs = this.now();
    return paths.map((p) => {
      const node = this.ns.get(p)!;
      return {
        name: p.slice(p.lastIndexOf('/') + 1),
        path: p,
        type: node.type,
        sizeBytes: this.cachedFileSize(node, nowMs),
        replication: node.type === 'file' ? node.replication : 0,
        chunkCount: node.type === 'file' ? node.chunks.length : 0,
        mtimeMs: node.mtimeMs,
      };
    });
  }

  private cachedFileSize(n: Node, nowMs: number): number {
    if (n.type !== 'file' || n.chunks.length === 0) return 0;
    return (n.chunks.length - 1) * this.opts.chunkSizeBytes + this.servers.reportedSize(n.chunks[n.chunks.length - 1]!, nowMs);
  }

  /**
   * A file's length is that of its full chunks plus its last chunk, whose
   * length the replicas know best: ask them (as GFS does), falling back to
   * what heartbeats reported.
   */
  private async fileSize(n: Node): Promise<number> {
    if (n.type !== 'file' || n.chunks.length === 0) return 0;
    const last = n.chunks[n.chunks.length - 1]!;
    const meta = this.ns.chunks.get(last);
    const base = (n.chunks.length - 1) * this.opts.chunkSizeBytes;
    let size = this.servers.reportedSize(last, this.now());
    const asks = this.servers.liveLocations(last, this.now()).map(async (id) => {
      const ref = this.servers.ref(id)!;
      const info = await rpcJson<ChunkInfoAnswer>(ref.url, '/chunk/info', undefined, { query: { handle: last }, targetName: id, timeoutMs: 2_000 });
      if (meta && info.version >= meta.version && info.sizeBytes > size) size = info.sizeBytes;
    });
    await Promise.allSettled(asks);
    return base + size;
  }

  // ---- chunks ----
  private locationOf(index: number, handle: string): ChunkLocation {
    const meta = this.ns.chunks.get(handle);
    invariant(meta, `file refers to unknown chunk ${handle}`);
    const nowMs = this.now();
    // Only replicas at the master's current version are listed: a stale replica is never handed out.
    const replicas = this.servers
      .liveLocations(handle, nowMs)
      .map((id) => this.servers.ref(id)!)
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    return { index, handle, version: meta.version, replicas };
  }

  async chunks(rawPath: string, startIndex: number, count: number): Promise<ChunksAnswer> {
    const path = normalizePath(rawPath);
    const f = this.ns.getFile(path);
    const sizeBytes = await this.fileSize(f);
    const chunks: ChunkLocation[] = [];
    for (let i = startIndex; i < Math.min(f.chunks.length, startIndex + count); i++) chunks.push(this.locationOf(i, f.chunks[i]!));
    return { path, sizeBytes, chunkSizeBytes: this.opts.chunkSizeBytes, chunkCount: f.chunks.length, chunks };
  }

  inSafeMode(): boolean {
    if (this.safeModeLeft) return false;
    const nowMs = this.now();
    let done = nowMs >= this.safeModeUntilMs;
    if (!done && this.servers.alive(nowMs).length > 0) {
      done = true;
      for (const h of this.ns.chunks.keys()) {
        if (!this.servers.locations.has(h)) {
          done = false;
          break;
        }
      }
    }
    if (done) {
      this.safeModeLeft = true;
      this.opts.log.info('left safe mode');
    }
    return !done;
  }

  /** The chunk at `index` of a file, allocating it (and any missing before it) with replicas placed. */
  async allocate(rawPath: string, index: number): Promise<ChunkLocation> {
    const path = normalizePath(rawPath);
    if (this.inSafeMode()) throw new GfsError('SAFE_MODE', 'master is in safe mode, waiting for chunkserver reports', { retryAfterMs: 500 });
    // The file's write lock is held through placement, so two clients
    // allocating the same chunk see one allocation and one replica set.
    return this.locks.with([{ path, mode: 'w' }], async () => {
      const f = this.ns.getFile(path);
      if (index >= f.chunks.length) {
        if (index - f.chunks.length >= maxAllocateChunks) throw new GfsError('OUT_OF_RANGE', `cannot allocate more than ${maxAllocateChunks} chunks at once`);
        if (this.servers.alive(this.now()).length === 0) throw new GfsError('NO_REPLICAS', 'no live chunkservers');
        const op = this.ns.checkAllocate(path, index, Date.now());
        invariant(op && op.op === 'allocate', 'allocation past the end built no record');
        await this.oplog.append(op);
        this.counters.allocations += op.handles.length;
        await Promise.all(op.handles.map((h) => this.placeNewChunk(h, f.replication)));
      } else {
        // A chunk that never got a replica (its servers failed at creation) and was never written is placed again.
        const handle = f.chunks[index]!;
        const meta = this.ns.chunks.get(handle)!;
        if (meta.version === initialChunkVersion && this.servers.liveLocations(handle, this.now()).length === 0) await this.placeNewChunk(handle, f.replication);
      }
      return this.locationOf(index, f.chunks[index]!);
    }).finally(() => this.maybeCheckpoint());
  }

  private async placeNewChunk(handle: string, replication: number): Promise<void> {
    const nowMs = this.now();
    const have = new Set(this.servers.liveLocations(handle, nowMs));
    const ids = chooseReplicas(this.servers.views(nowMs), replication - have.size, have, { chunkSizeBytes: this.opts.chunkSizeBytes, recentCreatesLimit: 32 });
    const version = this.ns.chunks.get(handle)!.version;
    await Promise.all(
      ids.map(async (id) => {
        const ref = this.servers.ref(id)!;
        try {
          await rpcJson(ref.url, '/chunk/create', { handle, version }, { targetName: id, timeoutMs: 5_000 });
          this.servers.addLocation(handle, id);
          this.servers.noteCreate(id, this.now());
        } catch (e) {
          this.opts.log.warn({ handle, server: id, err: (e as Error).message }, 'chunk creation failed');
        }
      }),
    );
  }

  // ---- leases ----
  async lease(handle: string): Promise<LeaseAnswer> {
    const meta = this.ns.chunks.get(handle);
    if (!meta) throw new GfsError('NOT_FOUND', `unknown chunk ${handle}`);
    const inFlight = this.grantsInFlight.get(handle);
    if (inFlight) return inFlight;
    const nowMs = this.now();
    const upToDate = this.servers.liveLocations(handle, nowMs).sort((a, b) => this.servers.servers.get(a)!.load - this.servers.servers.get(b)!.load);
    const d = decideLease({ nowMs, lease: this.leases.get(handle), upToDate, grantsAllowedAtMs: this.grantsAllowedAtMs, version: meta.version });
    switch (d.kind) {
      case 'current':
        return this.leaseAnswer(handle, d.lease, nowMs);
      case 'wait':
        throw new GfsError('LEASE_PENDING', `no lease for ${handle} yet: ${d.reason}`, { retryAfterMs: Math.max(1, Math.ceil(d.untilMs - nowMs)) });
      case 'no-replicas':
        throw new GfsError('NO_REPLICAS', `no live up-to-date replica of chunk ${handle}`);
      case 'grant':
      case 'regrant': {
        const p = this.grant(handle, d.primary, upToDate, d.kind === 'regrant').finally(() => this.grantsInFlight.delete(handle));
        this.grantsInFlight.set(handle, p);
        return p;
      }
    }
  }

  private leaseAnswer(handle: string, lease: Lease, nowMs: number): LeaseAnswer {
    return {
      handle,
      version: lease.version,
      primary: this.servers.ref(lease.primary)!,
      secondaries: lease.secondaries.map((id) => this.servers.ref(id)).filter((r): r is ReplicaRef => !!r),
      leaseRemainingMs: Math.max(0, lease.expiresAtMs - nowMs),
    };
  }

  private async grant(handle: string, preferred: string, upToDate: string[], samePrimaryOnly: boolean): Promise<LeaseAnswer> {
    const meta = this.ns.chunks.get(handle)!;
    const version = meta.version + 1;
    // Durable before any replica or client hears of it: a restarted master
    // must never hand out a version lower than one a replica already holds.
    await this.oplog.append({ op: 'version', handle, version } satisfies Op);
    this.versionBumpedAtMs.set(handle, this.now());
    const results = await Promise.allSettled(
      upToDate.map(async (id) => {
        const ref = this.servers.ref(id)!;
        await rpcJson(ref.url, '/chunk/version', { handle, version }, { targetName: id, timeoutMs: 5_000 });
        return id;
      }),
    );
    const took = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    // Replicas that missed the new version (dead ones included) are stale from now on:
    // after a bump, a listed replica is one that took it (processReport relies on this).
    for (const id of [...(this.servers.locations.get(handle) ?? [])]) if (!took.includes(id)) this.servers.removeLocation(handle, id);
    if (took.length === 0) throw new GfsError('UNAVAILABLE', `no replica of ${handle} took version ${version}`);
    // While the old lease runs, only its holder may be primary.
    if (samePrimaryOnly && !took.includes(preferred)) throw new GfsError('LEASE_PENDING', `primary of ${handle} did not take version ${version}; waiting out its lease`, { retryAfterMs: Math.max(1, Math.ceil((this.leases.get(handle)?.expiresAtMs ?? 0) - this.now())) });
    const primary = took.includes(preferred) ? preferred : took[0]!;
    const nowMs = this.now();
    const lease: Lease = { primary, secondaries: took.filter((id) => id !== primary), version, expiresAtMs: nowMs + this.opts.leaseMs };
    this.leases.set(handle, lease);
    this.counters.leaseGrants++;
    this.opts.log.debug({ handle, version, primary }, 'lease granted');
    return this.leaseAnswer(handle, lease, nowMs);
  }

  leaseConfirm(id: string, handle: string): LeaseConfirmAnswer {
    const meta = this.ns.chunks.get(handle);
    const nowMs = this.now();
    const ext = meta ? extendLease(this.leases.get(handle), id, nowMs, this.opts.leaseMs, meta.version) : undefined;
    if (!ext) return { primary: false, version: meta?.version ?? 0, secondaries: [], remainingMs: 0 };
    this.leases.set(handle, ext);
    const a = this.leaseAnswer(handle, ext, nowMs);
    return { primary: true, version: ext.version, secondaries: a.secondaries, remainingMs: a.leaseRemainingMs };
  }

  /** Revokes a lease by the master's own reckoning only: callers that need it gone must wait for expiry. */
  leaseOf(handle: string): Lease | undefined {
    return this.leases.get(handle);
  }

  // ---- chunkservers ----
  register(req: RegisterReq): HeartbeatAnswer {
    const nowMs = this.now();
    const s = this.servers.upsert(req, nowMs);
    const deleteChunks = this.processReport(s.id, req.chunks, nowMs);
    this.opts.log.info({ server: s.id, url: s.url, rack: s.rack, chunks: req.chunks.length }, 'chunkserver registered');
    return { deleteChunks, leases: {}, clones: [], reregister: false };
  }

  heartbeat(req: HeartbeatReq): HeartbeatAnswer {
    const nowMs = this.now();
    if (!this.servers.servers.has(req.id)) return { deleteChunks: [], leases: {}, clones: [], reregister: true };
    const s = this.servers.upsert(req, nowMs);
    const deleteChunks = this.processReport(s.id, req.chunks, nowMs);
    const leases: Record<string, number> = {};
    for (const h of req.leaseExtensions) {
      const meta = this.ns.chunks.get(h);
      if (!meta) continue;
      const ext = extendLease(this.leases.get(h), s.id, nowMs, this.opts.leaseMs, meta.version);
      if (!ext) continue;
      this.leases.set(h, ext);
      leases[h] = ext.expiresAtMs - nowMs;
      this.counters.leaseExtensions++;
    }
    return { deleteChunks, leases, clones: [], reregister: false };
  }

  private processReport(id: string, chunks: ChunkReport[], nowMs: number): string[] {
    const s = this.servers.servers.get(id)!;
    const before = new Set(s.held.keys());
    this.servers.setHeld(s, chunks);
    const safe = this.inSafeMode();
    const del: string[] = [];
    for (const c of chunks) {
      before.delete(c.handle);
      const meta = this.ns.chunks.get(c.handle);
      if (!meta) {
        // Orphan: no file refers to it (deleted, or a creation the log never saw).
        if (!safe) {
          del.push(c.handle);
          this.counters.orphansDeleted++;
        }
        this.servers.removeLocation(c.handle, id);
        continue;
      }
      if (c.version < meta.version) {
        const bumped = this.versionBumpedAtMs.get(c.handle);
        // A heartbeat sent just before the replica took a new version is not
        // evidence of staleness: a replica still listed took the bump and keeps
        // its place; one that missed it is dropped, but deleted only later.
        const racing = bumped !== undefined && nowMs - bumped < versionRaceMs;
        if (racing && this.servers.locations.get(c.handle)?.has(id)) continue;
        this.servers.removeLocation(c.handle, id);
        if (racing) continue;
        if (!safe) {
          del.push(c.handle);
          this.counters.staleReplicasDropped++;
        }
        continue;
      }
      if (c.version > meta.version) {
        // The master failed after granting a lease but before logging it... or
        // logged it and lost the tail: the replica has the newer truth.
        this.adoptVersion(c.handle, c.version);
        for (const other of [...(this.servers.locations.get(c.handle) ?? [])]) if (other !== id) this.servers.removeLocation(c.handle, other);
      }
      this.servers.addLocation(c.handle, id);
    }
    for (const h of before) this.servers.removeLocation(h, id);
    return del;
  }

  private adoptVersion(handle: string, version: number): void {
    const meta = this.ns.chunks.get(handle)!;
    meta.version = version; // in memory now, so reports that follow are judged against it
    this.versionBumpedAtMs.set(handle, this.now());
    this.oplog.append({ op: 'version', handle, version } satisfies Op).catch((e) => this.opts.log.error({ err: e, handle }, 'logging adopted version failed'));
  }

  reportCorrupt(id: string, handle: string): void {
    this.servers.removeLocation(handle, id);
    this.opts.log.warn({ server: id, handle }, 'replica reported corrupt');
  }

  // ---- status ----
  status(): Record<string, unknown> {
    const nowMs = this.now();
    const goal = new Map<string, number>();
    for (const n of this.ns.nodes.values()) if (n.type === 'file') for (const h of n.chunks) goal.set(h, Math.max(goal.get(h) ?? 0, n.replication));
    let healthy = 0;
    let under = 0;
    let over = 0;
    let missing = 0;
    for (const [h, g] of goal) {
      const live = this.servers.liveLocations(h, nowMs).length;
      if (live === 0) missing++;
      else if (live < g) under++;
      else if (live > g) over++;
      else healthy++;
    }
    return {
      safeMode: this.inSafeMode(),
      files: this.ns.fileCount,
      chunkSizeBytes: this.opts.chunkSizeBytes,
      leaseMs: this.opts.leaseMs,
      chunks: { total: this.ns.chunks.size, healthy, underReplicated: under, overReplicated: over, missing },
      chunkservers: [...this.servers.servers.values()].map((s) => ({
        id: s.id,
        url: s.url,
        rack: s.rack,
        alive: this.servers.isAlive(s, nowMs),
        lastHeartbeatAgoMs: Math.round(nowMs - s.lastSeenMs),
        chunks: s.held.size,
        usedBytes: s.usedBytes,
        freeBytes: s.freeBytes,
        capacityBytes: s.capacityBytes,
        load: s.load,
      })),
      leases: this.leases.size,
      oplog: this.oplog.stats,
      counters: this.counters,
    };
  }
}
