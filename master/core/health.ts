import { GfsError } from '../../shared/errors.js';
import { isUnder, normalizePath, trashDir } from '../../shared/paths.js';
import type { ChunkState } from './chunk-state.js';
import type { Namespace } from './namespace.js';

// One classification of chunk health, used by `gfs fsck`, the status page's
// attention lists, /api/status and /metrics: a chunk is missing (no live
// replica at the current version), under-replicated, over-replicated or
// healthy against the highest goal of the files holding it.

export type ChunkHealth = 'missing' | 'under-replicated' | 'over-replicated' | 'healthy';

export function classifyChunk(liveCount: number, goal: number): ChunkHealth {
  if (liveCount === 0) return 'missing';
  if (liveCount < goal) return 'under-replicated';
  if (liveCount > goal) return 'over-replicated';
  return 'healthy';
}

export interface ChunkGoal {
  goal: number;
  /** The first file with that goal. */
  path: string;
  /** Every file holding it is in the trash. */
  deleted: boolean;
}

/** Per chunk of any file: the highest replication goal among the files holding it (snapshots share chunks). */
export function chunkGoals(ns: Namespace): Map<string, ChunkGoal> {
  const goals = new Map<string, ChunkGoal>();
  for (const [p, n] of ns.nodes) {
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

export interface FsckChunk {
  index: number;
  handle: string;
  version: number;
  live: string[];
  corrupt: string[];
  state: ChunkHealth;
}

export interface FsckReport {
  files: { path: string; replication: number; chunks: FsckChunk[] }[];
  summary: Record<string, number>;
}

/** Per-file health under `rawPath`, like `hdfs fsck` (files in the trash only when asked for by name). */
export function fsck(st: ChunkState, ns: Namespace, rawPath: string, nowMs: number): FsckReport {
  const root = normalizePath(rawPath);
  if (!ns.get(root)) throw new GfsError('NOT_FOUND', `no such file or directory: ${root}`);
  const summary = { files: 0, dirs: 0, chunks: 0, healthy: 0, underReplicated: 0, overReplicated: 0, missing: 0, corrupt: 0 };
  const key = { missing: 'missing', 'under-replicated': 'underReplicated', 'over-replicated': 'overReplicated', healthy: 'healthy' } as const;
  const files = [];
  for (const p of ns.subtree(root)) {
    const n = ns.get(p)!;
    if (n.type !== 'file') {
      if (n.type === 'dir') summary.dirs++;
      continue;
    }
    if (isUnder(p, trashDir) && !isUnder(root, trashDir)) continue;
    summary.files++;
    const chunks = n.chunks.map((h, index) => {
      const live = st.servers.liveLocations(h, nowMs);
      const corrupt = [...(st.corrupt.get(h) ?? [])];
      const state = classifyChunk(live.length, n.replication);
      summary.chunks++;
      summary[key[state]]++;
      if (corrupt.length) summary.corrupt++;
      return { index, handle: h, version: ns.chunks.get(h)?.version ?? 0, live, corrupt, state };
    });
    files.push({ path: p, replication: n.replication, chunks });
  }
  return { files, summary };
}

export interface Attention {
  underReplicated: { handle: string; path: string; live: string[]; goal: number }[];
  missing: { handle: string; path: string; goal: number }[];
  corrupt: { handle: string; servers: string[] }[];
  cloning: { handle: string; source: string; target: string }[];
  counts: { healthy: number; underReplicated: number; overReplicated: number; missing: number; corrupt: number; cloning: number; queue: number };
}

/**
 * Chunks needing attention, for the status page and /metrics: below their goal (with the file that
 * needs most copies), without any live replica, reported corrupt, being cloned; and the
 * re-replication queue (below goal, some live replica to copy from, no clone under way yet).
 * Lists are cut at `limit` entries; the counts are whole.
 */
export function attention(st: ChunkState, ns: Namespace, limit: number, nowMs: number): Attention {
  const cloningHandles = new Set(st.clones.map((c) => c.handle));
  const counts = { healthy: 0, underReplicated: 0, overReplicated: 0, missing: 0, corrupt: st.corrupt.size, cloning: st.clones.length, queue: 0 };
  const underReplicated: Attention['underReplicated'] = [];
  const missing: Attention['missing'] = [];
  for (const [handle, g] of chunkGoals(ns)) {
    const live = st.servers.liveLocations(handle, nowMs);
    switch (classifyChunk(live.length, g.goal)) {
      case 'missing':
        counts.missing++;
        if (missing.length < limit) missing.push({ handle, path: g.path, goal: g.goal });
        break;
      case 'under-replicated':
        counts.underReplicated++;
        if (!cloningHandles.has(handle)) counts.queue++;
        if (underReplicated.length < limit) underReplicated.push({ handle, path: g.path, live: live.sort(), goal: g.goal });
        break;
      case 'over-replicated':
        counts.overReplicated++;
        break;
      case 'healthy':
        counts.healthy++;
    }
  }
  return {
    underReplicated,
    missing,
    corrupt: [...st.corrupt].slice(0, limit).map(([handle, set]) => ({ handle, servers: [...set].sort() })),
    cloning: st.clones.slice(0, limit).map((c) => ({ handle: c.handle, source: c.source, target: c.target })),
    counts,
  };
}
