import type { ChunkLocation } from '../shared/wire.js';

// The client's cache of what the master said about files: chunk size, chunk
// count, size and chunk locations, each file trusted for ttlMs after it was
// fetched (GFS clients cache locations so reads do not touch the master).
// Bounded in files: the least recently used one goes first.

export interface CachedFile {
  chunkSizeBytes: number;
  chunkCount: number;
  /** Bytes known to be in the file: at least what the master said, more once a replica of the last chunk or this client's own writes said so. */
  sizeBytes: number;
  chunks: Map<number, ChunkLocation>;
  fetchedAtMs: number;
  /** The file's replication goal, once the master said it. */
  replication?: number;
}

export class LocationCache {
  private readonly files = new Map<string, CachedFile>();

  constructor(
    readonly ttlMs: number,
    readonly maxFiles: number,
  ) {
    if (!(maxFiles >= 1)) throw new RangeError(`a location cache holds at least one file, not ${maxFiles}`);
  }

  /** The file's entry while it is fresh (and then most recently used), else undefined. */
  get(path: string, nowMs = Date.now()): CachedFile | undefined {
    const f = this.files.get(path);
    if (!f) return undefined;
    this.files.delete(path);
    if (nowMs - f.fetchedAtMs >= this.ttlMs) return undefined;
    this.files.set(path, f);
    return f;
  }

  set(path: string, f: CachedFile): void {
    this.files.delete(path);
    this.files.set(path, f);
    while (this.files.size > this.maxFiles) this.files.delete(this.files.keys().next().value!);
  }

  delete(path: string): void {
    this.files.delete(path);
  }

  clear(): void {
    this.files.clear();
  }

  get size(): number {
    return this.files.size;
  }

  /** Notes that this client put bytes up to `endInChunk` of chunk `chunkIndex` (a write or append it saw acknowledged). */
  grew(path: string, chunkIndex: number, endInChunk: number): void {
    const f = this.files.get(path);
    if (!f) return;
    if (chunkIndex >= f.chunkCount) f.chunkCount = chunkIndex + 1;
    f.sizeBytes = Math.max(f.sizeBytes, chunkIndex * f.chunkSizeBytes + endInChunk);
  }
}

/** True when every chunk in [startIndex, startIndex+count) that the file has is in the entry. */
export function covers(f: CachedFile, startIndex: number, count: number): boolean {
  for (let i = startIndex; i < Math.min(f.chunkCount, startIndex + count); i++) if (!f.chunks.has(i)) return false;
  return true;
}
