// Replica placement: pure functions over the master's view of chunkservers.
// Spread replicas across racks, prefer servers with below-average disk use,
// and avoid servers that received many new chunks recently (new chunks draw
// the writes that follow).

export interface ServerView {
  id: string;
  rack: string;
  usedBytes: number;
  capacityBytes: number;
  /** Free space placement may use (reported free minus the reserve and chunks not yet reported; core/chunkservers.ts). */
  freeBytes: number;
  /** Chunks created on this server within the recent-creation window. */
  recentCreates: number;
}

export interface PlacementOptions {
  chunkSizeBytes: number;
  /** Above this many recent creations a server is used only when nothing else fits. */
  recentCreatesLimit: number;
  /** Deterministic tie-breaking in tests; Math.random in production. */
  random?: () => number;
}

function utilization(s: ServerView): number {
  return s.capacityBytes > 0 ? (s.capacityBytes - s.freeBytes) / s.capacityBytes : 1;
}

/** Candidates best first. */
export function rankServers(servers: ServerView[], exclude: ReadonlySet<string>, opts: PlacementOptions): ServerView[] {
  const fits = servers.filter((s) => !exclude.has(s.id) && s.freeBytes >= opts.chunkSizeBytes);
  if (fits.length === 0) return [];
  const avg = fits.reduce((a, s) => a + utilization(s), 0) / fits.length;
  const rnd = opts.random ?? Math.random;
  const keyed = fits.map((s) => ({
    s,
    busy: s.recentCreates >= opts.recentCreatesLimit ? 1 : 0,
    full: utilization(s) > avg + 0.05 ? 1 : 0,
    tie: rnd(),
  }));
  keyed.sort((a, b) => a.busy - b.busy || a.full - b.full || a.s.recentCreates - b.s.recentCreates || a.tie - b.tie);
  return keyed.map((k) => k.s);
}

/** Up to `count` servers for a new replica set: one per rack first, then the best of the rest. */
export function chooseReplicas(servers: ServerView[], count: number, exclude: ReadonlySet<string>, opts: PlacementOptions, usedRacks: ReadonlySet<string> = new Set()): string[] {
  const ranked = rankServers(servers, exclude, opts);
  const chosen: ServerView[] = [];
  const racks = new Set(usedRacks);
  for (const s of ranked) {
    if (chosen.length >= count) break;
    if (!racks.has(s.rack)) {
      chosen.push(s);
      racks.add(s.rack);
    }
  }
  for (const s of ranked) {
    if (chosen.length >= count) break;
    if (!chosen.includes(s)) chosen.push(s);
  }
  return chosen.map((s) => s.id);
}
