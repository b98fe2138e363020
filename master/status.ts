import { GfsError } from '../shared/errors.js';
import { joinPath, normalizePath, trashDir, isUnder } from '../shared/paths.js';
import type { Master } from './master.js';
import type { EntryType, ListEntry } from '../shared/wire.js';

// What the status page shows (master/status-page.ts renders it; GET
// /status/data serves it as JSON): a cluster summary, the chunkservers,
// chunks needing attention, current leases, the operation log, and one
// directory or file of the namespace with its chunks and replica locations.
// Every list is bounded, so the page stays fast on a big cluster.

/**
 * How much one answer shows at most: rows per attention list and of leases; entries of one
 * directory; chunks per file in a directory listing and on the file's own page.
 */
const shown = { listRows: 100, dirEntries: 500, dirChunks: 8, fileChunks: 2_000 } as const;

export interface ChunkRow {
  index: number;
  handle: string;
  version: number;
  /** Live replicas at the current version (ids), then ones on dead servers. */
  live: string[];
  dead: string[];
  corrupt: string[];
}

/** A namespace entry as `gfs ls` lists it, with its chunks' replicas for the browser. */
export interface EntryRow extends ListEntry {
  chunks?: ChunkRow[];
}

export interface StatusModel {
  generatedAtMs: number;
  master: { url: string; role: string; epoch: number; fencedByEpoch: number | undefined; safeMode: boolean; appliedIndex: number; uptimeMs: number; chunkSizeBytes: number; leaseMs: number };
  summary: {
    files: number;
    chunks: number;
    healthy: number;
    underReplicated: number;
    overReplicated: number;
    missing: number;
    corrupt: number;
    cloning: number;
    rereplicationQueue: number;
    leases: number;
    capacityBytes: number;
    usedBytes: number;
    freeBytes: number;
    chunkserversAlive: number;
    chunkserversDead: number;
  };
  chunkservers: { id: string; url: string; rack: string; alive: boolean; lastHeartbeatAgoMs: number; chunks: number; usedBytes: number; capacityBytes: number; freeBytes: number; load: number }[];
  attention: ReturnType<Master['attention']>;
  leases: ReturnType<Master['activeLeases']>;
  oplog: Master['oplog']['stats'] & { logReplicas?: { url: string; synced: boolean; lastIndex: number; lastError?: string }[] };
  namespace: { path: string; parent: string | undefined; type: EntryType | 'missing'; entries: EntryRow[]; truncated: boolean; error?: string };
}

function chunkRows(master: Master, handles: string[], limit: number): ChunkRow[] {
  return handles.slice(0, limit).map((handle, index) => ({ index, handle, ...master.chunkReplicas(handle) }));
}

function parentOf(path: string): string | undefined {
  if (path === '/') return undefined;
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

function namespaceView(master: Master, rawPath: string): StatusModel['namespace'] {
  let path: string;
  try {
    path = normalizePath(rawPath);
  } catch (e) {
    return { path: rawPath, parent: '/', type: 'missing', entries: [], truncated: false, error: e instanceof GfsError ? e.message : 'bad path' };
  }
  const node = master.ns.get(path);
  if (!node) return { path, parent: parentOf(path), type: 'missing', entries: [], truncated: false, error: `no such file or directory: ${path}` };
  const row = (p: string, chunkLimit: number): EntryRow => {
    const n = master.ns.get(p)!;
    const listed = master.files.list(p, false)[0];
    return {
      name: p === '/' ? '/' : p.slice(p.lastIndexOf('/') + 1),
      path: p,
      type: n.type,
      sizeBytes: n.type === 'file' ? (listed?.sizeBytes ?? 0) : 0,
      replication: n.type === 'file' ? n.replication : 0,
      chunkCount: n.type === 'file' ? n.chunks.length : 0,
      mtimeMs: n.mtimeMs,
      chunks: n.type === 'file' ? chunkRows(master, n.chunks, chunkLimit) : undefined,
    };
  };
  if (node.type === 'file') return { path, parent: parentOf(path), type: 'file', entries: [row(path, shown.fileChunks)], truncated: node.chunks.length > shown.fileChunks };
  // A link or special file: itself, one row (it has no chunks and no entries).
  if (node.type !== 'dir') return { path, parent: parentOf(path), type: node.type, entries: [row(path, 0)], truncated: false };
  // The trash is shown only when asked for by name, as `gfs ls` does.
  const names = master.ns.childNames(path).sort();
  const paths = names.map((c) => joinPath(path, c)).filter((p) => isUnder(path, trashDir) || !isUnder(p, trashDir));
  return {
    path,
    parent: parentOf(path),
    type: 'dir',
    entries: paths.slice(0, shown.dirEntries).map((p) => row(p, shown.dirChunks)),
    truncated: paths.length > shown.dirEntries,
  };
}

export function statusModel(master: Master, url: string, path = '/'): StatusModel {
  const nowMs = master.now();
  const attention = master.attention(shown.listRows);
  const servers = [...master.servers.servers.values()]
    .map((s) => ({
      id: s.id,
      url: s.url,
      rack: s.rack,
      alive: master.servers.isAlive(s, nowMs),
      lastHeartbeatAgoMs: Math.max(0, Math.round(nowMs - s.lastSeenMs)),
      chunks: s.held.size,
      usedBytes: s.usedBytes,
      capacityBytes: s.capacityBytes,
      freeBytes: s.freeBytes,
      load: s.load,
    }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const live = servers.filter((s) => s.alive);
  const leases = master.activeLeases(Number.MAX_SAFE_INTEGER);
  const logReplicas = master.shipper?.status().replicas.map((r) => ({ url: r.url, synced: r.synced, lastIndex: r.lastIndex, lastError: r.lastError }));
  return {
    generatedAtMs: Date.now(),
    master: {
      url,
      role: master.role,
      epoch: master.ns.epoch,
      fencedByEpoch: master.fencedByEpoch,
      safeMode: master.inSafeMode(),
      appliedIndex: master.ns.appliedIndex,
      uptimeMs: Math.round(nowMs - master.startedAtMs),
      chunkSizeBytes: master.opts.chunkSizeBytes,
      leaseMs: master.opts.leaseMs,
    },
    summary: {
      files: master.ns.fileCount,
      chunks: master.ns.chunks.size,
      healthy: attention.counts.healthy,
      underReplicated: attention.counts.underReplicated,
      overReplicated: attention.counts.overReplicated,
      missing: attention.counts.missing,
      corrupt: attention.counts.corrupt,
      cloning: attention.counts.cloning,
      rereplicationQueue: attention.counts.queue,
      leases: leases.length,
      capacityBytes: live.reduce((a, s) => a + s.capacityBytes, 0),
      usedBytes: live.reduce((a, s) => a + s.usedBytes, 0),
      freeBytes: live.reduce((a, s) => a + s.freeBytes, 0),
      chunkserversAlive: live.length,
      chunkserversDead: servers.length - live.length,
    },
    chunkservers: servers,
    attention,
    leases: leases.slice(0, shown.listRows),
    oplog: { ...master.oplog.stats, ...(logReplicas ? { logReplicas } : {}) },
    namespace: namespaceView(master, path),
  };
}
