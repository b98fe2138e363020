import { invariant } from '../../shared/errors.js';
import type { ChunkState } from './chunk-state.js';
import type { Namespace, Op } from './namespace.js';

// The one version-bump protocol, for lease grants and for clones alike:
//   1. log {version, pendingFrom}    durable before any replica hears of it, so a restarted master
//                                    never hands out a version lower than one a replica holds;
//   2. tell the chosen replicas      (the runtime's RPCs; it reports who answered);
//   3. settle: who took it is the new replica set; the rest are stale from now on;
//      log {bumped, servers}         durable before any client hears of a lease at the new version,
//                                    and naming the replicas, so a restarted master can tell a
//                                    replica that applied the bump late from one that took it.
// If nobody took it, nothing happened at the new version: the replicas keep their data and are
// brought up by a retried bump (ChunkState.unbumped) instead of being judged stale.
// The runtime side is runBump in master/leasing.ts.

export interface BumpStart {
  handle: string;
  fromVersion: number;
  version: number;
  record: Op;
}

/** Step 1: the record that makes the next version durable. */
export function startBump(st: ChunkState, ns: Namespace, handle: string): BumpStart {
  const meta = ns.chunks.get(handle);
  invariant(meta, `bump of unknown chunk ${handle}`);
  // This bump supersedes one a predecessor left unconfirmed.
  st.recoveredPending.delete(handle);
  const version = meta.version + 1;
  return { handle, fromVersion: meta.version, version, record: { op: 'version', handle, version, pendingFrom: meta.version } };
}

/** After step 1's record is durable (and applied): reports at the old version may still be in flight. */
export function bumpLogged(st: ChunkState, b: BumpStart, nowMs: number): void {
  st.versionBumpedAtMs.set(b.handle, nowMs);
}

/** Step 3: the replicas that took the version become the chunk's locations; the record to log, if any took it. */
export function settleBump(st: ChunkState, b: BumpStart, asked: string[], took: string[]): Op | undefined {
  if (took.length === 0) {
    // Unreachable, all of them: judging them stale would lose the chunk. Retry the bump instead.
    const prev = st.unbumped.get(b.handle);
    st.unbumped.set(b.handle, { fromVersion: prev?.fromVersion ?? b.fromVersion, servers: new Set([...(prev?.servers ?? []), ...asked]) });
  } else {
    st.unbumped.delete(b.handle);
  }
  // Replicas that missed the new version (dead ones included) are stale from now on:
  // after a bump, a listed replica is one that took it (report.ts relies on this until the
  // 'bumped' record, which names them in Namespace.took, is applied).
  for (const id of [...(st.servers.locations.get(b.handle) ?? [])]) if (!took.includes(id)) st.servers.removeLocation(b.handle, id);
  return took.length > 0 ? { op: 'bumped', handle: b.handle, version: b.version, servers: [...took].sort() } : undefined;
}

/**
 * A clone finished at `version`: the target counts as a replica only if the version did not move
 * meanwhile. The record to log joins it to the replicas that took the version (Namespace.took);
 * until it is applied the runtime keeps the clone in ChunkState.clones, so the target's reports
 * are left alone rather than judged against a set that does not name it yet.
 */
export function settleClone(st: ChunkState, ns: Namespace, handle: string, version: number, target: string, sizeBytes: number): Op | undefined {
  if (ns.chunks.get(handle)?.version !== version) return undefined;
  st.servers.addLocation(handle, target);
  st.servers.servers.get(target)?.held.set(handle, { version, sizeBytes });
  return ns.took.get(handle)?.version === version ? { op: 'took', handle, version, server: target } : undefined;
}
