import type { ChunkState } from './chunk-state.js';
import { chunkGoals } from './health.js';
import { initialChunkVersion, type Namespace } from './namespace.js';
import { planClones, planExcess, planRebalance, type ChunkNeed, type CloneLimits, type CloneOrder } from './replication.js';

// One healing tick's decisions: which chunks need copies (most endangered
// first, replication.ts), which leases to ask back so a leased chunk can be
// repaired, one rebalancing move when nothing needs repair, and which excess
// replicas to delete. Pure over the ChunkState; the runtime
// (master/healer.ts) starts the clones and revocations it returns.

/** Revocations asked per tick at most: each costs the primary a lease and the chunk a version. */
const maxRevokesPerTick = 8;
/** Placements of never-written chunks per tick at most. */
const maxPlacementsPerTick = 8;

export interface HealingOptions {
  chunkSizeBytes: number;
  limits: CloneLimits;
  rebalanceMinImbalance: number;
  /** Recent creations above which a server is a clone target only when nothing else fits. */
  recentCreatesLimit: number;
}

export interface HealingPlan {
  clones: CloneOrder[];
  /** Chunks whose primary is asked to give its lease back, so the chunk can be cloned next tick. */
  revokes: string[];
  rebalance: CloneOrder | undefined;
  /** Excess replicas ordered deleted (already in ChunkState.pendingDeletes). */
  excess: { server: string; handle: string }[];
  /**
   * Chunks never written (still at the initial version: no lease ever, so no data anywhere) that
   * no live server holds, to be created afresh, empty, up to `goal`. Their placement was lost: the
   * master died between logging the allocation and creating the replicas, or every chosen server
   * failed. Nothing can be cloned from nowhere, and an empty chunk is exactly what they hold.
   */
  placements: { handle: string; goal: number }[];
}

/** What each chunk of a file needs, as replication.ts plans it. */
export function chunkNeeds(st: ChunkState, ns: Namespace, nowMs: number): ChunkNeed[] {
  // Servers holding a replica that is about to go (corrupt, or ordered deleted) are no clone
  // targets for that chunk: the clone would find the old replica there and keep it.
  const doomed = new Map<string, string[]>();
  for (const [id, set] of st.pendingDeletes) for (const h of set) doomed.set(h, [...(doomed.get(h) ?? []), id]);
  for (const [h, set] of st.corrupt) doomed.set(h, [...(doomed.get(h) ?? []), ...set]);
  const needs: ChunkNeed[] = [];
  for (const [h, g] of chunkGoals(ns)) {
    const meta = ns.chunks.get(h);
    if (!meta) continue;
    const lease = st.leases.get(h);
    needs.push({
      handle: h,
      version: meta.version,
      goal: g.goal,
      live: st.servers.liveLocations(h, nowMs),
      // A chunk still being placed looks under-replicated: leave it alone like a leased one.
      // A live lease holder is asked to give its lease back (revokes) before a clone. One that
      // looks dead is not waited for: it may only be cut off from the master and still act, but
      // the clone first moves every live replica, the source among them, to a new version
      // (version-bump.ts), and a replica refuses, under its own lock, any mutation ordered at the
      // old one, so nothing it still does can be acknowledged.
      leased: (lease !== undefined && lease.expiresAtMs > nowMs && st.servers.isAlive(st.servers.servers.get(lease.primary), nowMs)) || st.granting.has(h) || st.placing.has(h),
      deleted: g.deleted,
      avoid: doomed.get(h),
      blocking: nowMs - (st.blockedAtMs.get(h) ?? -Infinity) < 10_000,
    });
  }
  return needs;
}

export function planHealing(st: ChunkState, ns: Namespace, nowMs: number, o: HealingOptions): HealingPlan {
  const needs = chunkNeeds(st, ns, nowMs);
  const views = st.servers.views(nowMs);
  const clones = planClones(needs, views, st.clones, o.limits, { chunkSizeBytes: o.chunkSizeBytes, recentCreatesLimit: o.recentCreatesLimit });
  // An under-replicated chunk under lease cannot be cloned (a mutation could be copied half done):
  // ask its primary to give the lease back. Only when some server could take the clone: otherwise
  // revoking just churns leases and versions.
  const revokes: string[] = [];
  for (const n of needs) {
    if (revokes.length >= maxRevokesPerTick) break;
    if (!(n.live.length > 0 && n.live.length < n.goal && n.leased) || st.granting.has(n.handle) || st.revoking.has(n.handle)) continue;
    if (views.some((v) => !n.live.includes(v.id) && !n.avoid?.includes(v.id) && v.freeBytes >= o.chunkSizeBytes)) revokes.push(n.handle);
  }
  // Gradual rebalancing: one clone at a time, only when nothing needs repair.
  const rebalance = clones.length === 0 ? planRebalance(needs, views, st.clones, o.rebalanceMinImbalance) : undefined;
  // A move is a copy, then the source's replica trimmed as excess.
  if (rebalance) st.setMovedFrom(rebalance.handle, rebalance.source);
  const excess: HealingPlan['excess'] = [];
  for (const x of planExcess(needs, views, (h) => st.leases.get(h)?.primary, (h) => st.movedFrom.get(h))) {
    if (st.isCloning(x.handle)) continue;
    st.orderDelete(x.server, x.handle);
    st.movedFrom.delete(x.handle);
    excess.push({ server: x.server, handle: x.handle });
  }
  const placements = needs
    .filter((n) => n.live.length === 0 && n.version === initialChunkVersion && !n.leased && !n.deleted)
    .slice(0, maxPlacementsPerTick)
    .map((n) => ({ handle: n.handle, goal: n.goal }));
  return { clones, revokes, rebalance, excess, placements };
}
