import type { Logger } from '../shared/log.js';
import type { LeaseAnswer } from '../shared/wire.js';
import type { ChunkState } from './core/chunk-state.js';
import type { ChunkServers } from './core/chunkservers.js';
import type { Lease } from './core/leases.js';
import type { Namespace, Op } from './core/namespace.js';
import type { LockManager, LockMode } from './locks.js';

// What the master's runtime parts (leasing.ts, heartbeats.ts, healer.ts,
// shadow.ts, snapshot.ts) see of the Master (master.ts): its state, its
// options, and the few operations that do I/O (logging a record) or decide
// for the whole master (writable, safe mode). They import this interface,
// never master.ts, so the master's files form no import cycle.

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
  /** Kept free on each chunkserver, as a fraction of its capacity (--reserve): below it a server takes no new chunks. */
  reserveFraction?: number;
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

export interface LeaseTarget {
  path: string;
  index: number;
}

/** Counters the master keeps for status and /metrics. */
export function newCounters() {
  return { leaseGrants: 0, leaseExtensions: 0, allocations: 0, staleReplicasDropped: 0, orphansDeleted: 0, clonesStarted: 0, clonesDone: 0, clonesFailed: 0, cloneRecordsFailed: 0, rebalanceMoves: 0, leasesRevokedForRepair: 0, clonedBytes: 0, excessDeleted: 0, corruptReported: 0, trashReclaimed: 0, replicaSizeAsks: 0, placedAfresh: 0 };
}
export type MasterCounters = ReturnType<typeof newCounters>;

export interface MasterContext {
  readonly opts: MasterOptions;
  readonly ns: Namespace;
  readonly st: ChunkState;
  readonly locks: LockManager;
  readonly counters: MasterCounters;
  readonly servers: ChunkServers;
  readonly leases: Map<string, Lease>;
  /** 'shadow' follows a master's shipped log and serves reads only; promotion makes it 'master'. */
  readonly role: 'master' | 'shadow';
  /** Monotonic time in ms (the only clock the decisions see). */
  now(): number;
  /** A namespace mutation: locks `leaves`, builds the record (undefined: nothing to do), logs and applies it. */
  mutate(leaves: { path: string; mode: LockMode }[], build: () => Op | undefined): Promise<Op | undefined>;
  /** Logs a record: durable (and on every log replica) and applied when it resolves. */
  logOp(op: Op): Promise<unknown>;
  /** Throws unless this master may log mutations (not a shadow, not fenced, log replicas in sync). */
  checkWritable(): void;
  /** Throws unless this master may grant leases and place chunks. */
  checkMaster(): void;
  inSafeMode(): boolean;
  isMaster(): boolean;
  checkpointSoon(): void;
  lease(handle: string, at?: LeaseTarget): Promise<LeaseAnswer>;
  /** The lease grant under way on handle, and when this master may grant leases at all. */
  leaseGrantState(handle: string): { inFlight: Promise<LeaseAnswer> | undefined; grantsAllowedAtMs: number };
}
