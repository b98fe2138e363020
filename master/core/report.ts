import type { ChunkReport } from '../../shared/wire.js';
import type { ChunkState } from './chunk-state.js';
import type { Namespace, Op } from './namespace.js';

// Judging a chunkserver's report (registration or heartbeat): which of the
// replicas it holds are current (listed, handed to clients), which are stale
// or orphans (deleted through the heartbeat reply), which are corrupt, and
// whether a replica proves the master lost a version bump (adopted).
// Pure: it changes the ChunkState (and, for an adopted version, the chunk's
// version in memory) and returns what the runtime must do; the time is an
// argument. Every branch has a row in test/unit/master/report.test.ts.

/** A chunk whose version changed this recently may still be reported at the old version by a heartbeat in flight. */
export const versionRaceMs = 15_000;

export interface ReportInput {
  server: string;
  chunks: ChunkReport[];
  /** Replicas the server marked corrupt (kept on its disk until the master orders them deleted). */
  corruptChunks?: string[];
}

export interface ReportContext {
  nowMs: number;
  /** In safe mode nothing is deleted: the master may not have heard from every server yet. */
  safe: boolean;
  /** A shadow learns locations but never changes state outside the log. */
  role: 'master' | 'shadow';
  /** A copy-on-write copy whose record is not logged yet (master/snapshot.ts) is no orphan. */
  isPendingCopy: (handle: string) => boolean;
}

export interface ReportOutcome {
  /** Replicas to delete, for the heartbeat reply. */
  deletes: string[];
  /** Records to log: versions adopted from replicas ahead of the log. */
  records: Op[];
  staleDropped: number;
  orphans: number;
  /** Corrupt replicas newly reported by this report (not already marked). */
  corruptNew: number;
}

/** Why one replica is or is not listed; `judgeReplica` returns it, processReport acts on it. */
export type Verdict =
  | 'listed'
  | 'clone-in-progress'
  | 'pending-copy'
  | 'corrupt'
  | 'delete-ordered'
  | 'orphan'
  | 'awaiting-recovered-bump'
  | 'awaiting-retried-bump'
  | 'racing-kept'
  | 'racing-dropped'
  | 'stale'
  | 'shadow-ahead'
  | 'adopt'
  | 'bump-settling'
  | 'took-late';

/** The verdict on one reported replica, from the state alone (no change made). */
export function judgeReplica(st: ChunkState, ns: Namespace, server: string, c: ChunkReport, ctx: ReportContext): Verdict {
  if (ctx.isPendingCopy(c.handle)) return 'pending-copy';
  // A clone in progress is not a replica yet (it is filled at version 0 and takes the real version last).
  if (st.clones.some((x) => x.handle === c.handle && x.target === server)) return 'clone-in-progress';
  if (st.corrupt.get(c.handle)?.has(server)) return 'corrupt';
  // Ordered deleted (excess, corrupt) and not gone yet: this report may have been sent before the
  // order arrived; counting the replica again would let the next tick trim another one.
  if (st.pendingDeletes.get(server)?.has(c.handle)) return 'delete-ordered';
  const meta = ns.chunks.get(c.handle);
  // No file refers to it (deleted, or a creation the log never saw).
  if (!meta) return 'orphan';
  if (c.version < meta.version) {
    const pendingFrom = st.recoveredPending.get(c.handle);
    if (pendingFrom !== undefined && c.version >= pendingFrom && meta.version === pendingFrom + 1) return 'awaiting-recovered-bump';
    const ub = st.unbumped.get(c.handle);
    // Missed a bump no replica took: still the latest data, waiting for the retried bump.
    if (ub?.servers.has(server) && c.version >= ub.fromVersion) return 'awaiting-retried-bump';
    const bumped = st.versionBumpedAtMs.get(c.handle);
    // A heartbeat sent just before the replica took a new version is not evidence of staleness:
    // a replica still listed took the bump and keeps its place; one that missed it is dropped,
    // but deleted only later.
    const racing = bumped !== undefined && ctx.nowMs - bumped < versionRaceMs;
    if (racing) return st.servers.locations.get(c.handle)?.has(server) ? 'racing-kept' : 'racing-dropped';
    return 'stale';
  }
  // A shadow lags the master's log by a batch: the version record is on its way.
  if (c.version > meta.version) return ctx.role === 'master' ? 'adopt' : 'shadow-ahead';
  // This master's own bump, its 'bumped' record not applied yet: who took it is not logged yet,
  // and settleBump left only the replicas that took it listed. One listed keeps its place; one not
  // listed missed it (or answered too late) and waits, undeleted, for the record that names the takers.
  if (ns.pendingBumps.get(c.handle) === meta.version - 1 && !st.recoveredPending.has(c.handle)) {
    return st.servers.locations.get(c.handle)?.has(server) ? 'listed' : 'bump-settling';
  }
  const took = ns.took.get(c.handle);
  // At the current version without having been logged as taking it: stale (see Namespace.took).
  if (took && took.version === c.version && !took.servers.has(server)) return 'took-late';
  return 'listed';
}

export function processReport(st: ChunkState, ns: Namespace, r: ReportInput, ctx: ReportContext): ReportOutcome {
  const out: ReportOutcome = { deletes: [], records: [], staleDropped: 0, orphans: 0, corruptNew: 0 };
  const s = st.servers.servers.get(r.server);
  if (!s) return out;
  const before = new Set(s.held.keys());
  st.servers.setHeld(s, r.chunks);
  const corruptHere = new Set(r.corruptChunks ?? []);
  for (const h of corruptHere) {
    before.delete(h);
    if (!st.corrupt.get(h)?.has(r.server)) out.corruptNew++;
    st.markCorrupt(r.server, h);
  }
  const del = (handle: string, counter: 'staleDropped' | 'orphans') => {
    if (ctx.safe) return;
    out.deletes.push(handle);
    out[counter]++;
  };
  for (const c of r.chunks) {
    before.delete(c.handle);
    const v = judgeReplica(st, ns, r.server, c, ctx);
    switch (v) {
      case 'pending-copy':
      case 'clone-in-progress':
      case 'racing-kept':
        continue;
      case 'listed':
        st.servers.addLocation(c.handle, r.server);
        continue;
      case 'adopt': {
        // The master failed after granting a lease but before logging it... or logged it and lost
        // the tail: the replica has the newer truth. In memory now, so the reports that follow are
        // judged against it; the record makes it durable.
        ns.chunks.get(c.handle)!.version = c.version;
        st.versionBumpedAtMs.set(c.handle, ctx.nowMs);
        out.records.push({ op: 'version', handle: c.handle, version: c.version });
        for (const other of [...(st.servers.locations.get(c.handle) ?? [])]) if (other !== r.server) st.servers.removeLocation(c.handle, other);
        st.servers.addLocation(c.handle, r.server);
        continue;
      }
      case 'awaiting-recovered-bump': {
        // Holds current data at the version before a bump the previous master never confirmed:
        // the retried bump (master/healer.ts) brings it to the current version.
        const prev = st.unbumped.get(c.handle);
        st.unbumped.set(c.handle, { fromVersion: prev?.fromVersion ?? st.recoveredPending.get(c.handle)!, servers: new Set([...(prev?.servers ?? []), r.server]) });
        st.servers.removeLocation(c.handle, r.server);
        continue;
      }
      case 'orphan':
        st.servers.removeLocation(c.handle, r.server);
        del(c.handle, 'orphans');
        continue;
      case 'stale':
      case 'took-late':
        st.servers.removeLocation(c.handle, r.server);
        del(c.handle, 'staleDropped');
        continue;
      default:
        // corrupt, delete-ordered, awaiting-*, racing-dropped, shadow-ahead, bump-settling: not listed, not deleted now.
        st.servers.removeLocation(c.handle, r.server);
        continue;
    }
  }
  // A corrupt replica goes once a good one exists elsewhere (re-replication restores the count);
  // until then it is kept, in case it is the only copy of most of the data.
  for (const h of corruptHere) if (!ctx.safe && ctx.role === 'master' && st.servers.liveLocations(h, ctx.nowMs).length > 0) st.orderDelete(r.server, h);
  // Gone from the server: no location, and a corrupt mark on it is forgotten. A corrupt replica is
  // not in the chunk list (its server lists it apart until told to delete it): its mark goes when
  // neither list names it any more.
  for (const h of before) {
    st.servers.removeLocation(h, r.server);
    st.forgetCorrupt(r.server, h);
  }
  const reported = new Set(r.chunks.map((c) => c.handle));
  for (const [h, servers] of [...st.corrupt]) if (servers.has(r.server) && !corruptHere.has(h) && !reported.has(h)) st.forgetCorrupt(r.server, h);
  return out;
}
