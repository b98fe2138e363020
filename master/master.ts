import { performance } from 'node:perf_hooks';
import { GfsError, invariant } from '../shared/errors.js';
import { normalizePath, isUnder, joinPath, trashDir } from '../shared/paths.js';
import { rpcJson } from '../shared/rpc.js';
import { requestContext, type Logger } from '../shared/log.js';
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
import { decideLease, extendLease, GrantLog, LeaseMap, type Lease } from './leases.js';
import { LockManager, type LockMode } from './locks.js';
import { Namespace, initialChunkVersion, type NamespaceSnapshot, type Node, type Op } from './namespace.js';
import { OpLog } from './oplog.js';
import { chooseReplicas } from './placement.js';
import { Snapshots, type LeaseTarget } from './snapshot.js';
import { planClones, planExcess, planRebalance, type ChunkNeed, type InFlightClone } from './replication.js';
import { LogShipper } from './replicas.js';
import { setRpcHeader } from '../shared/rpc.js';
import type { LogAppendAnswer, LogAppendReq, LogInstallReq } from '../shared/wire.js';

export interface MasterOptions {
  dir: string;
  chunkSizeBytes: number;
  leaseMs: number;
  heartbeatMs: number;
  deadMs: number;
  safeModeMs: number;
  checkpointLogBytes: number;
  defaultReplication: number;
  /** Deleted files stay in the trash this long before their space is reclaimed. */
  trashGraceMs: number;
  maxClusterClones: number;
  maxPerServerClones: number;
  /** Bandwidth cap per clone, bytes per second (0: none). */
  cloneBytesPerSec: number;
  /** Rebalance when the busiest server holds this many more replicas than the emptiest (and > 10% of the average). */
  rebalanceMinImbalance: number;
  log: Logger;
  /** Monotonic clock in ms; injectable for tests. */
  clock?: () => number;
  /** Log replicas (shadow masters) every batch must reach before it is acknowledged (master/replicas.ts). */
  logReplicas?: string[];
  /** Go on with fewer log copies while a replica is out of sync (and say so in status). */
  allowFewerLogReplicas?: boolean;
  /** Run as a read-only shadow of this master: apply its shipped log, serve reads, until promoted. */
  shadowOf?: string;
  /** This master's own URL (known once it listens). */
  selfUrl?: () => string;
  /** Told how long each operation log fsync took (metrics). */
  onFsync?: (kind: 'oplog' | 'checkpoint', seconds: number) => void;
}

/**
 * The request id of the client call being served (x-gfs-request-id, set by shared/http.ts) and how many
 * mutations it has made so far. A call may log several mutations (undelete: the rename, then the emptied
 * trash directory); each gets its own retry-cache key, `rid` then `rid#1`, `rid#2`, ..., so a resent call
 * skips exactly the steps its first attempt logged and still does the rest.
 */
export { requestContext };

/** The retry-cache key of the next mutation of the call being served, if it carries a request id. */
function nextRequestKey(): string | undefined {
  const ctx = requestContext.getStore();
  if (ctx === undefined) return undefined;
  const n = ctx.mutations++;
  return n === 0 ? ctx.rid : `${ctx.rid}#${n}`;
}

/** A chunk whose version changed this recently may still be reported at the old version by a heartbeat in flight. */
const versionRaceMs = 15_000;
/** Bound on the number of chunk-creation RPCs a single allocation makes at once. */
const maxAllocateChunks = 1024;

export class Master {
  readonly locks = new LockManager();
  /** Snapshots and copy-on-write (master/snapshot.ts). */
  readonly snapshots: Snapshots = new Snapshots(this);
  readonly servers: ChunkServers;
  /** Every grant and its latest expiry, in wall-clock time (GET /debug/leases). */
  readonly grantLog = new GrantLog();
  readonly leases: Map<string, Lease> = new LeaseMap(this.grantLog);
  /**
   * Per chunk, the replicas the master saw take its current version (grant, clone). One that reports
   * that version without having been seen to take it applied the bump late (it was paused, or the
   * answer was lost): it is no lease's secondary and missed the mutations since, so it is stale.
   * In memory only: a restarted master cannot tell (found by test/partition/lease-partition.test.ts).
   */
  private readonly tookVersion = new Map<string, { version: number; servers: Set<string> }>();
  private readonly grantsInFlight = new Map<string, Promise<LeaseAnswer>>();
  private readonly versionBumpedAtMs = new Map<string, number>();
  private readonly clock: () => number;
  readonly startedAtMs: number;
  private grantsAllowedAtMs: number;
  private safeModeUntilMs: number;
  private safeModeLeft = false;
  private checkpointing: Promise<void> | undefined;
  private readonly clones: InFlightClone[] = [];
  /** Orders to delete replicas, delivered with each server's next heartbeat reply. */
  private readonly pendingDeletes = new Map<string, Set<string>>();
  /**
   * Chunks whose last version bump no replica took: no client got a lease at the new version, so
   * the replicas listed before it (at `fromVersion`) still hold the latest data. They are neither
   * listed nor deleted until a retried bump (tick) brings them to the current version.
   */
  /**
   * Bumps a previous incarnation logged but never confirmed ('version' with
   * pendingFrom and no 'bumped'): no client got a lease at the new version,
   * so replicas still at the old one hold current data. They are brought up
   * to the version through `unbumped`, never judged stale. handle -> old version.
   */
  private readonly recoveredPending = new Map<string, number>();
  private readonly unbumped = new Map<string, { fromVersion: number; servers: Set<string> }>();
  private retryingBumps = false;
  /** Chunks whose first replicas are being created: neither cloned nor trimmed until placement is done. */
  private readonly placing = new Set<string>();
  /** When a client last had to wait for a chunk's repair (lease asked while under-replicated or being cloned). */
  private readonly blockedAtMs = new Map<string, number>();
  /** Replicas reported corrupt: never listed, deleted once another replica exists. */
  private readonly corrupt = new Map<string, Set<string>>();
  private tickTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  /** 'shadow' follows a master's shipped log and serves reads only; promotion makes it 'master'. */
  role: 'master' | 'shadow';
  /** Ships every batch to the log replicas (master/replicas.ts); only while role is 'master'. */
  shipper: LogShipper | undefined;
  /** Set when a chunkserver reports a higher epoch: another master was promoted; this one only refuses. */
  fencedByEpoch: number | undefined;
  /** Shadow: the master it follows, when it last heard from it, and the index the master had reached. */
  following: { masterUrl: string; lastContactAtMs: number | undefined; masterIndex: number; gap: boolean; installs: number } | undefined;
  /** Shadow: the index of the last record handed to the local log (applied or queued), and its durability. */
  private shadowLoggedIndex = 0;
  private shadowTail: Promise<unknown> = Promise.resolve();
  readonly counters = { leaseGrants: 0, leaseExtensions: 0, allocations: 0, staleReplicasDropped: 0, orphansDeleted: 0, clonesStarted: 0, clonesDone: 0, clonesFailed: 0, rebalanceMoves: 0, leasesRevokedForRepair: 0, clonedBytes: 0, excessDeleted: 0, corruptReported: 0, trashReclaimed: 0 };

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
    for (const [h, from] of ns.pendingBumps) this.recoveredPending.set(h, from);
    this.role = opts.shadowOf ? 'shadow' : 'master';
    this.following = opts.shadowOf ? { masterUrl: opts.shadowOf.replace(/\/+$/, ''), lastContactAtMs: undefined, masterIndex: ns.appliedIndex, gap: false, installs: 0 } : undefined;
    this.shadowLoggedIndex = ns.appliedIndex;
    if (this.role === 'master') this.makeShipper();
    setRpcHeader('x-gfs-epoch', String(ns.epoch));
  }

  private makeShipper(): void {
    const urls = this.opts.logReplicas ?? [];
    if (urls.length === 0) return;
    this.shipper = new LogShipper({
      urls,
      allowFewer: this.opts.allowFewerLogReplicas ?? false,
      selfUrl: () => this.opts.selfUrl?.() || 'http://127.0.0.1',
      epoch: () => this.ns.epoch,
      appliedIndex: () => this.ns.appliedIndex,
      snapshotJson: () => JSON.stringify(this.ns.snapshot()),
      exclusive: (fn) => this.oplog.exclusive(fn),
      log: this.opts.log,
      onFenced: (epoch) => this.noteEpoch(epoch),
      timeoutMs: 10_000,
      periodMs: Math.max(100, Math.min(1_000, this.opts.heartbeatMs)),
    });
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
      // Only a master ships; a shadow (or one not yet constructed) has no shipper.
      replicate: (records) => master?.shipper?.ship(records) ?? Promise.resolve(),
      onFsync: opts.onFsync,
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
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.shipper?.stop();
    await this.checkpointing;
    await this.oplog.close();
  }

  // ---- mutations: lock, validate, log (durable), apply ----
  private async mutate(leaves: { path: string; mode: LockMode }[], build: () => Op | undefined): Promise<Op | undefined> {
    const release = await this.locks.acquire(leaves);
    try {
      // A retried call whose first attempt was logged: done already, answer as then (no EXISTS for a lost answer).
      const rid = nextRequestKey();
      if (rid !== undefined && this.ns.requests.has(rid)) {
        // Only acknowledged as the first attempt would have been: with every log replica holding it.
        this.checkWritable();
        return undefined;
      }
      const op = build();
      if (op && rid !== undefined) (op as Op & { rid?: string }).rid = rid;
      if (op) await this.logOp(op);
      return op;
    } finally {
      release();
      this.maybeCheckpoint();
    }
  }

  /** Whether this master may log a mutation now: not a shadow, not fenced off, its log replicas in sync. */
  checkWritable(): void {
    if (this.role === 'shadow') throw new GfsError('READ_ONLY', `read-only shadow master; mutations go to the master at ${this.following?.masterUrl ?? 'its master'}`, { master: this.following?.masterUrl });
    if (this.fencedByEpoch !== undefined) throw new GfsError('STALE_EPOCH', `this master (epoch ${this.ns.epoch}) was superseded by a master of epoch ${this.fencedByEpoch}`);
    this.shipper?.checkWritable();
  }

  /** The replication goal of the file a lease request names (the default when it names none). */
  private goalOf(at: LeaseTarget | undefined): number {
    try {
      const n = at ? this.ns.get(normalizePath(at.path)) : undefined;
      return n?.type === 'file' ? n.replication : this.opts.defaultReplication;
    } catch {
      return this.opts.defaultReplication;
    }
  }

  /** Only a master that is not fenced off grants leases or places chunks. */
  checkMaster(): void {
    if (this.role !== 'master' || this.fencedByEpoch !== undefined) this.checkWritable();
  }

  /** Every mutation of the namespace goes through here: checked, then logged (durable, replicated) and applied. */
  async logOp(op: Op): Promise<unknown> {
    this.checkWritable();
    return this.oplog.append(op);
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

  /** For master/snapshot.ts: a checkpoint if the log has grown enough. */
  checkpointSoon(): void {
    this.maybeCheckpoint();
  }

  /** For master/snapshot.ts: the lease grant under way on handle, and when this master may grant leases at all. */
  leaseGrantState(handle: string): { inFlight: Promise<LeaseAnswer> | undefined; grantsAllowedAtMs: number } {
    return { inFlight: this.grantsInFlight.get(handle), grantsAllowedAtMs: this.grantsAllowedAtMs };
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

  /** Lazy deletion: the file moves to the trash and is reclaimed after the grace period; `now` skips it. */
  async delete(rawPath: string, recursive: boolean, now = false): Promise<void> {
    const path = normalizePath(rawPath);
    if (now || isUnder(path, trashDir)) {
      await this.mutate([{ path, mode: 'w' }], () => this.ns.checkDelete(path, recursive, Date.now()));
      return;
    }
    const t = Date.now();
    const to = `${trashDir}/${t}_${Math.random().toString(36).slice(2, 8)}/${path.slice(path.lastIndexOf('/') + 1)}`;
    await this.mutate(
      [
        { path, mode: 'w' },
        { path: to, mode: 'w' },
      ],
      () => this.ns.checkTrash(path, to, recursive, t),
    );
  }

  trashList(): { path: string; trashPath: string; deletedAtMs: number; reclaimAtMs: number }[] {
    return [...this.ns.trash.entries()]
      .map(([trashPath, e]) => ({ path: e.path, trashPath, deletedAtMs: e.deletedAtMs, reclaimAtMs: e.deletedAtMs + this.opts.trashGraceMs }))
      .sort((a, b) => b.deletedAtMs - a.deletedAtMs);
  }

  /** Brings back the most recently deleted file or directory that was at `path`. */
  async undelete(rawPath: string): Promise<void> {
    const path = normalizePath(rawPath);
    // A resent undelete whose first attempt moved the file back finds the trash empty: answer as then.
    const rid = requestContext.getStore()?.rid;
    if (rid !== undefined && this.ns.requests.has(rid)) return this.checkWritable();
    const entry = this.trashList().find((e) => e.path === path);
    if (!entry) throw new GfsError('NOT_FOUND', `nothing deleted at ${path} is in the trash`);
    await this.mutate(
      [
        { path: entry.trashPath, mode: 'w' },
        { path, mode: 'w' },
      ],
      () => this.ns.checkRename(entry.trashPath, path, Date.now()),
    );
    // The timestamped trash directory held only this entry: remove it too, or the trash fills with empty directories.
    const dir = entry.trashPath.slice(0, entry.trashPath.lastIndexOf('/'));
    await this.mutate([{ path: dir, mode: 'w' }], () => {
      const n = this.ns.get(dir);
      return n?.type === 'dir' && this.ns.childNames(dir).length === 0 ? this.ns.checkDelete(dir, false, Date.now()) : undefined;
    });
  }

  /** Deletes trash entries past the grace period for good; their chunks become orphans and go with heartbeats. */
  private async reclaimTrash(): Promise<void> {
    // Background work, not a client's call: never file its mutations under a request id.
    if (requestContext.getStore() !== undefined) return requestContext.exit(() => this.reclaimTrash());
    const nowMs = Date.now();
    for (const e of this.trashList()) {
      if (e.reclaimAtMs > nowMs) continue;
      const dir = e.trashPath.slice(0, e.trashPath.lastIndexOf('/'));
      await this.mutate([{ path: dir, mode: 'w' }], () => (this.ns.get(dir) ? this.ns.checkDelete(dir, true, nowMs) : undefined)).then(
        () => void this.counters.trashReclaimed++,
        (err) => this.opts.log.warn({ err: (err as Error).message, path: dir }, 'trash reclaim failed'),
      );
    }
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
    let paths = n.type === 'file' ? [path] : recursive ? this.ns.subtree(path).slice(1) : this.ns.childNames(path).map((c) => joinPath(path, c));
    // The trash is listed only when asked for by name.
    if (!isUnder(path, trashDir)) paths = paths.filter((p) => !isUnder(p, trashDir));
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
    // Just restarted, the master may not have heard yet where a written last chunk is: its length is
    // unknown, not 0 (a reader would silently get a short read of acknowledged data; found by the partition suite).
    if (meta && meta.version !== initialChunkVersion && this.servers.liveLocations(last, this.now()).length === 0 && this.inSafeMode()) {
      throw new GfsError('SAFE_MODE', 'master is in safe mode, waiting for chunkserver reports', { retryAfterMs: 500 });
    }
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
      for (const [h, meta] of this.ns.chunks) {
        // A chunk still at its initial version was never written (a lease bumps the version):
        // one allocated just before a crash may have no replica anywhere, and holds no data to wait for.
        if (meta.version === initialChunkVersion) continue;
        // A replica waiting for a bump a previous master left unconfirmed counts as reported.
        if (!this.servers.locations.has(h) && !this.unbumped.get(h)?.servers.size) {
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
    this.checkMaster();
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
        await this.logOp(op);
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
    this.placing.add(handle);
    await Promise.all(
      ids.map(async (id) => {
        const ref = this.servers.ref(id)!;
        try {
          await rpcJson(ref.url, '/chunk/create', { handle, version }, { targetName: id, timeoutMs: 5_000 });
          this.servers.noteCreate(id, this.now());
          // Defence in depth (leases wait while a chunk is placed): a replica that missed a version bump is stale.
          if (this.ns.chunks.get(handle)?.version !== version) return;
          this.servers.addLocation(handle, id);
        } catch (e) {
          this.opts.log.warn({ handle, server: id, err: (e as Error).message }, 'chunk creation failed');
        }
      }),
    ).finally(() => this.placing.delete(handle));
  }

  // ---- leases ----
  async lease(handle: string, at?: LeaseTarget): Promise<LeaseAnswer> {
    this.checkMaster();
    const meta = this.ns.chunks.get(handle);
    if (!meta) throw new GfsError('NOT_FOUND', `unknown chunk ${handle}`);
    // Snapshot in progress, a stale handle, or a shared chunk to copy first (master/snapshot.ts).
    const routed = this.snapshots.routeLease(handle, meta.refCount, at);
    if (routed) return routed;
    const inFlight = this.grantsInFlight.get(handle);
    if (inFlight) return inFlight;
    // A chunk still being created would get a lease on the replicas created so far, and the rest, created
    // at the old version, would be stale from birth (found by test/partition/lease-partition.test.ts).
    if (this.placing.has(handle)) throw new GfsError('LEASE_PENDING', `chunk ${handle} is being created`, { retryAfterMs: 100 });
    // A clone copies the replica as it is: no mutation may start until it is done.
    if (this.clones.some((c) => c.handle === handle)) {
      this.blockedAtMs.set(handle, this.now());
      throw new GfsError('LEASE_PENDING', `chunk ${handle} is being re-replicated`, { retryAfterMs: 200 });
    }
    // A client wants to write an under-replicated chunk: its repair goes first (clonePriority).
    const wanted = this.servers.liveLocations(handle, this.now()).length;
    if (wanted > 0 && wanted < this.goalOf(at)) this.blockedAtMs.set(handle, this.now());
    if (this.blockedAtMs.size > 100_000) this.blockedAtMs.clear(); // bounded: a priority hint only
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
    this.recoveredPending.delete(handle); // this bump supersedes one a predecessor left unconfirmed
    await this.logOp({ op: 'version', handle, version, pendingFrom: meta.version } satisfies Op);
    this.versionBumpedAtMs.set(handle, this.now());
    const results = await Promise.allSettled(
      upToDate.map(async (id) => {
        const ref = this.servers.ref(id)!;
        await rpcJson(ref.url, '/chunk/version', { handle, version }, { targetName: id, timeoutMs: 5_000 });
        return id;
      }),
    );
    const took = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    if (took.length === 0) {
      // Unreachable, all of them: judging them stale would lose the chunk. Retry the bump instead.
      const prev = this.unbumped.get(handle);
      this.unbumped.set(handle, { fromVersion: prev?.fromVersion ?? meta.version - 1, servers: new Set([...(prev?.servers ?? []), ...upToDate]) });
    } else this.unbumped.delete(handle);
    if (took.length > 0) this.tookVersion.set(handle, { version, servers: new Set(took) });
    // Replicas that missed the new version (dead ones included) are stale from now on:
    // after a bump, a listed replica is one that took it (processReport relies on this).
    for (const id of [...(this.servers.locations.get(handle) ?? [])]) if (!took.includes(id)) this.servers.removeLocation(handle, id);
    if (took.length === 0) throw new GfsError('UNAVAILABLE', `no replica of ${handle} took version ${version}`);
    // Durable before any client hears of the lease: a master restarted before
    // this record knows no mutation happened at `version` (see recoveredPending).
    await this.logOp({ op: 'bumped', handle, version } satisfies Op);
    // While the old lease runs, only its holder may be primary.
    if (samePrimaryOnly && !took.includes(preferred)) throw new GfsError('LEASE_PENDING', `primary of ${handle} did not take version ${version}; waiting out its lease`, { retryAfterMs: Math.max(1, Math.ceil((this.leases.get(handle)?.expiresAtMs ?? 0) - this.now())) });
    const primary = took.includes(preferred) ? preferred : took[0]!;
    const nowMs = this.now();
    const lease: Lease = { primary, secondaries: took.filter((id) => id !== primary), version, expiresAtMs: nowMs + this.opts.leaseMs };
    this.leases.set(handle, lease);
    this.grantLog.granted(handle, version, primary, lease.secondaries, this.opts.leaseMs);
    this.counters.leaseGrants++;
    this.opts.log.debug({ handle, version, primary }, 'lease granted');
    return this.leaseAnswer(handle, lease, nowMs);
  }

  leaseConfirm(id: string, handle: string): LeaseConfirmAnswer {
    if (this.snapshots.isRevoking(handle)) return { primary: false, version: this.ns.chunks.get(handle)?.version ?? 0, secondaries: [], remainingMs: 0 };
    const meta = this.ns.chunks.get(handle);
    const nowMs = this.now();
    const ext = meta ? extendLease(this.leases.get(handle), id, nowMs, this.opts.leaseMs, meta.version) : undefined;
    if (!ext) return { primary: false, version: meta?.version ?? 0, secondaries: [], remainingMs: 0 };
    this.leases.set(handle, ext);
    this.grantLog.extended(handle, ext.version, ext.expiresAtMs - nowMs);
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
    this.noteEpoch(req.maxEpoch);
    const deleteChunks = this.processReport(s.id, req.chunks, nowMs);
    this.opts.log.info({ server: s.id, url: s.url, rack: s.rack, chunks: req.chunks.length }, 'chunkserver registered');
    if (this.role !== 'master' || this.fencedByEpoch !== undefined) return this.noOrders(false);
    return { deleteChunks, leases: {}, clones: [], reregister: false, epoch: this.ns.epoch, role: 'master' };
  }

  heartbeat(req: HeartbeatReq): HeartbeatAnswer {
    const nowMs = this.now();
    if (!this.servers.servers.has(req.id)) return { ...this.noOrders(true) };
    this.noteEpoch(req.maxEpoch);
    const s = this.servers.upsert(req, nowMs);
    const deleteChunks = this.processReport(s.id, req.chunks, nowMs);
    // A shadow or a fenced master learns locations but gives no orders (and extends no lease).
    if (this.role !== 'master' || this.fencedByEpoch !== undefined) {
      this.pendingDeletes.delete(s.id);
      return this.noOrders(false);
    }
    const leases: Record<string, number> = {};
    for (const h of req.leaseExtensions) {
      const meta = this.ns.chunks.get(h);
      if (!meta) continue;
      if (this.snapshots.isRevoking(h)) continue; // no extension while a snapshot revokes it
      const ext = extendLease(this.leases.get(h), s.id, nowMs, this.opts.leaseMs, meta.version);
      if (!ext) continue;
      this.leases.set(h, ext);
      this.grantLog.extended(h, ext.version, ext.expiresAtMs - nowMs);
      leases[h] = ext.expiresAtMs - nowMs;
      this.counters.leaseExtensions++;
    }
    return { deleteChunks: [...deleteChunks, ...this.takePendingDeletes(s.id)], leases, clones: [], reregister: false, epoch: this.ns.epoch, role: 'master' };
  }

  private noOrders(reregister: boolean): HeartbeatAnswer {
    return { deleteChunks: [], leases: {}, clones: [], reregister, epoch: this.ns.epoch, role: this.role };
  }

  private takePendingDeletes(id: string): string[] {
    const set = this.pendingDeletes.get(id);
    if (!set) return [];
    this.pendingDeletes.delete(id);
    return [...set];
  }

  private orderDelete(id: string, handle: string): void {
    this.servers.removeLocation(handle, id);
    let set = this.pendingDeletes.get(id);
    if (!set) this.pendingDeletes.set(id, (set = new Set()));
    set.add(handle);
  }

  private processReport(id: string, chunks: ChunkReport[], nowMs: number): string[] {
    const s = this.servers.servers.get(id)!;
    const before = new Set(s.held.keys());
    this.servers.setHeld(s, chunks);
    const safe = this.inSafeMode();
    const del: string[] = [];
    for (const c of chunks) {
      before.delete(c.handle);
      // A copy-on-write copy whose record is not logged yet is no orphan.
      if (this.snapshots.isPendingCopy(c.handle)) continue;
      // A clone in progress is not a replica yet (it is filled at version 0 and takes the real version last).
      if (this.clones.some((x) => x.handle === c.handle && x.target === id)) continue;
      if (this.corrupt.get(c.handle)?.has(id)) {
        this.servers.removeLocation(c.handle, id);
        continue;
      }
      // Ordered deleted (excess, corrupt) and not gone yet: this report may have been sent before
      // the order arrived; counting the replica again would let the next tick trim another one.
      if (this.pendingDeletes.get(id)?.has(c.handle)) {
        this.servers.removeLocation(c.handle, id);
        continue;
      }
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
        const pendingFrom = this.recoveredPending.get(c.handle);
        if (pendingFrom !== undefined && c.version >= pendingFrom && meta.version === pendingFrom + 1) {
          const prev = this.unbumped.get(c.handle);
          this.unbumped.set(c.handle, { fromVersion: prev?.fromVersion ?? pendingFrom, servers: new Set([...(prev?.servers ?? []), id]) });
          this.servers.removeLocation(c.handle, id);
          continue;
        }
        const ub = this.unbumped.get(c.handle);
        if (ub?.servers.has(id) && c.version >= ub.fromVersion) {
          // Missed a bump no replica took: still the latest data, waiting for the retried bump.
          this.servers.removeLocation(c.handle, id);
          continue;
        }
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
      if (c.version > meta.version && this.role !== 'master') {
        // A shadow lags the master's log by a batch: the version record is on its way. Never changes state outside the log.
        this.servers.removeLocation(c.handle, id);
        continue;
      }
      if (c.version > meta.version) {
        // The master failed after granting a lease but before logging it... or
        // logged it and lost the tail: the replica has the newer truth.
        this.adoptVersion(c.handle, c.version);
        for (const other of [...(this.servers.locations.get(c.handle) ?? [])]) if (other !== id) this.servers.removeLocation(c.handle, other);
      }
      const took = this.tookVersion.get(c.handle);
      if (took && took.version === c.version && !took.servers.has(id)) {
        // At the current version without having been seen to take it: stale (see tookVersion).
        this.servers.removeLocation(c.handle, id);
        if (!safe) {
          del.push(c.handle);
          this.counters.staleReplicasDropped++;
        }
        continue;
      }
      this.servers.addLocation(c.handle, id);
    }
    for (const h of before) {
      this.servers.removeLocation(h, id);
      // The corrupt replica is gone from the server: forget the mark.
      const bad = this.corrupt.get(h);
      if (bad?.delete(id) && bad.size === 0) this.corrupt.delete(h);
    }
    return del;
  }

  private adoptVersion(handle: string, version: number): void {
    const meta = this.ns.chunks.get(handle)!;
    meta.version = version; // in memory now, so reports that follow are judged against it
    this.tookVersion.delete(handle);
    this.versionBumpedAtMs.set(handle, this.now());
    this.logOp({ op: 'version', handle, version } satisfies Op).catch((e) => this.opts.log.error({ err: e, handle }, 'logging adopted version failed'));
  }

  reportCorrupt(id: string, handle: string): void {
    this.counters.corruptReported++;
    let bad = this.corrupt.get(handle);
    if (!bad) this.corrupt.set(handle, (bad = new Set()));
    bad.add(id);
    this.servers.removeLocation(handle, id);
    this.opts.log.warn({ server: id, handle }, 'replica reported corrupt');
    // Delete it at once when a good replica exists (re-replication restores the count);
    // otherwise keep it until one does, in case it is the only copy of most of the data.
    if (this.servers.liveLocations(handle, this.now()).length > 0) this.orderDelete(id, handle);
  }

  // ---- healing: re-replication, excess replicas, trash ----
  start(): void {
    this.tickTimer = setInterval(() => void this.tick(), Math.max(100, this.opts.heartbeatMs));
    this.tickTimer.unref();
    if (this.role === 'master') this.shipper?.start();
  }

  // ---- log replicas, shadows, failover (master/replicas.ts) ----

  private checkFollowing(epoch: number, masterUrl: string): void {
    if (this.role !== 'shadow') throw new GfsError('STALE_EPOCH', `not a shadow any more: this is the master of epoch ${this.ns.epoch}`);
    if (epoch < this.ns.epoch) throw new GfsError('STALE_EPOCH', `log from a master of epoch ${epoch}; this shadow has seen epoch ${this.ns.epoch}`);
    this.following = { ...this.following!, masterUrl: masterUrl.replace(/\/+$/, ''), lastContactAtMs: Date.now() };
  }

  /** Shadow: a batch of the master's log. Durable here (own log, fsynced) and applied before the answer. */
  async acceptLog(req: LogAppendReq): Promise<LogAppendAnswer> {
    this.checkFollowing(req.epoch, req.masterUrl);
    const f = this.following!;
    if (req.firstIndex > this.shadowLoggedIndex + 1) {
      f.gap = true;
      throw new GfsError('LOG_GAP', `this shadow has the log up to ${this.shadowLoggedIndex}, the batch starts at ${req.firstIndex}`, { lastIndex: this.shadowLoggedIndex });
    }
    // A resent batch: what is already here is skipped (the log is append-only and identical).
    const fresh = req.records.slice(this.shadowLoggedIndex + 1 - req.firstIndex);
    const parsed: Op[] = [];
    for (const text of fresh) {
      try {
        const op = JSON.parse(text) as Op;
        if (typeof op !== 'object' || op === null || typeof op.op !== 'string') throw new Error('not an operation');
        parsed.push(op);
      } catch (e) {
        throw new GfsError('BAD_REQUEST', `log record is not an operation: ${(e as Error).message}`);
      }
    }
    for (const op of parsed) {
      this.shadowLoggedIndex++;
      // An operation the master could not apply fails here the same way: the log still holds it.
      this.shadowTail = this.oplog.append(op).catch((e: unknown) => {
        if (e instanceof GfsError && e.code === 'INTERNAL') throw e;
      });
    }
    await this.shadowTail;
    f.masterIndex = Math.max(f.masterIndex, req.firstIndex - 1 + req.records.length);
    if (parsed.length > 0 || this.shadowLoggedIndex >= f.masterIndex) f.gap = false;
    this.maybeCheckpoint();
    return { lastIndex: this.shadowLoggedIndex };
  }

  /** Shadow: the master's whole state as of log index `index` replaces this one (catch-up after a gap or restart). */
  async installState(req: LogInstallReq): Promise<LogAppendAnswer> {
    this.checkFollowing(req.epoch, req.masterUrl);
    let snap: NamespaceSnapshot;
    try {
      snap = JSON.parse(req.state) as NamespaceSnapshot;
      if (!Array.isArray(snap.nodes) || !Array.isArray(snap.chunks) || typeof snap.nextHandle !== 'string') throw new Error('not a namespace snapshot');
      snap.appliedIndex = req.index;
      Namespace.fromSnapshot(snap); // refuses a malformed state before anything is replaced
    } catch (e) {
      throw new GfsError('BAD_REQUEST', `bad state: ${(e as Error).message}`);
    }
    await this.shadowTail;
    await this.checkpointing;
    // The state is written as a checkpoint on a fresh log: a restart recovers exactly it plus what follows.
    await this.oplog.checkpoint(() => snap);
    this.ns = Namespace.fromSnapshot(snap);
    this.shadowLoggedIndex = req.index;
    this.following = { ...this.following!, masterIndex: Math.max(this.following!.masterIndex, req.index), gap: false, installs: this.following!.installs + 1 };
    this.opts.log.info({ index: req.index, files: this.ns.fileCount }, 'shadow installed the master state');
    return { lastIndex: this.shadowLoggedIndex };
  }

  /**
   * Shadow -> master, with the next epoch logged durably first. Leases the old master granted are
   * honoured: no grant for one lease period. Refused if this shadow knows its log is incomplete.
   */
  async promote(force: boolean): Promise<{ epoch: number; appliedIndex: number }> {
    if (this.role !== 'shadow') throw new GfsError('BAD_REQUEST', `already the master (epoch ${this.ns.epoch})`);
    const f = this.following!;
    if (!force && (f.gap || this.shadowLoggedIndex < f.masterIndex || f.lastContactAtMs === undefined)) {
      throw new GfsError('BAD_REQUEST', `this shadow's log may be incomplete (has ${this.shadowLoggedIndex}, the master had reached ${f.masterIndex}${f.lastContactAtMs === undefined ? ', never heard from it' : ''}); use --force to promote anyway`);
    }
    await this.shadowTail;
    this.role = 'master';
    const epoch = this.ns.epoch + 1;
    await this.oplog.append({ op: 'epoch', epoch, t: Date.now() } satisfies Op);
    invariant(this.ns.epoch === epoch, 'the epoch record was applied');
    setRpcHeader('x-gfs-epoch', String(epoch));
    const nowMs = this.now();
    this.grantsAllowedAtMs = nowMs + this.opts.leaseMs;
    this.safeModeLeft = false;
    this.safeModeUntilMs = nowMs + this.opts.safeModeMs;
    this.following = undefined;
    // Bumps the old master logged but never saw taken: replicas at the version before still hold current data.
    this.recoveredPending.clear();
    for (const [h, from] of this.ns.pendingBumps) this.recoveredPending.set(h, from);
    this.makeShipper();
    this.shipper?.start();
    this.opts.log.warn({ epoch, appliedIndex: this.ns.appliedIndex }, 'promoted to master');
    return { epoch, appliedIndex: this.ns.appliedIndex };
  }

  /** A chunkserver saw a higher epoch: another master was promoted. From now on this one refuses everything. */
  private noteEpoch(maxEpoch: number | undefined): void {
    if (maxEpoch === undefined || maxEpoch <= this.ns.epoch || this.fencedByEpoch !== undefined) return;
    this.fencedByEpoch = maxEpoch;
    this.opts.log.error({ epoch: this.ns.epoch, newer: maxEpoch }, 'fenced: a master of a higher epoch exists');
  }

  /**
   * Per chunk of any file: the highest replication goal among the files holding it (snapshots share
   * chunks), the first file with that goal, and whether every file holding it is in the trash.
   */
  private chunkGoals(): Map<string, { goal: number; path: string; deleted: boolean }> {
    const goals = new Map<string, { goal: number; path: string; deleted: boolean }>();
    for (const [p, n] of this.ns.nodes) {
      if (n.type !== 'file') continue;
      const deleted = isUnder(p, trashDir);
      for (const h of n.chunks) {
        const g = goals.get(h);
        if (!g) goals.set(h, { goal: n.replication, path: p, deleted });
        else {
          if (n.replication > g.goal) Object.assign(g, { goal: n.replication, path: p });
          g.deleted &&= deleted;
        }
      }
    }
    return goals;
  }

  private chunkNeeds(nowMs: number): ChunkNeed[] {
    const goal = this.chunkGoals();
    // Servers holding a replica that is about to go (corrupt, or ordered deleted) are no clone
    // targets for that chunk: the clone would find the old replica there and keep it.
    const doomed = new Map<string, string[]>();
    for (const [id, set] of this.pendingDeletes) for (const h of set) doomed.set(h, [...(doomed.get(h) ?? []), id]);
    for (const [h, set] of this.corrupt) doomed.set(h, [...(doomed.get(h) ?? []), ...set]);
    const needs: ChunkNeed[] = [];
    for (const [h, g] of goal) {
      const meta = this.ns.chunks.get(h);
      if (!meta) continue;
      const lease = this.leases.get(h);
      needs.push({
        handle: h,
        version: meta.version,
        goal: g.goal,
        live: this.servers.liveLocations(h, nowMs),
        // A chunk still being placed looks under-replicated: leave it alone like a leased one.
        // A live lease holder is asked to give its lease back (revokeForRepair) before a clone. One
        // that looks dead is not waited for: it may only be cut off from the master and still act,
        // but the clone first moves every live replica, the source among them, to a new version
        // (bumpBeforeClone), and a replica refuses, under its own lock, any mutation ordered at
        // the old one (ReplicaStore.write), so nothing it still does can be acknowledged.
        leased:
          (lease !== undefined && lease.expiresAtMs > nowMs && this.servers.isAlive(this.servers.servers.get(lease.primary), nowMs)) ||
          this.grantsInFlight.has(h) ||
          this.placing.has(h),
        deleted: g.deleted,
        avoid: doomed.get(h),
        blocking: nowMs - (this.blockedAtMs.get(h) ?? -Infinity) < 10_000,
      });
    }
    return needs;
  }

  async tick(): Promise<void> {
    if (this.ticking || this.role !== 'master' || this.fencedByEpoch !== undefined || this.inSafeMode()) return;
    this.ticking = true;
    try {
      const nowMs = this.now();
      const needs = this.chunkNeeds(nowMs);
      const views = this.servers.views(nowMs);
      const orders = planClones(needs, views, this.clones, { maxClusterClones: this.opts.maxClusterClones, maxPerServerClones: this.opts.maxPerServerClones }, { chunkSizeBytes: this.opts.chunkSizeBytes, recentCreatesLimit: 32 });
      for (const o of orders) void this.runClone(o.handle, o.version, o.source, o.target);
      // An under-replicated chunk under lease cannot be cloned (a mutation could be copied half
      // done): ask its primary to give the lease back, so the next tick can clone it.
      let revokes = 0;
      for (const n of needs) {
        if (revokes >= 8) break;
        // Only when some server could take the clone: otherwise revoking just churns leases and versions.
        const target = views.some((v) => !n.live.includes(v.id) && !n.avoid?.includes(v.id) && v.freeBytes >= this.opts.chunkSizeBytes);
        if (target && n.live.length > 0 && n.live.length < n.goal && n.leased && !this.grantsInFlight.has(n.handle) && !this.revokingForRepair.has(n.handle)) {
          revokes++;
          void this.revokeForRepair(n.handle);
        }
      }
      // Gradual rebalancing (one clone at a time, only when nothing needs repair).
      const move = orders.length === 0 ? planRebalance(needs, views, this.clones, this.opts.rebalanceMinImbalance) : undefined;
      if (move) {
        this.counters.rebalanceMoves++;
        void this.runClone(move.handle, move.version, move.source, move.target);
      }
      for (const x of planExcess(needs, views, (h) => this.leases.get(h)?.primary)) {
        if (this.clones.some((c) => c.handle === x.handle)) continue;
        this.orderDelete(x.server, x.handle);
        this.counters.excessDeleted++;
      }
      void this.retryBumps();
      await this.reclaimTrash();
    } catch (e) {
      this.opts.log.error({ err: e }, 'healing tick failed');
    } finally {
      this.ticking = false;
    }
  }

  /** Tells the replicas of chunks in `unbumped` their current version again; listed again once they took it. */
  private async retryBumps(): Promise<void> {
    if (this.retryingBumps || this.unbumped.size === 0) return;
    this.retryingBumps = true;
    try {
      const nowMs = this.now();
      await Promise.allSettled(
        [...this.unbumped].flatMap(([handle, ub]) => {
          const meta = this.ns.chunks.get(handle);
          if (!meta) {
            this.unbumped.delete(handle);
            return [];
          }
          if (this.grantsInFlight.has(handle)) return [];
          const version = meta.version;
          return [...ub.servers]
            .filter((id) => this.servers.isAlive(this.servers.servers.get(id), nowMs))
            .map(async (id) => {
              await rpcJson(this.servers.ref(id)!.url, '/chunk/version', { handle, version }, { targetName: id, timeoutMs: 5_000 });
              if (this.unbumped.get(handle) !== ub || this.ns.chunks.get(handle)?.version !== version) return;
              ub.servers.delete(id);
              this.servers.addLocation(handle, id);
              if (ub.servers.size === 0) this.unbumped.delete(handle);
            });
        }),
      );
    } finally {
      this.retryingBumps = false;
    }
  }

  /**
   * Before a clone, a new version on every live replica. A primary whose lease has run out may
   * still have a mutation on its way to the replicas: ordered while its lease ran, delivered late
   * (a paused or slow primary, a slow network). A clone copied at the old version would miss it
   * while the replicas it came from apply and acknowledge it, leaving a listed replica without an
   * acknowledged write (found by the partition suite; test/partition/lease-partition.test.ts).
   * At a new version every replica refuses such a late mutation. Returns the version to clone.
   */
  private async bumpBeforeClone(handle: string, version: number, source: string): Promise<number> {
    const meta = this.ns.chunks.get(handle);
    if (!meta || meta.version !== version) throw new GfsError('STALE_VERSION', `chunk ${handle} is no longer at version ${version}`);
    if (version === initialChunkVersion) return version; // never leased: no primary ever acted on it
    const holders = this.servers.liveLocations(handle, this.now());
    const next = version + 1;
    this.recoveredPending.delete(handle);
    await this.logOp({ op: 'version', handle, version: next, pendingFrom: version } satisfies Op);
    this.versionBumpedAtMs.set(handle, this.now());
    const results = await Promise.allSettled(
      holders.map(async (id) => {
        await rpcJson(this.servers.ref(id)!.url, '/chunk/version', { handle, version: next }, { targetName: id, timeoutMs: 5_000 });
        return id;
      }),
    );
    const took = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    if (took.length === 0) {
      // As in grant(): unreachable, all of them; judging them stale would lose the chunk.
      const prev = this.unbumped.get(handle);
      this.unbumped.set(handle, { fromVersion: prev?.fromVersion ?? version, servers: new Set([...(prev?.servers ?? []), ...holders]) });
    }
    for (const id of [...(this.servers.locations.get(handle) ?? [])]) if (!took.includes(id)) this.servers.removeLocation(handle, id);
    if (took.length > 0) this.tookVersion.set(handle, { version: next, servers: new Set(took) });
    if (!took.includes(source)) throw new GfsError('UNAVAILABLE', `clone source ${source} did not take version ${next}`);
    await this.logOp({ op: 'bumped', handle, version: next } satisfies Op);
    return next;
  }

  private readonly revokingForRepair = new Set<string>();

  /** Takes a lease back from a primary that acknowledges it stopped (chunkserver /chunk/revoke); otherwise it runs out. */
  private async revokeForRepair(handle: string): Promise<void> {
    const l = this.leases.get(handle);
    if (!l || l.expiresAtMs <= this.now()) return;
    const ref = this.servers.ref(l.primary);
    if (!ref) return;
    this.revokingForRepair.add(handle);
    try {
      await rpcJson(ref.url, '/chunk/revoke', { handle }, { targetName: l.primary, timeoutMs: Math.min(10_000, this.opts.leaseMs) });
      if (this.leases.get(handle) === l) this.leases.delete(handle);
      this.counters.leasesRevokedForRepair++;
    } catch {
      /* unreachable primary: its lease runs out by itself */
    } finally {
      this.revokingForRepair.delete(handle);
    }
  }

  private async runClone(handle: string, version: number, source: string, target: string): Promise<void> {
    const clone: InFlightClone = { handle, source, target };
    this.clones.push(clone);
    this.counters.clonesStarted++;
    try {
      const src = this.servers.ref(source);
      const dst = this.servers.ref(target);
      if (!src || !dst) return;
      version = await this.bumpBeforeClone(handle, version, source);
      const r = await rpcJson<{ sizeBytes: number }>(
        dst.url,
        '/chunk/clone',
        { handle, version, sourceUrl: src.url, sourceId: source, bytesPerSec: this.opts.cloneBytesPerSec },
        { targetName: target, timeoutMs: Math.max(60_000, this.opts.cloneBytesPerSec > 0 ? (2 * this.opts.chunkSizeBytes * 1000) / this.opts.cloneBytesPerSec : 0) },
      );
      // Count it only if nothing changed meanwhile (no lease could be granted during the clone).
      const meta = this.ns.chunks.get(handle);
      if (meta && meta.version === version) {
        this.servers.addLocation(handle, target);
        this.tookVersion.get(handle)?.servers.add(target);
        const s = this.servers.servers.get(target);
        s?.held.set(handle, { version, sizeBytes: r.sizeBytes });
        this.counters.clonesDone++;
        this.counters.clonedBytes += r.sizeBytes;
      }
    } catch (e) {
      this.counters.clonesFailed++;
      this.opts.log.warn({ handle, source, target, err: (e as Error).message }, 'clone failed');
    } finally {
      this.clones.splice(this.clones.indexOf(clone), 1);
    }
  }

  /** Per-file health, like `hdfs fsck`. */
  fsck(rawPath: string): { files: { path: string; replication: number; chunks: { index: number; handle: string; version: number; live: string[]; corrupt: string[]; state: string }[] }[]; summary: Record<string, number> } {
    const root = normalizePath(rawPath);
    if (!this.ns.get(root)) throw new GfsError('NOT_FOUND', `no such file or directory: ${root}`);
    const nowMs = this.now();
    const summary = { files: 0, dirs: 0, chunks: 0, healthy: 0, underReplicated: 0, overReplicated: 0, missing: 0, corrupt: 0 };
    const files = [];
    for (const p of this.ns.subtree(root)) {
      const n = this.ns.get(p)!;
      if (n.type === 'dir') {
        summary.dirs++;
        continue;
      }
      if (isUnder(p, trashDir) && !isUnder(root, trashDir)) continue;
      summary.files++;
      const chunks = n.chunks.map((h, index) => {
        const live = this.servers.liveLocations(h, nowMs);
        const corrupt = [...(this.corrupt.get(h) ?? [])];
        const state = live.length === 0 ? 'missing' : live.length < n.replication ? 'under-replicated' : live.length > n.replication ? 'over-replicated' : 'healthy';
        summary.chunks++;
        if (state === 'missing') summary.missing++;
        else if (state === 'under-replicated') summary.underReplicated++;
        else if (state === 'over-replicated') summary.overReplicated++;
        else summary.healthy++;
        if (corrupt.length) summary.corrupt++;
        return { index, handle: h, version: this.ns.chunks.get(h)?.version ?? 0, live, corrupt, state };
      });
      files.push({ path: p, replication: n.replication, chunks });
    }
    return { files, summary };
  }

  // ---- status ----

  /**
   * Chunks needing attention, for the status page and /metrics: below their goal (with the file that
   * needs most copies), without any live replica, reported corrupt, being cloned; and the
   * re-replication queue (below goal, some live replica to copy from, no clone under way yet).
   * Lists are cut at `limit` entries; the counts are whole.
   */
  attention(limit: number): {
    underReplicated: { handle: string; path: string; live: string[]; goal: number }[];
    missing: { handle: string; path: string; goal: number }[];
    corrupt: { handle: string; servers: string[] }[];
    cloning: { handle: string; source: string; target: string }[];
    counts: { healthy: number; underReplicated: number; overReplicated: number; missing: number; corrupt: number; cloning: number; queue: number };
  } {
    const nowMs = this.now();
    const goal = this.chunkGoals();
    const cloningHandles = new Set(this.clones.map((c) => c.handle));
    const counts = { healthy: 0, underReplicated: 0, overReplicated: 0, missing: 0, corrupt: this.corrupt.size, cloning: this.clones.length, queue: 0 };
    const underReplicated: { handle: string; path: string; live: string[]; goal: number }[] = [];
    const missing: { handle: string; path: string; goal: number }[] = [];
    for (const [handle, g] of goal) {
      const live = this.servers.liveLocations(handle, nowMs);
      if (live.length === 0) {
        counts.missing++;
        if (missing.length < limit) missing.push({ handle, path: g.path, goal: g.goal });
      } else if (live.length < g.goal) {
        counts.underReplicated++;
        if (!cloningHandles.has(handle)) counts.queue++;
        if (underReplicated.length < limit) underReplicated.push({ handle, path: g.path, live: live.sort(), goal: g.goal });
      } else if (live.length > g.goal) counts.overReplicated++;
      else counts.healthy++;
    }
    return {
      underReplicated,
      missing,
      corrupt: [...this.corrupt].slice(0, limit).map(([handle, set]) => ({ handle, servers: [...set].sort() })),
      cloning: this.clones.slice(0, limit).map((c) => ({ handle: c.handle, source: c.source, target: c.target })),
      counts,
    };
  }

  /** Leases that have not run out, by the master's reckoning (at most `limit`, soonest to expire first). */
  activeLeases(limit: number): { handle: string; primary: string; secondaries: string[]; version: number; remainingMs: number }[] {
    const nowMs = this.now();
    const out = [];
    for (const [handle, l] of this.leases) if (l.expiresAtMs > nowMs) out.push({ handle, primary: l.primary, secondaries: [...l.secondaries], version: l.version, remainingMs: Math.round(l.expiresAtMs - nowMs) });
    return out.sort((a, b) => a.remainingMs - b.remainingMs).slice(0, limit);
  }

  /** Replica locations and version of one chunk (status page). */
  chunkReplicas(handle: string): { version: number; live: string[]; dead: string[]; corrupt: string[] } {
    const nowMs = this.now();
    const all = [...(this.servers.locations.get(handle) ?? [])].sort();
    return {
      version: this.ns.chunks.get(handle)?.version ?? 0,
      live: all.filter((id) => this.servers.isAlive(this.servers.servers.get(id), nowMs)),
      dead: all.filter((id) => !this.servers.isAlive(this.servers.servers.get(id), nowMs)),
      corrupt: [...(this.corrupt.get(handle) ?? [])].sort(),
    };
  }

  status(): Record<string, unknown> {
    const nowMs = this.now();
    const { healthy, underReplicated: under, overReplicated: over, missing } = this.attention(0).counts;
    return {
      role: this.role,
      epoch: this.ns.epoch,
      fencedByEpoch: this.fencedByEpoch,
      appliedIndex: this.ns.appliedIndex,
      logReplicas: this.shipper?.status(),
      shadow: this.following
        ? { master: this.following.masterUrl, masterIndex: this.following.masterIndex, appliedIndex: this.ns.appliedIndex, lagRecords: Math.max(0, this.following.masterIndex - this.ns.appliedIndex), stalenessMs: this.following.lastContactAtMs === undefined ? null : Date.now() - this.following.lastContactAtMs, gap: this.following.gap, installs: this.following.installs }
        : undefined,
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
      snapshots: this.snapshots.counters,
    };
  }
}
