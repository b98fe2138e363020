import { ChunkServers, type SpaceOptions } from './chunkservers.js';
import { GrantLog, LeaseMap, type Lease } from './leases.js';
import type { Namespace } from './namespace.js';
import type { InFlightClone } from './replication.js';

// The master's live view of its chunks, beside the namespace (which holds
// only what the log holds): where replicas are, bumps no replica took yet,
// corrupt marks, orders waiting for a heartbeat, clones and placements under
// way, leases. Which replicas took each version is logged, so it is the
// namespace's alone (Namespace.took); the decisions read it there.
//
// Plain data plus small helpers: the decisions over it are the functions of
// master/core/ (report.ts, version-bump.ts, lease-choice.ts, healing.ts,
// health.ts), which take the time as an argument and never do I/O; the
// runtime (master/*.ts) carries out what they decide and feeds results back.
// What must survive a restart is rebuilt from logged records by recover().

/** Bound on chunks remembered as having turned a client away (a priority hint only). */
const maxBlocked = 100_000;

export class ChunkState {
  readonly servers: ChunkServers;
  /** Every grant and its latest expiry, in wall-clock time (GET /debug/leases). */
  readonly grantLog: GrantLog;
  readonly leases: Map<string, Lease>;
  /** When each chunk's version last changed: a heartbeat in flight may still report the old one. */
  readonly versionBumpedAtMs = new Map<string, number>();
  /**
   * Bumps a previous incarnation logged but never confirmed ('version' with pendingFrom and no
   * 'bumped'): no client got a lease at the new version, so replicas still at the old one hold
   * current data. They are brought up to the version through `unbumped`, never judged stale.
   * handle -> old version.
   */
  readonly recoveredPending = new Map<string, number>();
  /**
   * Chunks whose last version bump no replica took: no client got a lease at the new version, so
   * the replicas listed before it (at `fromVersion`) still hold the latest data. They are neither
   * listed nor deleted until a retried bump brings them to the current version.
   */
  readonly unbumped = new Map<string, { fromVersion: number; servers: Set<string> }>();
  /** Chunks whose first replicas are being created: neither cloned nor trimmed until placement is done. */
  readonly placing = new Set<string>();
  /** Chunks with a lease grant (version bump) under way. */
  readonly granting = new Set<string>();
  /** Chunks whose primary is being asked to give its lease back for a repair. */
  readonly revoking = new Set<string>();
  readonly clones: InFlightClone[] = [];
  /** Rebalancing moves: chunk -> the server its replica moves off (trimmed first once the copy is made; healing.ts). */
  readonly movedFrom = new Map<string, string>();
  /** When a client last had to wait for a chunk's repair (lease asked while under-replicated or being cloned). */
  readonly blockedAtMs = new Map<string, number>();
  /** Replicas reported corrupt: never listed, deleted once another replica exists. handle -> servers. */
  readonly corrupt = new Map<string, Set<string>>();
  /** Orders to delete replicas, delivered with each server's next heartbeat reply. server -> handles. */
  readonly pendingDeletes = new Map<string, Set<string>>();

  /** `wallMs`: the wall clock of the grant log only (GET /debug/leases); decisions use the monotonic time passed to them. */
  constructor(deadMs: number, wallMs: () => number, space?: SpaceOptions, recentCreatesWindowMs = 60_000) {
    this.servers = new ChunkServers(deadMs, recentCreatesWindowMs, space);
    this.grantLog = new GrantLog(10_000, wallMs);
    this.leases = new LeaseMap(this.grantLog);
  }

  /**
   * What the log says about versions: the bumps a predecessor left unconfirmed (start-up,
   * promotion). Who took each version needs no copy: it is read from Namespace.took.
   */
  recover(ns: Namespace): void {
    this.recoveredPending.clear();
    for (const [h, from] of ns.pendingBumps) this.recoveredPending.set(h, from);
  }

  orderDelete(server: string, handle: string): void {
    this.servers.removeLocation(handle, server);
    let set = this.pendingDeletes.get(server);
    if (!set) this.pendingDeletes.set(server, (set = new Set()));
    set.add(handle);
  }

  takePendingDeletes(server: string): string[] {
    const set = this.pendingDeletes.get(server);
    if (!set) return [];
    this.pendingDeletes.delete(server);
    return [...set];
  }

  /** Bounded: one move is planned at a time, and an entry goes when its excess is trimmed or its clone fails. */
  setMovedFrom(handle: string, source: string): void {
    if (this.movedFrom.size >= 1024) this.movedFrom.clear();
    this.movedFrom.set(handle, source);
  }

  isCloning(handle: string): boolean {
    return this.clones.some((c) => c.handle === handle);
  }

  noteBlocked(handle: string, nowMs: number): void {
    if (this.blockedAtMs.size >= maxBlocked) this.blockedAtMs.clear();
    this.blockedAtMs.set(handle, nowMs);
  }

  markCorrupt(server: string, handle: string): void {
    let bad = this.corrupt.get(handle);
    if (!bad) this.corrupt.set(handle, (bad = new Set()));
    bad.add(server);
    this.servers.removeLocation(handle, server);
  }

  /** The server no longer has the replica at all: its corrupt mark goes too. */
  forgetCorrupt(server: string, handle: string): void {
    const bad = this.corrupt.get(handle);
    if (bad?.delete(server) && bad.size === 0) this.corrupt.delete(handle);
  }

  /**
   * Live servers holding the current version, best primary first: the last primary of the chunk if it
   * is among them (a new lease after an expiry or a revocation stays where the mutations were), then
   * the least loaded. Reported lengths are not used: heartbeats report them at different moments, so
   * a current replica often looks shorter than another; a replica that missed mutations is already
   * out of the list (Namespace.took, report.ts).
   */
  upToDate(handle: string, nowMs: number): string[] {
    const last = this.grantLog.latestPrimary(handle);
    const load = (id: string) => this.servers.servers.get(id)?.load ?? 0;
    return this.servers.liveLocations(handle, nowMs).sort((a, b) => Number(b === last) - Number(a === last) || load(a) - load(b) || (a < b ? -1 : 1));
  }
}
