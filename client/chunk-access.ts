import { GfsError } from '../shared/errors.js';
import { rpcJson } from '../shared/rpc.js';
import { initialChunkVersion } from '../shared/wire.js';
import type { AllocateAnswer, ChunkInfoAnswer, ChunkLocation, ChunksAnswer, LeaseAnswer } from '../shared/wire.js';
import { LocationCache, covers, type CachedFile } from './location-cache.js';
import type { MasterCalls } from './master-calls.js';
import { closestFirst } from './replica-read.js';

// Where a file's chunks are and who may mutate them: chunk locations and
// sizes cached with expiry (client/location-cache.ts), leases cached for a
// fraction of their remaining time, both dropped on error. Reads go back to
// the master only on an error, a version refusal, or at the end of what is
// known, and then ask a replica of the last chunk for its length first (the
// master's figure comes from heartbeats and may lag).

function leaseKey(handle: string, path: string, index: number): string {
  return `${handle} ${index} ${path}`;
}

/** A lease is trusted at most this long by the client; the primary checks it for real. */
const leaseTrustMaxMs = 30_000;

export class ChunkAccess {
  private readonly files: LocationCache;
  private readonly leases = new Map<string, { lease: LeaseAnswer; validUntilMs: number }>();

  constructor(
    private readonly masters: MasterCalls,
    private readonly rack: string | undefined,
    o: { locationTtlMs: number; locationCacheFiles: number },
  ) {
    this.files = new LocationCache(o.locationTtlMs, o.locationCacheFiles);
  }

  invalidate(path?: string): void {
    if (path === undefined) this.files.clear();
    else this.files.delete(path);
  }

  /** The cached entry of a file, if any (no master call). */
  cached(path: string): CachedFile | undefined {
    return this.files.get(path);
  }

  /** Our own mutation reached `endInChunk` of chunk `index`: the cached size and chunk count grow to match. */
  grew(path: string, index: number, endInChunk: number): void {
    this.files.grew(path, index, endInChunk);
  }

  /** Locations for chunks [startIndex, startIndex+count) plus the file's size, from cache or the master. */
  async locate(path: string, startIndex: number, count: number, fresh = false): Promise<CachedFile> {
    const now = Date.now();
    let f = fresh ? undefined : this.files.get(path, now);
    if (f && covers(f, startIndex, count)) return f;
    const a = await this.masters.call<ChunksAnswer>('/api/chunks', { path, startIndex, count: Math.max(1, Math.min(count, 10_000)) });
    // A fresh answer replaces the entry; one filling gaps in a live entry keeps the larger size a replica or our own write taught us.
    f = f ?? { chunkSizeBytes: a.chunkSizeBytes, chunkCount: a.chunkCount, sizeBytes: a.sizeBytes, chunks: new Map(), fetchedAtMs: now };
    f.chunkCount = a.chunkCount;
    f.sizeBytes = Math.max(f.sizeBytes, a.sizeBytes);
    if (a.replication !== undefined) f.replication = a.replication;
    for (const c of a.chunks) f.chunks.set(c.index, c);
    this.files.set(path, f);
    return f;
  }

  /**
   * The file's entry, its size known at least as far as `wantEnd` if the file reaches that far.
   * Within what the cache knows, nothing is asked. Past it, the master is asked how many chunks the
   * file has (a writer may have gone on into chunks this cache has not heard of, and a chunk that is
   * not full says nothing about that: files may have holes), then a replica of the last chunk for its
   * length, since the master's figure comes from heartbeats and may lag.
   */
  async extent(path: string, wantEnd: number): Promise<CachedFile> {
    const known = await this.locate(path, 0, 1);
    if (wantEnd <= known.sizeBytes) return known;
    // One call: the chunk count, the size the master has, and the chunks from our last one on.
    const fresh = await this.locate(path, Math.max(0, known.chunkCount - 1), 16, true);
    // Locations of the earlier chunks stay good (a read at a stale version is refused and refetched).
    for (const [i, c] of known.chunks) if (!fresh.chunks.has(i)) fresh.chunks.set(i, c);
    // The end of the file is only where a replica of the last chunk says it is: without an answer the
    // length is unknown (a partition, replicas re-registering), never taken to be the master's figure.
    if (wantEnd > fresh.sizeBytes && fresh.chunkCount > 0 && !(await this.learnTail(path, fresh))) {
      throw new GfsError('UNAVAILABLE', `cannot learn the length of ${path}: no replica of its last chunk answered`, { retryAfterMs: 200 });
    }
    return fresh;
  }

  /** Asks replicas of the file's last chunk (closest first) for its length; false when none answered at the cached version or later. */
  private async learnTail(path: string, f: CachedFile): Promise<boolean> {
    const index = f.chunkCount - 1;
    const g = await this.locate(path, index, 1);
    const loc = g.chunks.get(index);
    if (!loc) return false;
    // Never mutated, so empty: no replica needs to answer (its creation may have failed everywhere).
    if (loc.version === initialChunkVersion) return true;
    for (const r of closestFirst(loc.replicas, this.rack)) {
      try {
        const info = await rpcJson<ChunkInfoAnswer>(r.url, '/chunk/info', undefined, { query: { handle: loc.handle }, targetName: r.id, timeoutMs: 2_000 });
        if (info.version < loc.version) continue; // a stale replica's length means nothing
        // g is the cached entry; f may be an older one a caller holds (the cache refilled meanwhile).
        for (const x of [f, g]) x.sizeBytes = Math.max(x.sizeBytes, index * f.chunkSizeBytes + info.sizeBytes);
        return true;
      } catch {
        // the next replica may answer
      }
    }
    return false;
  }

  /**
   * The chunk to write at `index`, allocated if new. With `exclude` (servers whose disks turned out
   * full), a fresh placement without them (the master drops them from the chunk). An answer for a
   * chunk never written that falls short of the file's goal (a replica could not be created) is asked
   * for once more: the master places the missing replicas afresh if a server has room now.
   */
  async chunkForWrite(path: string, index: number, exclude?: ReadonlySet<string>): Promise<ChunkLocation> {
    const cached = this.files.get(path)?.chunks.get(index);
    // A chunk never written and placed nowhere (its placement was lost: the master restarted between
    // logging the allocation and creating the replicas) is asked for again: allocate places it afresh.
    const placedNowhere = cached !== undefined && cached.replicas.length === 0 && cached.version === initialChunkVersion;
    if (cached && !exclude?.size && !placedNowhere) return cached;
    const ask = () => this.masters.once<AllocateAnswer>('/api/allocate', { path, index, ...(exclude?.size ? { exclude: [...exclude] } : {}) });
    let a = await ask();
    // Only a chunk never written is placed afresh (a written one is copied by the master's healer).
    if (a.replicas.length < a.goal && a.version === initialChunkVersion) a = await ask();
    const { goal, ...loc } = a;
    const g = this.files.get(path);
    if (g) {
      g.chunks.set(index, loc);
      g.replication = goal;
      if (index >= g.chunkCount) g.chunkCount = index + 1;
    }
    return loc;
  }

  /**
   * The lease for writing chunk `index` of `path`, which the client believes is
   * `handle`. The master answers for the chunk the file really has there: when
   * it was shared with a snapshot, a fresh copy (copy-on-write); write to
   * `lease.handle`. Cached per file and index too, so a lease learned through
   * one file is never used for a stale location of another.
   */
  async leaseFor(handle: string, path: string, index: number): Promise<LeaseAnswer> {
    const c = this.leases.get(leaseKey(handle, path, index));
    if (c && c.validUntilMs > Date.now()) return c.lease;
    const lease = await this.masters.once<LeaseAnswer>('/api/lease', { handle, path, index });
    // The file's chunk moved (copy-on-write, or our location was stale), or its version moved on (a new
    // lease): reads from now on go to the replicas that took this version, never to one left behind at
    // the old one (which would still serve the old bytes at the old version: read-your-writes).
    const f = this.files.get(path);
    const cached = f?.chunks.get(index);
    if (f && (!cached || cached.handle !== lease.handle || cached.version < lease.version)) {
      f.chunks.set(index, { index, handle: lease.handle, version: lease.version, replicas: [lease.primary, ...lease.secondaries] });
    }
    // Trust the cached lease for a fraction of its remaining time; the primary checks it for real.
    this.leases.set(leaseKey(lease.handle, path, index), { lease, validUntilMs: Date.now() + Math.min(lease.leaseRemainingMs / 2, leaseTrustMaxMs) });
    return lease;
  }

  dropLease(handle: string, path: string, index: number): void {
    this.leases.delete(leaseKey(handle, path, index));
  }

  /** After an append found chunk `index` full (now padded): the next chunk exists and the cache counts it. */
  async nextChunk(path: string, index: number): Promise<void> {
    await this.chunkForWrite(path, index + 1);
    const g = this.files.get(path);
    if (g && g.chunkCount < index + 2) g.chunkCount = index + 2;
  }
}
