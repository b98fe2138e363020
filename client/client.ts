import { randomBytes } from 'node:crypto';
import { nanoid } from 'nanoid';
import { macBody } from '../shared/auth.js';
import { blockCrcsOf, crc32c, crcOfBlocks, encodeBlockCrcs } from '../shared/checksum.js';
import { defaults } from '../shared/config.js';
import { GfsError } from '../shared/errors.js';
import { rpcBinary, rpcJson, rpcStream, setRpcSelf } from '../shared/rpc.js';
import { encodeRecordBatch, recordBatchMaxBytes, recordBatchMaxRecords, type AppendBatchAnswer } from '../shared/record-wire.js';
import { blockCrcsHeader, initialChunkVersion, inlineMaxBytes, maxBatchOps, maxPushBlockCrcs, pushCrcBlockBytes } from '../shared/wire.js';
import type { AllocateAnswer, AppendAnswer, BatchAnswer, BatchOp, BatchResult, ChunkInfoAnswer, ChunkLocation, ChunksAnswer, FileInfo, LeaseAnswer, ListEntry, PushAnswer, ReplicaRef, WriteAnswer } from '../shared/wire.js';
import { withRetry, type RetryOptions } from './retry.js';
import { RecordAppender, type AppenderOptions } from './appender.js';
import { LocationCache, covers, type CachedFile } from './location-cache.js';
import { closestFirst, readFromReplicas } from './replica-read.js';
import { runLimited } from './run-limited.js';
import { fullServer, maxReplacements, reportOf, type ReplicationReport } from './write-report.js';

export type { CachedFile } from './location-cache.js';
export type { ReplicationReport } from './write-report.js';
export { closestFirst } from './replica-read.js';
export { appendRecord, maxRecordPayloadBytes, readRecords, type RecordRead } from './records.js';
export { RecordAppender, type AppenderOptions } from './appender.js';

// The client library. Metadata goes to the master; data goes straight to
// chunkservers. Chunk locations, file sizes and leases are cached with
// expiry and dropped on error; mutations are retried with the same request
// id, so a primary that already applied one answers with its earlier result.
// Reads go back to the master only on an error, a version refusal, or at
// the end of what is known, and then ask a replica of the last chunk for its
// length first (the master's figure comes from heartbeats and may lag).

export interface ClientOptions {
  /** The master, or `URL,URL,...`: the master and its shadows (reads fall back to a shadow; mutations follow a promotion). */
  masterUrl: string;
  clientId?: string;
  /** How long cached chunk locations are trusted. */
  locationTtlMs?: number;
  /** Files whose locations are cached at most (least recently used dropped first). */
  locationCacheFiles?: number;
  /** Largest piece pushed and mutated at once. */
  pieceBytes?: number;
  /** Pieces in flight at once for large reads and writes. */
  concurrency?: number;
  retry?: Partial<RetryOptions>;
}

function leaseKey(handle: string, path: string, index: number): string {
  return `${handle} ${index} ${path}`;
}

/** Master routes that only read: a shadow master may answer them (master/replicas.ts). */
const readOnlyRoutes = new Set(['/api/list', '/api/stat', '/api/chunks', '/api/fsck', '/api/trash', '/api/status', '/api/config']);

export class GfsClient {
  /** The first master URL (the usual master). */
  readonly masterUrl: string;
  readonly masterUrls: string[];
  /** The highest master epoch any answer carried: answers from lower epochs (a failed-over master) are refused. */
  private maxEpoch = 0;
  /** Index in masterUrls of the last master that answered as master. */
  private preferred = 0;
  /** After the master failed to answer a read: where reads go first (a shadow), and until when. */
  private readFallback: { index: number; untilMs: number } | undefined;
  /** When the last read was answered by a shadow: how stale it said it was (ms), else undefined. */
  lastShadowRead: { url: string; stalenessMs: number | undefined } | undefined;
  readonly clientId: string;
  private readonly files: LocationCache;
  private readonly leases = new Map<string, { lease: LeaseAnswer; validUntilMs: number }>();
  readonly pieceBytes: number;
  readonly concurrency: number;
  private readonly retry: Partial<RetryOptions>;
  private requestSeq = 0;
  private readCursor = 0;
  readonly rack: string | undefined = process.env.GFS_RACK;

  constructor(o: ClientOptions) {
    this.masterUrls = o.masterUrl
      .split(',')
      .map((u) => u.trim().replace(/\/+$/, ''))
      .filter(Boolean);
    if (this.masterUrls.length === 0) throw new GfsError('BAD_REQUEST', 'no master URL');
    this.masterUrl = this.masterUrls[0]!;
    this.clientId = o.clientId ?? `c${nanoid(12).replace(/[^A-Za-z0-9_-]/g, '_')}`;
    this.files = new LocationCache(o.locationTtlMs ?? 30_000, o.locationCacheFiles ?? 1024);
    this.pieceBytes = o.pieceBytes ?? defaults.pushPieceBytes;
    this.concurrency = o.concurrency ?? 4;
    this.retry = o.retry ?? {};
    setRpcSelf(this.clientId);
  }

  private master<T>(path: string, body?: unknown, query?: Record<string, string>, readOnly = readOnlyRoutes.has(path)): Promise<T> {
    // One id for every attempt of a mutation: the master's retry cache answers a retry of one already done.
    const rid = readOnly ? undefined : `${this.clientId}:${this.nextRequestId()}`;
    return withRetry(() => this.callMaster<T>(path, body, query, rid), { ...this.retry, attempts: 6 });
  }

  /**
   * One request to the master. With several master URLs: the one that last answered as master
   * first, then the others; a read may be answered by a shadow; a mutation a shadow refuses
   * (READ_ONLY) or an answer from an older epoch moves on to the next URL.
   */
  private async callMaster<T>(path: string, body?: unknown, query?: Record<string, string>, rid?: string): Promise<T> {
    const headers = rid ? { 'x-gfs-request-id': rid } : undefined;
    if (this.masterUrls.length === 1) return rpcJson<T>(this.masterUrl, path, body, { query, headers, targetName: 'master', onHeaders: (h) => this.noteEpoch(h) });
    const readOnly = readOnlyRoutes.has(path);
    // Reads stick to the shadow that answered for a while: retrying an unresponsive master first costs a timeout each.
    const fb = readOnly && this.readFallback && this.readFallback.untilMs > Date.now() ? this.readFallback.index : undefined;
    const start = fb ?? this.preferred;
    let lastErr: unknown;
    for (let k = 0; k < this.masterUrls.length; k++) {
      const i = (start + k) % this.masterUrls.length;
      const url = this.masterUrls[i]!;
      let epoch = 0;
      let role = 'master';
      let staleness: number | undefined;
      try {
        const out = await rpcJson<T>(url, path, body, {
          query,
          headers,
          targetName: 'master',
          onHeaders: (h) => {
            epoch = Number(h['x-gfs-epoch'] ?? 0) || 0;
            role = String(h['x-gfs-role'] ?? 'master');
            const st = Number(h['x-gfs-staleness-ms']);
            staleness = Number.isFinite(st) ? st : undefined;
          },
        });
        if (epoch < this.maxEpoch) throw new GfsError('STALE_EPOCH', `${url} answered for master epoch ${epoch}, older than ${this.maxEpoch}`);
        this.maxEpoch = Math.max(this.maxEpoch, epoch);
        if (role === 'master') {
          this.preferred = i;
          this.lastShadowRead = undefined;
        } else if (readOnly) this.lastShadowRead = { url, stalenessMs: staleness };
        if (readOnly && k > 0) this.readFallback = { index: i, untilMs: Date.now() + 10_000 };
        return out;
      } catch (e) {
        if (epoch > 0 && epoch >= this.maxEpoch && role === 'master') this.maxEpoch = epoch;
        const moveOn = !(e instanceof GfsError) || ['UNAVAILABLE', 'TIMEOUT', 'READ_ONLY', 'STALE_EPOCH'].includes(e.code);
        if (!moveOn) throw e;
        lastErr = e;
      }
    }
    // No master answered (yet: a shadow may be promoted): retryable.
    throw new GfsError('UNAVAILABLE', `no master answered: ${lastErr instanceof Error ? lastErr.message : String(lastErr)}`, { retryAfterMs: 500 });
  }

  private noteEpoch(h: Record<string, string | string[] | undefined>): void {
    const e = Number(h['x-gfs-epoch'] ?? 0) || 0;
    if (e > this.maxEpoch) this.maxEpoch = e;
  }

  private nextRequestId(): string {
    return `${Date.now().toString(36)}-${(this.requestSeq++).toString(36)}`;
  }

  // ---- namespace ----
  async mkdir(path: string, opts: { parents?: boolean } = {}): Promise<void> {
    await this.master('/api/mkdir', { path, parents: opts.parents ?? false });
  }

  async create(path: string, opts: { replication?: number; exclusive?: boolean } = {}): Promise<FileInfo> {
    this.files.delete(path);
    return this.master<FileInfo>('/api/create', { path, ...(opts.replication ? { replication: opts.replication } : {}), exclusive: opts.exclusive ?? true });
  }

  stat(path: string): Promise<FileInfo> {
    return this.master<FileInfo>('/api/stat', undefined, { path });
  }

  async list(path: string, opts: { recursive?: boolean } = {}): Promise<ListEntry[]> {
    const r = await this.master<{ entries: ListEntry[] }>('/api/list', undefined, { path, recursive: opts.recursive ? '1' : '0' });
    return r.entries;
  }

  /** Moves to the trash (undelete possible until the grace period ends); `now` deletes for good at once. */
  async delete(path: string, opts: { recursive?: boolean; now?: boolean } = {}): Promise<void> {
    this.files.delete(path);
    await this.master('/api/delete', { path, recursive: opts.recursive ?? false, now: opts.now ?? false });
  }

  /**
   * Many namespace operations in one call (at most maxBatchOps), each answered on its own: one that
   * fails leaves the others standing. Operations on unrelated paths share the master's fsyncs;
   * related ones (a path under another's) run in the order given. Retried as a whole: the master
   * skips the operations a lost first attempt already logged.
   */
  async batch(ops: BatchOp[]): Promise<BatchResult[]> {
    if (ops.length === 0) return [];
    const out: BatchResult[] = [];
    for (let i = 0; i < ops.length; i += maxBatchOps) {
      const part = ops.slice(i, i + maxBatchOps);
      for (const op of part) for (const p of op.op === 'rename' ? [op.src, op.dst] : [op.path]) this.files.delete(p);
      const readOnly = part.every((op) => op.op === 'stat');
      out.push(...(await this.master<BatchAnswer>('/api/batch', { ops: part }, undefined, readOnly)).results);
    }
    return out;
  }

  async undelete(path: string): Promise<void> {
    await this.master('/api/undelete', { path });
  }

  async trash(): Promise<{ path: string; trashPath: string; deletedAtMs: number; reclaimAtMs: number }[]> {
    return (await this.master<{ entries: { path: string; trashPath: string; deletedAtMs: number; reclaimAtMs: number }[] }>('/api/trash')).entries;
  }

  fsck(path: string): Promise<{ files: { path: string; replication: number; chunks: { index: number; handle: string; version: number; live: string[]; corrupt: string[]; state: string }[] }[]; summary: { files: number; dirs: number; chunks: number; healthy: number; underReplicated: number; overReplicated: number; missing: number; corrupt: number } }> {
    return this.master('/api/fsck', undefined, { path });
  }

  async rename(src: string, dst: string): Promise<void> {
    this.files.delete(src);
    this.files.delete(dst);
    await this.master('/api/rename', { src, dst });
  }

  async snapshot(src: string, dst: string): Promise<void> {
    await this.master('/api/snapshot', { src, dst });
  }

  status(): Promise<Record<string, unknown>> {
    return this.master('/api/status');
  }

  // ---- locations and leases ----
  invalidate(path?: string): void {
    if (path === undefined) this.files.clear();
    else this.files.delete(path);
  }

  /** Locations for chunks [startIndex, startIndex+count) plus the file's size, from cache or the master. */
  async locate(path: string, startIndex: number, count: number, fresh = false): Promise<CachedFile> {
    const now = Date.now();
    let f = fresh ? undefined : this.files.get(path, now);
    if (f && covers(f, startIndex, count)) return f;
    const a = await this.master<ChunksAnswer>('/api/chunks', { path, startIndex, count: Math.max(1, Math.min(count, 10_000)) });
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
  private async chunkForWrite(path: string, index: number, exclude?: ReadonlySet<string>): Promise<ChunkLocation> {
    const cached = this.files.get(path)?.chunks.get(index);
    if (cached && !exclude?.size) return cached;
    const ask = () => this.callMaster<AllocateAnswer>('/api/allocate', { path, index, ...(exclude?.size ? { exclude: [...exclude] } : {}) });
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
   * Where each chunk of the file is now, as the master sees it (and `gfs fsck` reports), against the
   * file's replication goal.
   */
  async replication(path: string): Promise<ReplicationReport> {
    const chunks: { index: number; replicas: string[] }[] = [];
    let goal = 0;
    for (let start = 0; ; start += 10_000) {
      const a = await this.master<ChunksAnswer>('/api/chunks', { path, startIndex: start, count: 10_000 });
      goal = a.replication ?? (await this.stat(path)).replication;
      for (const c of a.chunks) chunks.push({ index: c.index, replicas: c.replicas.map((r) => r.id).sort() });
      if (start + 10_000 >= a.chunkCount) break;
    }
    return reportOf(goal, chunks);
  }

  /**
   * The lease for writing chunk `index` of `path`, which the client believes is
   * `handle`. The master answers for the chunk the file really has there: when
   * it was shared with a snapshot, a fresh copy (copy-on-write); write to
   * `lease.handle`. Cached per file and index too, so a lease learned through
   * one file is never used for a stale location of another.
   */
  private async leaseFor(handle: string, path: string, index: number): Promise<LeaseAnswer> {
    const c = this.leases.get(leaseKey(handle, path, index));
    if (c && c.validUntilMs > Date.now()) return c.lease;
    const lease = await this.callMaster<LeaseAnswer>('/api/lease', { handle, path, index });
    // The file's chunk moved (copy-on-write, or our location was stale), or its version moved on (a new
    // lease): reads from now on go to the replicas that took this version, never to one left behind at
    // the old one (which would still serve the old bytes at the old version: read-your-writes).
    const f = this.files.get(path);
    const cached = f?.chunks.get(index);
    if (f && (!cached || cached.handle !== lease.handle || cached.version < lease.version)) {
      f.chunks.set(index, { index, handle: lease.handle, version: lease.version, replicas: [lease.primary, ...lease.secondaries] });
    }
    // Trust the cached lease for a fraction of its remaining time; the primary checks it for real.
    this.leases.set(leaseKey(lease.handle, path, index), { lease, validUntilMs: Date.now() + Math.min(lease.leaseRemainingMs / 2, 30_000) });
    return lease;
  }

  private dropLease(handle: string, path: string, index: number): void {
    this.leases.delete(leaseKey(handle, path, index));
  }

  /** Inline for small data (one request, no push chain), pushed along the chain otherwise. */
  private async dataFor(replicas: ReplicaRef[], data: Buffer): Promise<{ dataId?: string; inline?: string; crc32c: number }> {
    if (data.length <= inlineMaxBytes) return { inline: data.toString('base64'), crc32c: crc32c(data) };
    const { dataId, crc } = await this.push(replicas, data);
    return { dataId, crc32c: crc };
  }

  /**
   * Pushes data along a pipelined chain of the given replicas, closest first. With it go the crc32c of
   * each checksum block (every hop checks them as the bytes arrive, and the chunk keeps them) and, with
   * authentication on, the body's MAC (shared/auth.ts). Resolves to the crc32c of the whole data.
   */
  async push(replicas: ReplicaRef[], data: Buffer): Promise<{ dataId: string; crc: number }> {
    const chain = closestFirst(replicas, this.rack);
    const dataId = nanoid(21).replace(/[^A-Za-z0-9_-]/g, '_');
    const blockBytes = pushCrcBlockBytes;
    const blocks = blockCrcsOf(data, blockBytes);
    const crc = crcOfBlocks(blocks, blockBytes, data.length);
    const headers: Record<string, string> = { 'x-gfs-chain': JSON.stringify(chain.slice(1).map((r) => r.url)) };
    // The list is 4 bytes a block; past maxPushBlockCrcs (a 64 MiB push) it is left out and each hop computes its own.
    if (blocks.length <= maxPushBlockCrcs) headers[blockCrcsHeader] = encodeBlockCrcs(blocks);
    const res = await rpcStream(chain[0]!.url, `/push/${dataId}`, data, {
      method: 'PUT',
      contentLength: data.length,
      targetName: chain[0]!.id,
      headers,
      bodyMac: macBody(data),
    });
    const a = (await res.body.json()) as PushAnswer;
    if (a.crc32c !== crc || a.sizeBytes !== data.length) throw new GfsError('UNAVAILABLE', 'pushed data arrived damaged');
    return { dataId, crc };
  }

  // ---- data ----
  /**
   * Writes data at a file offset; spans chunks; returns when every replica applied every piece, with
   * the replicas each chunk written was written to: fewer than the goal where chunkservers' disks
   * were full and no other server had room (`underReplicated`).
   */
  async write(path: string, offset: number, data: Buffer): Promise<ReplicationReport> {
    if (data.length === 0) return reportOf(0, []);
    const f = await this.locate(path, 0, 1).catch(() => undefined);
    const info = f?.replication === undefined ? await this.stat(path) : undefined;
    const chunkSizeBytes = f?.chunkSizeBytes ?? info!.chunkSizeBytes;
    const goal = f?.replication ?? info!.replication;
    const pieces: { index: number; offset: number; data: Buffer }[] = [];
    let pos = 0;
    while (pos < data.length) {
      const fileOff = offset + pos;
      const index = Math.floor(fileOff / chunkSizeBytes);
      const inChunk = fileOff % chunkSizeBytes;
      const n = Math.min(data.length - pos, chunkSizeBytes - inChunk, this.pieceBytes);
      pieces.push({ index, offset: inChunk, data: data.subarray(pos, pos + n) });
      pos += n;
    }
    // Per chunk, the replicas of the piece acknowledged last: a chunk placed afresh mid-write ends on the new set.
    const written = new Map<number, string[]>();
    await this.runLimited(pieces, async (p) => written.set(p.index, (await this.writePiece(path, p.index, p.offset, p.data)).replicas));
    return reportOf(goal, [...written].map(([index, replicas]) => ({ index, replicas: [...replicas].sort() })));
  }

  /**
   * Writes one piece within one chunk; answers once every replica applied it, naming them. A replica
   * whose disk is full (NO_SPACE naming its server) sends the chunk to a fresh placement without it
   * (chunkForWrite's exclude), a few times at most; then NO_SPACE is the answer.
   */
  async writePiece(path: string, index: number, offsetInChunk: number, data: Buffer): Promise<WriteAnswer & { replicas: string[] }> {
    const requestId = this.nextRequestId();
    let handle: string | undefined;
    let replicas: string[] = [];
    const full = new Set<string>();
    let replace = false;
    let noSpaceAnswers = 0;
    const a = await withRetry(
      async () => {
        const loc = await this.chunkForWrite(path, index, replace ? full : undefined);
        replace = false;
        handle = loc.handle;
        const lease = await this.leaseFor(loc.handle, path, index);
        handle = lease.handle;
        replicas = [lease.primary.id, ...lease.secondaries.map((r) => r.id)];
        if (data.length <= inlineMaxBytes) {
          // Small: the bytes go raw in the request itself (shared/record-wire.ts), no push chain.
          return rpcBinary<WriteAnswer>(lease.primary.url, '/chunk/write', data, {
            targetName: lease.primary.id,
            timeoutMs: defaults.dataTimeoutMs,
            headers: { 'x-gfs-handle': lease.handle, 'x-gfs-version': String(lease.version), 'x-gfs-offset': String(offsetInChunk), 'x-gfs-client': this.clientId, 'x-gfs-request': requestId, 'x-gfs-crc32c': String(crc32c(data)) },
          });
        }
        const src = await this.dataFor([lease.primary, ...lease.secondaries], data);
        return rpcJson<WriteAnswer>(
          lease.primary.url,
          '/chunk/write',
          { handle: lease.handle, version: lease.version, offset: offsetInChunk, ...src, sizeBytes: data.length, clientId: this.clientId, requestId },
          { targetName: lease.primary.id, timeoutMs: defaults.dataTimeoutMs },
        );
      },
      {
        ...this.retry,
        onError: (e) => {
          if (handle) this.dropLease(handle, path, index);
          if (e instanceof GfsError && (e.code === 'NOT_FOUND' || e.code === 'STALE_VERSION' || e.code === 'NO_REPLICAS')) this.invalidate(path);
          const server = fullServer(e);
          if (server === undefined) return;
          // Retrying the same replicas would find the same full disk: ask for a fresh placement without it.
          noSpaceAnswers++;
          full.add(server);
          replace = true;
          this.invalidate(path);
        },
        giveUp: (e) => fullServer(e) !== undefined && noSpaceAnswers > maxReplacements,
      },
    );
    this.files.grew(path, index, offsetInChunk + data.length);
    return { ...a, replicas };
  }

  /**
   * Record append of raw bytes (no framing): the system picks the offset and
   * returns it. At least once: a retried append may leave a duplicate.
   */
  async appendRaw(path: string, data: Buffer): Promise<number> {
    if (data.length === 0) throw new GfsError('BAD_REQUEST', 'empty record');
    if (data.length <= inlineMaxBytes) return (await this.appendRawBatch(path, [data]))[0]!;
    return this.appendPushed(path, data);
  }

  /**
   * Record append of many raw records in as few requests as fit
   * (shared/record-wire.ts bounds a request): each record is placed on its
   * own, never straddling a chunk, and the answer has one file offset per
   * record, in order. Records above inlineMaxBytes go one by one through a
   * data push. At least once, like appendRaw.
   */
  async appendRawBatch(path: string, records: Buffer[]): Promise<number[]> {
    const out = new Array<number>(records.length);
    let batch: number[] = [];
    let batchBytes = 4;
    const send = async () => {
      const offs = await this.appendBatchRequest(path, batch.map((i) => records[i]!));
      batch.forEach((i, k) => (out[i] = offs[k]!));
      batch = [];
      batchBytes = 4;
    };
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (r.length === 0) throw new GfsError('BAD_REQUEST', `record ${i} is empty`);
      if (r.length > inlineMaxBytes) {
        out[i] = await this.appendPushed(path, r);
        continue;
      }
      if (batch.length > 0 && (batchBytes + 4 + r.length > recordBatchMaxBytes || batch.length >= recordBatchMaxRecords)) await send();
      batch.push(i);
      batchBytes += 4 + r.length;
    }
    if (batch.length > 0) await send();
    return out;
  }

  /**
   * One batch of small records to the primary of the file's last chunk. The
   * records the primary placed come back with their offsets; the rest found
   * the chunk full (padded now) and go on to the next chunk under a new
   * request id. A retry of the same request keeps its id, so a primary that
   * already placed it answers with the same offsets.
   */
  private async appendBatchRequest(path: string, records: Buffer[]): Promise<number[]> {
    const requestId = this.nextRequestId();
    const out: number[] = [];
    let handle: string | undefined;
    let leasedIndex = 0;
    let padded = 0;
    return withRetry(
      async () => {
        for (;;) {
          const rest = records.slice(out.length);
          const f = await this.locate(path, 0, 1);
          const index = Math.max(0, f.chunkCount - 1);
          for (const r of rest) if (r.length > f.chunkSizeBytes / 4) throw new GfsError('RECORD_TOO_LARGE', `record of ${r.length} bytes exceeds the limit of ${f.chunkSizeBytes / 4} (a quarter of the chunk size)`);
          const loc = await this.chunkForWrite(path, index);
          handle = loc.handle;
          leasedIndex = index;
          const lease = await this.leaseFor(loc.handle, path, index);
          handle = lease.handle;
          const body = encodeRecordBatch(rest);
          const a = await rpcBinary<AppendBatchAnswer>(lease.primary.url, '/chunk/append-batch', body, {
            targetName: lease.primary.id,
            timeoutMs: defaults.dataTimeoutMs,
            headers: { 'x-gfs-handle': lease.handle, 'x-gfs-version': String(lease.version), 'x-gfs-client': this.clientId, 'x-gfs-request': `${requestId}_${padded}`, 'x-gfs-crc32c': String(crc32c(body)) },
          });
          const placed = a.offsets.slice(0, rest.length);
          for (const o of placed) out.push(index * f.chunkSizeBytes + o);
          if (placed.length > 0) this.files.grew(path, index, placed[placed.length - 1]! + rest[placed.length - 1]!.length);
          if (out.length === records.length) return out;
          // The chunk was full and is now padded on every replica: the rest go on to the next one.
          await this.onToNextChunk(path, index, ++padded);
        }
      },
      {
        ...this.retry,
        onError: () => {
          if (handle) this.dropLease(handle, path, leasedIndex);
          this.invalidate(path);
        },
      },
    );
  }

  /** After an append found chunk `index` full (now padded): the next chunk exists and the cache counts it. Bounded: `padded` pads in one call at most 64. */
  private async onToNextChunk(path: string, index: number, padded: number): Promise<void> {
    if (padded > 64) throw new GfsError('UNAVAILABLE', 'record append kept finding full chunks');
    await this.chunkForWrite(path, index + 1);
    const g = this.files.get(path);
    if (g && g.chunkCount < index + 2) g.chunkCount = index + 2;
  }

  /** Record append of one large record: the data is pushed along the chain first, then the primary places it. */
  private async appendPushed(path: string, data: Buffer): Promise<number> {
    const requestId = this.nextRequestId();
    let handle: string | undefined;
    let leasedIndex = 0;
    let padded = 0;
    return withRetry(
      async () => {
        for (;;) {
          const f = await this.locate(path, 0, 1);
          const index = Math.max(0, f.chunkCount - 1);
          if (data.length > f.chunkSizeBytes / 4) throw new GfsError('RECORD_TOO_LARGE', `record of ${data.length} bytes exceeds the limit of ${f.chunkSizeBytes / 4} (a quarter of the chunk size)`);
          const loc = await this.chunkForWrite(path, index);
          handle = loc.handle;
          leasedIndex = index;
          const lease = await this.leaseFor(loc.handle, path, index);
          handle = lease.handle;
          const src = await this.dataFor([lease.primary, ...lease.secondaries], data);
          const a = await rpcJson<AppendAnswer>(
            lease.primary.url,
            '/chunk/append',
            { handle: lease.handle, version: lease.version, ...src, sizeBytes: data.length, clientId: this.clientId, requestId: `${requestId}_${padded}` },
            { targetName: lease.primary.id, timeoutMs: defaults.dataTimeoutMs },
          );
          if (a.status === 'ok') {
            this.files.grew(path, index, a.offset + data.length);
            return index * f.chunkSizeBytes + a.offset;
          }
          // The chunk was full and is now padded on every replica: go on to the next one.
          await this.onToNextChunk(path, index, ++padded);
        }
      },
      {
        ...this.retry,
        onError: () => {
          if (handle) this.dropLease(handle, path, leasedIndex);
          this.invalidate(path);
        },
      },
    );
  }

  /**
   * A batching appender of framed records to `path` (client/appender.ts):
   * `append(record)` resolves to the record's file offset; records appended
   * while a batch is in flight go together in the next request.
   */
  appender(path: string, o: AppenderOptions = {}): RecordAppender {
    return new RecordAppender(this, path, o);
  }

  /** Reads up to `length` bytes at `offset`: short only at the end of the file, never padded where a replica came up short. */
  async read(path: string, offset: number, length: number): Promise<Buffer> {
    if (length <= 0) return Buffer.alloc(0);
    const f = await this.extent(path, offset + length);
    const cs = f.chunkSizeBytes;
    const end = Math.min(offset + length, f.sizeBytes);
    if (end <= offset) return Buffer.alloc(0);
    const first = Math.floor(offset / cs);
    await this.locate(path, first, Math.floor((end - 1) / cs) - first + 1);
    const out = Buffer.alloc(end - offset);
    const pieces: { index: number; inChunk: number; len: number; at: number }[] = [];
    for (let pos = offset; pos < end; ) {
      const index = Math.floor(pos / cs);
      const inChunk = pos % cs;
      const len = Math.min(end - pos, cs - inChunk, this.pieceBytes);
      pieces.push({ index, inChunk, len, at: pos - offset });
      pos += len;
    }
    // Only the last chunk's pieces can come back short (its replicas hold less than the size said): the data ends at the first such.
    let dataEnd = out.length;
    await this.runLimited(pieces, async (p) => {
      const b = await this.readPiece(path, p.index, p.inChunk, p.len);
      b.copy(out, p.at);
      if (b.length < p.len) dataEnd = Math.min(dataEnd, p.at + b.length);
    });
    return dataEnd === out.length ? out : out.subarray(0, dataEnd);
  }

  /**
   * One piece of one chunk: all `len` bytes, except in the file's last chunk,
   * whose data may end sooner. Tries the closest replica first and fails over
   * to the next on an error or a short answer; when none serves the piece,
   * asks the master for fresh locations once, then fails.
   */
  async readPiece(path: string, index: number, inChunk: number, len: number): Promise<Buffer> {
    let lastErr: unknown;
    for (let round = 0; round < 3; round++) {
      const f = await this.locate(path, index, 1, round > 0);
      const loc = f.chunks.get(index);
      if (!loc) throw new GfsError('NOT_FOUND', `chunk ${index} of ${path} vanished`);
      if (loc.replicas.length === 0) {
        // Replicas may be re-registering (a restarted chunkserver): a short wait, bounded by the rounds.
        lastErr = new GfsError('NO_REPLICAS', `no live replica of chunk ${index} of ${path}`);
        await new Promise((r) => setTimeout(r, 200 * (round + 1)));
        continue;
      }
      // Spread reads over replicas, closest first.
      const ordered = closestFirst(loc.replicas, this.rack);
      const start = this.readCursor++ % ordered.length;
      const rotated = ordered.map((_, i) => ordered[(start + i) % ordered.length]!);
      const lastTry = round > 0;
      const outcome = await readFromReplicas(rotated, { len, tail: index >= f.chunkCount - 1, lastTry, what: `chunk ${index} of ${path}` }, (r) =>
        this.readReplica(r, loc.handle, loc.version, inChunk, len),
      );
      if (outcome.kind === 'data') return outcome.data;
      lastErr = outcome.error;
      if (lastTry) break;
    }
    throw lastErr instanceof Error ? lastErr : new GfsError('UNAVAILABLE', `cannot read chunk ${index} of ${path}`);
  }

  async readReplica(r: ReplicaRef, handle: string, version: number, offset: number, length: number): Promise<Buffer> {
    const res = await rpcStream(r.url, '/chunk/read', undefined, { query: { handle, offset, length, version }, targetName: r.id });
    const expected = Number(res.headers['content-length'] ?? -1);
    if (!(expected >= 0 && expected <= length)) {
      const bufs: Buffer[] = [];
      let got = 0;
      for await (const c of res.body) {
        bufs.push(c as Buffer);
        got += (c as Buffer).length;
      }
      return Buffer.concat(bufs, got);
    }
    // The answer's length is known: each part is copied once, straight to its place.
    const out = Buffer.allocUnsafe(expected);
    let got = 0;
    for await (const c of res.body) {
      const b = c as Buffer;
      if (got + b.length > expected) throw new GfsError('TRUNCATED', `read from ${r.id} sent more than its ${expected} bytes`);
      b.copy(out, got);
      got += b.length;
    }
    if (got !== expected) throw new GfsError('TRUNCATED', `short read from ${r.id}: ${got} of ${expected} bytes`);
    return out;
  }

  /** Makes every chunk of the file (or those in `range`) durable on every replica's disk (fsync). */
  async sync(path: string, range: { startIndex: number; count: number } = { startIndex: 0, count: 10_000 }): Promise<void> {
    const f = await this.locate(path, range.startIndex, range.count, true);
    const jobs: (() => Promise<void>)[] = [];
    for (const loc of f.chunks.values()) {
      if (loc.index < range.startIndex || loc.index >= range.startIndex + range.count) continue; // only the chunks asked for
      for (const r of loc.replicas) {
        jobs.push(async () => {
          await withRetry(() => rpcJson(r.url, '/chunk/sync', { handle: loc.handle, version: loc.version }, { targetName: r.id, timeoutMs: defaults.dataTimeoutMs }), { attempts: 3 });
        });
      }
    }
    await this.runLimited(jobs, (j) => j(), 16);
  }

  /** Runs fn over items with at most `limit` in flight; the first error fails the whole run. */
  runLimited<T>(items: T[], fn: (item: T) => Promise<unknown>, limit = this.concurrency): Promise<void> {
    return runLimited(items, fn, limit);
  }

  static newRecordId(): Buffer {
    return randomBytes(16);
  }
}
