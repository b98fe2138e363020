import { chooseReplicas, type PlacementOptions, type ServerView } from './placement.js';

// Re-replication and rebalancing plans: pure functions over the master's
// view. The master's tick (master/master.ts) gathers the view, calls these,
// and carries the orders out through chunkserver RPCs and heartbeat replies.

export interface ChunkNeed {
  handle: string;
  version: number;
  /** The highest replication goal of the files referring to it. */
  goal: number;
  /** Live servers holding the current version. */
  live: string[];
  /** A lease may be held: cloning now could copy a replica mid-mutation. */
  leased: boolean;
  /** Only referred to by files in the trash. */
  deleted: boolean;
  /** Servers that must not be clone targets (they hold a replica about to be deleted). */
  avoid?: string[];
  /** A client was turned away from it recently (its lease waits for the repair): repaired first among equals. */
  blocking?: boolean;
}

export interface CloneOrder {
  handle: string;
  version: number;
  source: string;
  target: string;
}

export interface CloneLimits {
  /** Clones running at once in the whole cluster. */
  maxClusterClones: number;
  /** Clones a server takes part in at once, as source or target. */
  maxPerServerClones: number;
}

export interface InFlightClone {
  handle: string;
  source: string;
  target: string;
}

/**
 * Most endangered first: fewest live replicas, then chunks blocking a client, then most replicas
 * missing (relative to the goal), then live files before deleted ones.
 */
export function clonePriority(a: ChunkNeed, b: ChunkNeed): number {
  const missA = a.goal - a.live.length;
  const missB = b.goal - b.live.length;
  return a.live.length - b.live.length || Number(b.blocking ?? false) - Number(a.blocking ?? false) || missB - missA || Number(a.deleted) - Number(b.deleted) || (a.handle < b.handle ? -1 : 1);
}

export function planClones(needs: ChunkNeed[], servers: ServerView[], inFlight: InFlightClone[], limits: CloneLimits, placement: PlacementOptions): CloneOrder[] {
  const busy = new Map<string, number>();
  const bump = (id: string) => busy.set(id, (busy.get(id) ?? 0) + 1);
  for (const c of inFlight) {
    bump(c.source);
    bump(c.target);
  }
  const rackOf = new Map(servers.map((s) => [s.id, s.rack]));
  let running = inFlight.length;
  const orders: CloneOrder[] = [];
  const candidates = needs.filter((n) => n.live.length > 0 && n.live.length < n.goal && !n.leased).sort(clonePriority);
  for (const n of candidates) {
    if (running >= limits.maxClusterClones) break;
    const pending = inFlight.filter((c) => c.handle === n.handle);
    const wanted = n.goal - n.live.length - pending.length;
    if (wanted <= 0) continue;
    const exclude = new Set([...n.live, ...(n.avoid ?? []), ...pending.map((c) => c.target), ...[...busy.entries()].filter(([, k]) => k >= limits.maxPerServerClones).map(([id]) => id)]);
    const usedRacks = new Set(n.live.map((id) => rackOf.get(id)).filter((r): r is string => r !== undefined));
    // Least busy first; ties broken at random so a source that keeps failing (dying, not yet declared dead) is not always the one picked.
    const rnd = placement.random ?? Math.random;
    const sources = n.live
      .filter((id) => (busy.get(id) ?? 0) < limits.maxPerServerClones)
      .map((id) => ({ id, tie: rnd() }))
      .sort((a, b) => (busy.get(a.id) ?? 0) - (busy.get(b.id) ?? 0) || a.tie - b.tie)
      .map((x) => x.id);
    if (sources.length === 0) continue;
    const targets = chooseReplicas(servers, Math.min(wanted, limits.maxClusterClones - running), exclude, placement, usedRacks);
    for (const target of targets) {
      const source = sources.find((id) => (busy.get(id) ?? 0) < limits.maxPerServerClones);
      if (!source) break;
      orders.push({ handle: n.handle, version: n.version, source, target });
      bump(source);
      bump(target);
      running++;
    }
  }
  return orders;
}

/** Replicas beyond the goal to delete: from the fullest servers, never the lease holder. */
/**
 * Which replicas of over-replicated chunks to delete. `movedFrom` names the source of a finished
 * rebalancing move: that replica goes first, whatever the servers' free space says (on a busy disk
 * shared by several servers, heartbeats of different ages made the new copy look fuller and the move
 * was undone; test/integration/rebalance.test.ts).
 */
export function planExcess(needs: ChunkNeed[], servers: ServerView[], primaryOf: (handle: string) => string | undefined, movedFrom: (handle: string) => string | undefined = () => undefined): { handle: string; server: string }[] {
  const util = new Map(servers.map((s) => [s.id, s.capacityBytes > 0 ? 1 - s.freeBytes / s.capacityBytes : 1]));
  const replicaCount = countReplicas(needs);
  const out: { handle: string; server: string }[] = [];
  for (const n of needs) {
    if (n.live.length <= n.goal || n.leased) continue;
    const primary = primaryOf(n.handle);
    // Fullest disk first; on disks within 2% of each other (or servers sharing one disk, whose free
    // space wobbles between heartbeats), the server holding most replicas, so a replica just moved
    // by rebalancing is not the one trimmed again.
    const fuller = (a: string, b: string) => {
      const d = (util.get(b) ?? 0) - (util.get(a) ?? 0);
      return Math.abs(d) >= 0.02 ? d : 0;
    };
    const source = movedFrom(n.handle);
    const first = (id: string) => (id === source ? 0 : 1);
    const victims = n.live.filter((id) => id !== primary).sort((a, b) => first(a) - first(b) || fuller(a, b) || (replicaCount.get(b) ?? 0) - (replicaCount.get(a) ?? 0));
    for (const v of victims.slice(0, n.live.length - n.goal)) out.push({ handle: n.handle, server: v });
  }
  return out;
}

function countReplicas(needs: ChunkNeed[]): Map<string, number> {
  const count = new Map<string, number>();
  for (const n of needs) for (const id of n.live) count.set(id, (count.get(id) ?? 0) + 1);
  return count;
}

/**
 * Rebalancing, one replica at a time: when the server holding the most
 * replicas has clearly more than the one holding the fewest (a new server
 * joined, or repairs piled replicas up), copy one fully replicated, idle
 * chunk from the first to the second. The copy makes the chunk
 * over-replicated and planExcess then drops the replica on the fuller
 * server, so the count never falls below the goal. Only when nothing needs
 * repair and no clone is running.
 */
export function planRebalance(needs: ChunkNeed[], servers: ServerView[], inFlight: InFlightClone[], minImbalance: number): CloneOrder | undefined {
  if (inFlight.length > 0 || servers.length < 2) return undefined;
  if (needs.some((n) => n.live.length > 0 && n.live.length < n.goal)) return undefined;
  const count = countReplicas(needs);
  const ranked = servers.map((s) => ({ s, n: count.get(s.id) ?? 0 })).sort((a, b) => b.n - a.n || (a.s.id < b.s.id ? -1 : 1));
  const most = ranked[0]!;
  const fewest = ranked[ranked.length - 1]!;
  const avg = ranked.reduce((a, x) => a + x.n, 0) / ranked.length;
  if (most.n - fewest.n <= Math.max(minImbalance, 0.1 * avg)) return undefined;
  const n = needs.find((x) => !x.leased && x.live.length === x.goal && x.live.includes(most.s.id) && !x.live.includes(fewest.s.id) && !(x.avoid ?? []).includes(fewest.s.id));
  if (!n) return undefined;
  return { handle: n.handle, version: n.version, source: most.s.id, target: fewest.s.id };
}
