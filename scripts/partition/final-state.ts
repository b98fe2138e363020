import { GfsError } from '../../shared/errors.js';
import { rpcJson, rpcStream } from '../../shared/rpc.js';
import type { ChunksAnswer, FileInfo } from '../../shared/wire.js';
import type { FileState } from './checker.js';
import type { PartitionCluster } from './cluster.js';
import type { HistoryEntry } from './history.js';

// The final state the checker compares the history with (scripts/partition/checker.ts FinalState):
// every path the history names, as the master lists it after the run, and a reader of each listed
// replica's copy of a chunk.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function retrying<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof GfsError && e.code === 'NOT_FOUND') throw e;
      last = e;
      await sleep(300 * (i + 1));
    }
  }
  throw last;
}

export async function finalState(cluster: PartitionCluster, history: HistoryEntry[], chunkSizeBytes: number): Promise<{ files: Record<string, FileState>; readChunk: (replica: string, handle: string, version: number) => Promise<Buffer | { error: string }> }> {
  const masterUrl = cluster.leaderUrl;
  const urls = new Map<string, string>();
  const files: Record<string, FileState> = {};
  for (const path of new Set(history.map((e) => e.path))) {
    let info: FileInfo;
    try {
      info = await retrying(() => rpcJson<FileInfo>(masterUrl, '/api/stat', undefined, { query: { path }, timeoutMs: 5_000 }));
    } catch (e) {
      if (e instanceof GfsError && e.code === 'NOT_FOUND') {
        files[path] = { exists: false, chunkSizeBytes, chunks: [] };
        continue;
      }
      throw e;
    }
    if (info.type !== 'file' || info.chunkCount === 0) {
      files[path] = { exists: true, chunkSizeBytes: info.chunkSizeBytes || chunkSizeBytes, chunks: [] };
      continue;
    }
    const a = await retrying(() => rpcJson<ChunksAnswer>(masterUrl, '/api/chunks', { path, startIndex: 0, count: info.chunkCount }, { timeoutMs: 10_000 }));
    for (const c of a.chunks) for (const r of c.replicas) urls.set(r.id, r.url);
    files[path] = { exists: true, chunkSizeBytes: a.chunkSizeBytes, chunks: a.chunks.map((c) => ({ index: c.index, handle: c.handle, version: c.version, replicas: c.replicas.map((r) => r.id) })) };
  }
  const where = new Map<string, { path: string; index: number }>();
  for (const [path, f] of Object.entries(files)) for (const c of f.chunks) where.set(c.handle, { path, index: c.index });
  /** Whether the master, asked again after a few heartbeats, still lists `replica` for `handle`. */
  const stillListed = async (replica: string, handle: string): Promise<boolean> => {
    const w = where.get(handle);
    if (!w) return true;
    // A few heartbeats for the master to hear of a deletion it ordered.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const a = await rpcJson<ChunksAnswer>(masterUrl, '/api/chunks', { path: w.path, startIndex: w.index, count: 1 }, { timeoutMs: 10_000 });
        if (!a.chunks.some((c) => c.handle === handle && c.replicas.some((r) => r.id === replica))) return false;
      } catch {
        // asked again below
      }
      await sleep(500);
    }
    return true;
  };
  return {
    files,
    readChunk: async (replica, handle, version) => {
      const url = urls.get(replica);
      if (!url) return { error: `no URL for ${replica}` };
      try {
        const res = await rpcStream(url, '/chunk/read', undefined, { query: { handle, offset: 0, length: chunkSizeBytes, version }, timeoutMs: 10_000 });
        return Buffer.from(await res.body.arrayBuffer());
      } catch (e) {
        return { error: (e as Error).message, unlisted: !(await stillListed(replica, handle)) };
      }
    },
  };
}
