import type { ChunkState } from './chunk-state.js';
import { decideLease, extendLease, type Lease, type LeaseDecision } from './leases.js';
import type { Namespace } from './namespace.js';

// What the master answers a lease request, given its whole chunk view (the
// pure rules of a single lease are in leases.ts): wait while the chunk is
// being placed or cloned, note a client blocked on an under-replicated chunk
// (its repair goes first), pick the primary among the up-to-date replicas
// (the chunk's last primary first, then the least loaded; ChunkState.upToDate),
// and make the lease once a bump is settled. Extensions, asked by primaries, are here too.

export type LeaseStep = LeaseDecision | { kind: 'busy'; reason: string; retryAfterMs: number };

export interface LeaseAsk {
  handle: string;
  /** The replication goal of the file asking (the default when the request names none). */
  goal: number;
  nowMs: number;
  /** No grant before this time (a restarted or promoted master waits out its predecessor's leases). */
  grantsAllowedAtMs: number;
}

export function chooseLease(st: ChunkState, ns: Namespace, a: LeaseAsk): LeaseStep {
  const meta = ns.chunks.get(a.handle);
  if (!meta) return { kind: 'no-replicas' };
  // A chunk still being created would get a lease on the replicas created so far, and the rest,
  // created at the old version, would be stale from birth (test/partition/lease-partition.test.ts).
  if (st.placing.has(a.handle)) return { kind: 'busy', reason: 'is being created', retryAfterMs: 100 };
  // A clone copies the replica as it is: no mutation may start until it is done.
  if (st.isCloning(a.handle)) {
    st.noteBlocked(a.handle, a.nowMs);
    return { kind: 'busy', reason: 'is being re-replicated', retryAfterMs: 200 };
  }
  const upToDate = st.upToDate(a.handle, a.nowMs);
  // A client wants to write an under-replicated chunk: its repair goes first (clonePriority).
  if (upToDate.length > 0 && upToDate.length < a.goal) st.noteBlocked(a.handle, a.nowMs);
  return decideLease({ nowMs: a.nowMs, lease: st.leases.get(a.handle), upToDate, grantsAllowedAtMs: a.grantsAllowedAtMs, version: meta.version });
}

export type GrantOutcome = { kind: 'granted'; lease: Lease } | { kind: 'wait'; untilMs: number; reason: string };

/** After a settled bump: the lease, on the preferred primary if it took the version. */
export function makeLease(st: ChunkState, handle: string, version: number, preferred: string, took: string[], samePrimaryOnly: boolean, nowMs: number, leaseMs: number): GrantOutcome {
  // While the old lease runs, only its holder may be primary.
  if (samePrimaryOnly && !took.includes(preferred)) return { kind: 'wait', untilMs: st.leases.get(handle)?.expiresAtMs ?? nowMs, reason: `primary did not take version ${version}; waiting out its lease` };
  const primary = took.includes(preferred) ? preferred : took[0]!;
  const lease: Lease = { primary, secondaries: took.filter((id) => id !== primary), version, expiresAtMs: nowMs + leaseMs };
  st.leases.set(handle, lease);
  st.grantLog.granted(handle, version, primary, lease.secondaries, leaseMs);
  return { kind: 'granted', lease };
}

/** Extends a lease its holder asks about (lease confirm, heartbeat); undefined when it is not the holder's any more. */
export function extendHeld(st: ChunkState, ns: Namespace, server: string, handle: string, nowMs: number, leaseMs: number): Lease | undefined {
  const meta = ns.chunks.get(handle);
  if (!meta) return undefined;
  const ext = extendLease(st.leases.get(handle), server, nowMs, leaseMs, meta.version);
  if (!ext) return undefined;
  st.leases.set(handle, ext);
  st.grantLog.extended(handle, ext.version, ext.expiresAtMs - nowMs);
  return ext;
}
