// master/: the master. It owns the namespace, the chunk map, leases and chunk
// versions, behind a write-ahead operation log. It may import shared/ only.
//
// The design (docs/architecture.md): master/core/ holds the state and every
// decision over it as pure code (no I/O; the time is an argument): the
// namespace and its log records, report judgement, the version-bump protocol,
// lease choice, healing plans, health. The files beside it are the runtime:
// they log records (oplog.ts), call chunkservers (rpc), and feed the results
// back into the core. This file wires them together: the Master is what
// master/server.ts routes requests to.
import { performance } from 'node:perf_hooks';
import { GfsError, invariant } from '../shared/errors.js';
import { requestContext, type Logger } from '../shared/log.js';
import { setRpcHeader } from '../shared/rpc.js';
import type { HeartbeatAnswer, HeartbeatReq, LeaseAnswer, LeaseConfirmAnswer, LogAppendAnswer, LogAppendReq, LogInstallReq, RegisterReq } from '../shared/wire.js';
import { newCounters, type LeaseTarget, type MasterContext, type MasterOptions } from './context.js';
import { ChunkState } from './core/chunk-state.js';
import type { ChunkServers } from './core/chunkservers.js';
import { attention, fsck, type Attention, type FsckReport } from './core/health.js';
import type { GrantLog, Lease } from './core/leases.js';
import { Namespace, type NamespaceSnapshot, type Op } from './core/namespace.js';
import { safeModeOver } from './core/safe-mode.js';
import { Files } from './files.js';
import { Healer } from './healer.js';
import { Heartbeats } from './heartbeats.js';
import { Leasing } from './leasing.js';
import { LockManager, type LockMode } from './locks.js';
import { buildCheckpointInWorker } from './checkpoint-replay.js';
import { namespaceOf } from './checkpoint-stream.js';
import { OpLog, type FileCheckpointSource } from './oplog.js';
import { LogShipper } from './replicas.js';
import { Follower, type Following } from './shadow.js';
import { Snapshots } from './snapshot.js';

export type { MasterOptions } from './context.js';

/**
 * The request id of the client call being served (x-gfs-request-id, set by shared/http.ts) and how many
 * mutations it has made so far. A call may log several mutations (undelete: the rename, then the emptied
 * trash directory); each gets its own retry-cache key, `rid` then `rid#1`, `rid#2`, ..., so a resent call
 * skips exactly the steps its first attempt logged and still does the rest.
 */
export { requestContext };

/** Chunkservers keep this fraction of their disk free by default (--reserve). */
export const defaultReserveFraction = 0.05;

/** The retry-cache key of the next mutation of the call being served, if it carries a request id. */
function nextRequestKey(): string | undefined {
  const ctx = requestContext.getStore();
  if (ctx === undefined) return undefined;
  const n = ctx.mutations++;
  return n === 0 ? ctx.rid : `${ctx.rid}#${n}`;
}

/**
 * Replays one logged record at start-up. A record whose apply throws threw the same way when it was
 * first logged (apply is deterministic), so the state it left is the state without it: it is skipped
 * with a warning instead of keeping the master from ever starting again.
 */
export function replayRecord(ns: Namespace, op: Op, log: Logger): boolean {
  try {
    ns.apply(op);
    return true;
  } catch (e) {
    log.warn({ index: ns.appliedIndex, op: op.op, err: (e as Error).message }, 'replay: a logged record could not be applied (it failed the same way when logged); skipped');
    return false;
  }
}

export class Master implements MasterContext {
  readonly locks = new LockManager();
  readonly st: ChunkState;
  /** Snapshots and copy-on-write (master/snapshot.ts). */
  readonly snapshots: Snapshots;
  readonly files: Files;
  readonly leasing: Leasing;
  readonly heartbeats: Heartbeats;
  readonly healer: Healer;
  readonly counters = newCounters();
  private readonly clock: () => number;
  readonly startedAtMs: number;
  private safeModeUntilMs: number;
  private safeModeLeft = false;
  private checkpointing: Promise<void> | undefined;
  /** 'shadow' follows a master's shipped log and serves reads only; promotion makes it 'master'. */
  role: 'master' | 'shadow';
  /** Ships every batch to the log replicas (master/replicas.ts); only while role is 'master'. */
  shipper: LogShipper | undefined;
  /** Set when a chunkserver reports a higher epoch: another master was promoted; this one only refuses. */
  fencedByEpoch: number | undefined;
  /** Shadow only: follows the master's log (master/shadow.ts). */
  private follower: Follower | undefined;
  /** Records skipped at replay because their apply threw (see replayRecord). */
  readonly replaySkipped: number;

  private constructor(
    readonly opts: MasterOptions,
    public ns: Namespace,
    readonly oplog: OpLog,
    recovered: boolean,
    replaySkipped: number,
  ) {
    this.clock = opts.clock ?? (() => performance.now());
    this.replaySkipped = replaySkipped;
    this.st = new ChunkState(opts.deadMs, () => Date.now(), { chunkSizeBytes: opts.chunkSizeBytes, reserveFraction: opts.reserveFraction ?? defaultReserveFraction });
    this.st.recover(ns);
    this.startedAtMs = this.clock();
    // A master that recovered state may have granted leases before it died; none outlives leaseMs from now.
    const waited = recovered && ns.chunks.size > 0;
    this.leasing = new Leasing(this, waited ? this.startedAtMs + opts.leaseMs : this.startedAtMs);
    this.safeModeUntilMs = waited ? this.startedAtMs + opts.safeModeMs : this.startedAtMs;
    this.snapshots = new Snapshots(this);
    this.files = new Files(this);
    this.heartbeats = new Heartbeats(this, this.leasing, {
      noteEpoch: (e) => this.noteEpoch(e),
      isPendingCopy: (h) => this.snapshots.isPendingCopy(h),
      isRevoking: (h) => this.snapshots.isRevoking(h),
    });
    this.healer = new Healer(this, this.leasing, { reclaimTrash: () => this.files.reclaimTrash(), placeAfresh: (h, goal) => this.files.placeNewChunk(h, goal) });
    this.role = opts.shadowOf ? 'shadow' : 'master';
    if (opts.shadowOf) {
      this.follower = new Follower(
        {
          oplog,
          log: opts.log,
          ns: () => this.ns,
          replaceNamespace: (n) => {
            this.ns = n;
          },
          checkpointIdle: async () => {
            await this.checkpointing;
          },
          maybeCheckpoint: () => this.maybeCheckpoint(),
        },
        opts.shadowOf,
        ns.appliedIndex,
      );
    }
    if (this.role === 'master') this.makeShipper();
    setRpcHeader('x-gfs-epoch', String(ns.epoch));
  }

  get servers(): ChunkServers {
    return this.st.servers;
  }
  get leases(): Map<string, Lease> {
    return this.st.leases;
  }
  /** Every grant and its latest expiry, in wall-clock time (GET /debug/leases). */
  get grantLog(): GrantLog {
    return this.st.grantLog;
  }
  /** Shadow: the master it follows, when it last heard from it, and the index the master had reached. */
  get following(): Following | undefined {
    return this.follower?.following;
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
      // Whether a failed local write may already be on a log replica (then it is held, not dropped).
      hasLogReplicas: () => master?.shipper !== undefined,
      onFsync: opts.onFsync,
    });
    const ns = recovery.checkpoint ? await namespaceOf(recovery.checkpoint) : new Namespace();
    let skipped = 0;
    for (const r of recovery.records) if (!replayRecord(ns, r as Op, opts.log)) skipped++;
    const recovered = recovery.checkpoint !== undefined || recovery.records.length > 0;
    master = new Master(opts, ns, oplog, recovered, skipped);
    opts.log.info({ files: ns.fileCount, chunks: ns.chunks.size, replayed: recovery.records.length, skipped, droppedTailBytes: recovery.droppedTailBytes }, 'master state recovered');
    return master;
  }

  now(): number {
    return this.clock();
  }

  start(): void {
    this.healer.start(Math.max(100, this.opts.heartbeatMs));
    if (this.role === 'master') this.shipper?.start();
  }

  async close(): Promise<void> {
    this.healer.stop();
    this.shipper?.stop();
    await this.checkpointing;
    await this.oplog.close();
  }

  // ---- mutations: lock, validate, log (durable), apply ----
  async mutate(leaves: { path: string; mode: LockMode }[], build: () => Op | undefined): Promise<Op | undefined> {
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

  isMaster(): boolean {
    return this.role === 'master' && this.fencedByEpoch === undefined;
  }

  /** Only a master that is not fenced off grants leases or places chunks. */
  checkMaster(): void {
    if (!this.isMaster()) this.checkWritable();
  }

  /** Every mutation of the namespace goes through here: checked, then logged (durable, replicated) and applied. */
  async logOp(op: Op): Promise<unknown> {
    this.checkWritable();
    return this.oplog.append(op);
  }

  private maybeCheckpoint(): void {
    if (this.checkpointing || !this.oplog.needsCheckpoint()) return;
    this.checkpointing = this.oplog
      .checkpoint(this.checkpointSource)
      .catch((e) => this.opts.log.error({ err: e }, 'checkpoint failed'))
      .finally(() => {
        this.checkpointing = undefined;
      });
  }

  /** A checkpoint if the log has grown enough. */
  checkpointSoon(): void {
    this.maybeCheckpoint();
  }

  /** A checkpoint that covers every record logged before the call (one already running switched logs earlier: it is waited for, then another made). */
  async checkpointNow(): Promise<void> {
    await this.checkpointing;
    await this.oplog.checkpoint(this.checkpointSource);
  }

  /** Checkpoints are built from the files in a worker (master/checkpoint-replay.ts): the event loop only switches logs. */
  private readonly checkpointSource: FileCheckpointSource = {
    fromFiles: async (job) => {
      const startMs = Date.now();
      const r = await buildCheckpointInWorker(job);
      this.opts.log.info({ logSeq: job.newSeq, records: r.records, skipped: r.skipped, stateBytes: r.stateBytes, ms: Date.now() - startMs }, 'checkpoint built from the logs');
      return r;
    },
  };

  inSafeMode(): boolean {
    if (this.safeModeLeft) return false;
    if (!safeModeOver(this.st, this.ns, this.now(), this.safeModeUntilMs)) return true;
    this.safeModeLeft = true;
    this.opts.log.info('left safe mode');
    return false;
  }

  // ---- leases ----
  async lease(handle: string, at?: LeaseTarget): Promise<LeaseAnswer> {
    this.checkMaster();
    const meta = this.ns.chunks.get(handle);
    if (!meta) throw new GfsError('NOT_FOUND', `unknown chunk ${handle}`);
    // Snapshot in progress, a stale handle, or a shared chunk to copy first (master/snapshot.ts).
    const routed = this.snapshots.routeLease(handle, meta.refCount, at);
    if (routed) return routed;
    return this.leasing.decide(handle, at);
  }

  leaseGrantState(handle: string): { inFlight: Promise<LeaseAnswer> | undefined; grantsAllowedAtMs: number } {
    return { inFlight: this.leasing.inFlight(handle), grantsAllowedAtMs: this.leasing.grantsAllowedAtMs };
  }

  leaseConfirm(id: string, handle: string): LeaseConfirmAnswer {
    return this.leasing.confirm(id, handle, this.snapshots.isRevoking(handle));
  }

  leaseOf(handle: string): Lease | undefined {
    return this.st.leases.get(handle);
  }

  // ---- chunkservers (master/heartbeats.ts) ----
  register(req: RegisterReq): HeartbeatAnswer {
    return this.heartbeats.register(req);
  }

  heartbeat(req: HeartbeatReq): HeartbeatAnswer {
    return this.heartbeats.heartbeat(req);
  }

  reportCorrupt(id: string, handle: string): void {
    this.heartbeats.reportCorrupt(id, handle);
  }

  async tick(): Promise<void> {
    await this.healer.tick();
  }

  // ---- log replicas, shadows, failover (master/replicas.ts, master/shadow.ts) ----
  private followerOrThrow(): Follower {
    if (!this.follower) throw new GfsError('STALE_EPOCH', `not a shadow any more: this is the master of epoch ${this.ns.epoch}`);
    return this.follower;
  }

  acceptLog(req: LogAppendReq): Promise<LogAppendAnswer> {
    return this.followerOrThrow().acceptLog(req);
  }

  installState(req: LogInstallReq): Promise<LogAppendAnswer> {
    return this.followerOrThrow().installState(req);
  }

  /**
   * Shadow -> master. The order matters: the next epoch is durable before this node answers as
   * master, and its log shipping runs before it can acknowledge any mutation (role changes last).
   * Leases the old master granted are honoured: no grant for one lease period. Refused if this
   * shadow knows its log is incomplete, unless forced.
   */
  async promote(force: boolean): Promise<{ epoch: number; appliedIndex: number }> {
    if (this.role !== 'shadow' || !this.follower) throw new GfsError('BAD_REQUEST', `already the master (epoch ${this.ns.epoch})`);
    await this.follower.readyToPromote(force);
    const epoch = this.ns.epoch + 1;
    await this.oplog.append({ op: 'epoch', epoch, t: Date.now() } satisfies Op);
    invariant(this.ns.epoch === epoch, 'the epoch record was applied');
    this.makeShipper();
    this.shipper?.start();
    const nowMs = this.now();
    this.leasing.grantsAllowedAtMs = nowMs + this.opts.leaseMs;
    this.safeModeLeft = false;
    this.safeModeUntilMs = nowMs + this.opts.safeModeMs;
    // Bumps the old master logged but never saw taken, and who took each version, as the log says.
    this.st.recover(this.ns);
    setRpcHeader('x-gfs-epoch', String(epoch));
    this.follower = undefined;
    this.role = 'master';
    this.opts.log.warn({ epoch, appliedIndex: this.ns.appliedIndex }, 'promoted to master');
    return { epoch, appliedIndex: this.ns.appliedIndex };
  }

  /** A chunkserver saw a higher epoch: another master was promoted. From now on this one refuses everything. */
  private noteEpoch(maxEpoch: number | undefined): void {
    if (maxEpoch === undefined || maxEpoch <= this.ns.epoch || this.fencedByEpoch !== undefined) return;
    this.fencedByEpoch = maxEpoch;
    this.opts.log.error({ epoch: this.ns.epoch, newer: maxEpoch }, 'fenced: a master of a higher epoch exists');
  }

  // ---- health and status ----
  /** Per-file health, like `hdfs fsck`. */
  fsck(rawPath: string): FsckReport {
    return fsck(this.st, this.ns, rawPath, this.now());
  }

  /** Chunks needing attention (status page, /metrics); see master/core/health.ts. */
  attention(limit: number): Attention {
    return attention(this.st, this.ns, limit, this.now());
  }

  /** Leases that have not run out, by the master's reckoning (at most `limit`, soonest to expire first). */
  activeLeases(limit: number): { handle: string; primary: string; secondaries: string[]; version: number; remainingMs: number }[] {
    const nowMs = this.now();
    const out = [];
    for (const [handle, l] of this.st.leases) if (l.expiresAtMs > nowMs) out.push({ handle, primary: l.primary, secondaries: [...l.secondaries], version: l.version, remainingMs: Math.round(l.expiresAtMs - nowMs) });
    return out.sort((a, b) => a.remainingMs - b.remainingMs).slice(0, limit);
  }

  /** Replica locations and version of one chunk (status page). */
  chunkReplicas(handle: string): { version: number; live: string[]; dead: string[]; corrupt: string[] } {
    const nowMs = this.now();
    const servers = this.st.servers;
    const all = [...(servers.locations.get(handle) ?? [])].sort();
    return {
      version: this.ns.chunks.get(handle)?.version ?? 0,
      live: all.filter((id) => servers.isAlive(servers.servers.get(id), nowMs)),
      dead: all.filter((id) => !servers.isAlive(servers.servers.get(id), nowMs)),
      corrupt: [...(this.st.corrupt.get(handle) ?? [])].sort(),
    };
  }

  status(): Record<string, unknown> {
    const nowMs = this.now();
    const { healthy, underReplicated: under, overReplicated: over, missing } = this.attention(0).counts;
    const f = this.following;
    return {
      role: this.role,
      epoch: this.ns.epoch,
      fencedByEpoch: this.fencedByEpoch,
      appliedIndex: this.ns.appliedIndex,
      logReplicas: this.shipper?.status(),
      shadow: f ? { master: f.masterUrl, masterIndex: f.masterIndex, appliedIndex: this.ns.appliedIndex, lagRecords: Math.max(0, f.masterIndex - this.ns.appliedIndex), stalenessMs: f.lastContactAtMs === undefined ? null : Date.now() - f.lastContactAtMs, gap: f.gap, installs: f.installs } : undefined,
      safeMode: this.inSafeMode(),
      files: this.ns.fileCount,
      chunkSizeBytes: this.opts.chunkSizeBytes,
      leaseMs: this.opts.leaseMs,
      chunks: { total: this.ns.chunks.size, healthy, underReplicated: under, overReplicated: over, missing },
      chunkservers: [...this.st.servers.servers.values()].map((s) => ({
        id: s.id,
        url: s.url,
        rack: s.rack,
        alive: this.st.servers.isAlive(s, nowMs),
        lastHeartbeatAgoMs: Math.round(nowMs - s.lastSeenMs),
        chunks: s.held.size,
        usedBytes: s.usedBytes,
        freeBytes: s.freeBytes,
        capacityBytes: s.capacityBytes,
        reserveBytes: this.st.servers.reserveBytes(s),
        /** Below its reserve or too full for another chunk: it takes no new chunks. */
        full: this.st.servers.isFull(s),
        load: s.load,
      })),
      leases: this.st.leases.size,
      oplog: this.oplog.stats,
      replaySkipped: this.replaySkipped,
      counters: this.counters,
      snapshots: this.snapshots.counters,
    };
  }
}
