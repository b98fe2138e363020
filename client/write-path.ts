import { nanoid } from 'nanoid';
import { macBody } from '../shared/auth.js';
import { blockCrcsOf, crc32c, crcOfBlocks, encodeBlockCrcs } from '../shared/checksum.js';
import { defaults } from '../shared/config.js';
import { GfsError } from '../shared/errors.js';
import { rpcBinary, rpcJson, rpcStream } from '../shared/rpc.js';
import { blockCrcsHeader, inlineMaxBytes, maxPushBlockCrcs, pushCrcBlockBytes } from '../shared/wire.js';
import type { FileInfo, LeaseAnswer, PushAnswer, ReplicaRef, WriteAnswer } from '../shared/wire.js';
import type { DataContext } from './data-context.js';
import { closestFirst } from './replica-read.js';
import { withRetry } from './retry.js';
import { runLimited } from './run-limited.js';
import { fullServer, maxReplacements, reportOf, type ReplicationReport } from './write-report.js';

// Writes: data is pushed along a pipelined chain of the chunk's replicas
// (closest first), then the primary named by the lease orders the mutation
// and forwards it to the secondaries; small pieces skip the push and travel
// raw in the write request itself.

/** Replicas synced at once by one sync call. */
const syncJobsInFlight = 16;

/**
 * Pushes data along a pipelined chain of the given replicas, closest first. With it go the crc32c of
 * each checksum block (every hop checks them as the bytes arrive, and the chunk keeps them) and, with
 * authentication on, the body's MAC (shared/auth.ts). Resolves to the crc32c of the whole data.
 */
export async function push(cx: DataContext, replicas: ReplicaRef[], data: Buffer): Promise<{ dataId: string; crc: number }> {
  const chain = closestFirst(replicas, cx.rack);
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

/**
 * Writes data at a file offset; spans chunks; returns when every replica applied every piece, with
 * the replicas each chunk written was written to: fewer than the goal where chunkservers' disks
 * were full and no other server had room (`underReplicated`).
 */
export async function write(cx: DataContext, path: string, offset: number, data: Buffer): Promise<ReplicationReport> {
  if (data.length === 0) return reportOf(0, []);
  const f = await cx.chunks.locate(path, 0, 1).catch(() => undefined);
  const info = f?.replication === undefined ? await cx.masters.call<FileInfo>('/api/stat', undefined, { path }) : undefined;
  const chunkSizeBytes = f?.chunkSizeBytes ?? info!.chunkSizeBytes;
  const goal = f?.replication ?? info!.replication;
  const pieces: { index: number; offset: number; data: Buffer }[] = [];
  let pos = 0;
  while (pos < data.length) {
    const fileOff = offset + pos;
    const index = Math.floor(fileOff / chunkSizeBytes);
    const inChunk = fileOff % chunkSizeBytes;
    const n = Math.min(data.length - pos, chunkSizeBytes - inChunk, cx.pieceBytes);
    pieces.push({ index, offset: inChunk, data: data.subarray(pos, pos + n) });
    pos += n;
  }
  // Per chunk, the replicas of the piece acknowledged last: a chunk placed afresh mid-write ends on the new set.
  const written = new Map<number, string[]>();
  await runLimited(pieces, async (p) => written.set(p.index, (await writePiece(cx, path, p.index, p.offset, p.data)).replicas), cx.concurrency);
  return reportOf(goal, [...written].map(([index, replicas]) => ({ index, replicas: [...replicas].sort() })));
}

/**
 * Runs `attempt` at the primary of chunk `index` of `path` under a lease, with one request id for
 * every try: an error drops the lease (and, where the chunk or its version moved, the cached
 * locations) and tries again; a replica whose disk is full is left out (the master places the chunk
 * afresh without it). Returns the attempt's answer and the replicas it went to.
 */
async function withChunkLease<T>(cx: DataContext, path: string, index: number, attempt: (lease: LeaseAnswer, requestId: string) => Promise<T>): Promise<{ answer: T; replicas: string[] }> {
  const requestId = cx.masters.nextRequestId();
  let handle: string | undefined;
  let replicas: string[] = [];
  const full = new Set<string>();
  let replace = false;
  let noSpaceAnswers = 0;
  const answer = await withRetry(
    async () => {
      const loc = await cx.chunks.chunkForWrite(path, index, replace ? full : undefined);
      replace = false;
      handle = loc.handle;
      const lease = await cx.chunks.leaseFor(loc.handle, path, index);
      handle = lease.handle;
      replicas = [lease.primary.id, ...lease.secondaries.map((r) => r.id)];
      return attempt(lease, requestId);
    },
    {
      ...cx.retry,
      onError: (e) => {
        if (handle) cx.chunks.dropLease(handle, path, index);
        if (e instanceof GfsError && (e.code === 'NOT_FOUND' || e.code === 'STALE_VERSION' || e.code === 'NO_REPLICAS')) cx.chunks.invalidate(path);
        const server = fullServer(e);
        if (server === undefined) return;
        // Retrying the same replicas would find the same full disk: ask for a fresh placement without it.
        noSpaceAnswers++;
        full.add(server);
        replace = true;
        cx.chunks.invalidate(path);
      },
      giveUp: (e) => fullServer(e) !== undefined && noSpaceAnswers > maxReplacements,
    },
  );
  return { answer, replicas };
}

/**
 * Writes one piece within one chunk (allocated if new); answers once every replica applied it, naming
 * them. A full disk sends the chunk to a fresh placement without it, a few times at most; then
 * NO_SPACE is the answer.
 */
export async function writePiece(cx: DataContext, path: string, index: number, offsetInChunk: number, data: Buffer): Promise<WriteAnswer & { replicas: string[] }> {
  const { answer, replicas } = await withChunkLease(cx, path, index, (lease, requestId) => writeUnderLease(cx, lease, offsetInChunk, data, requestId));
  cx.chunks.grew(path, index, offsetInChunk + data.length);
  return { ...answer, replicas };
}

/** Sets chunk `index`'s length to exactly toSizeBytes on every replica (cut, or extended with zeros): the end of a truncated file. */
export async function setChunkLength(cx: DataContext, path: string, index: number, toSizeBytes: number): Promise<void> {
  await withChunkLease(cx, path, index, (lease, requestId) =>
    rpcJson(lease.primary.url, '/chunk/truncate', { handle: lease.handle, version: lease.version, toSizeBytes, clientId: cx.clientId, requestId }, { targetName: lease.primary.id, timeoutMs: defaults.dataTimeoutMs }),
  );
  cx.chunks.invalidate(path);
}

/** One attempt of a write at the primary the lease names. */
async function writeUnderLease(cx: DataContext, lease: LeaseAnswer, offsetInChunk: number, data: Buffer, requestId: string): Promise<WriteAnswer> {
  if (data.length <= inlineMaxBytes) {
    // Small: the bytes go raw in the request itself (shared/record-wire.ts), no push chain.
    return rpcBinary<WriteAnswer>(lease.primary.url, '/chunk/write', data, {
      targetName: lease.primary.id,
      timeoutMs: defaults.dataTimeoutMs,
      headers: { 'x-gfs-handle': lease.handle, 'x-gfs-version': String(lease.version), 'x-gfs-offset': String(offsetInChunk), 'x-gfs-client': cx.clientId, 'x-gfs-request': requestId, 'x-gfs-crc32c': String(crc32c(data)) },
    });
  }
  const { dataId, crc } = await push(cx, [lease.primary, ...lease.secondaries], data);
  return rpcJson<WriteAnswer>(
    lease.primary.url,
    '/chunk/write',
    { handle: lease.handle, version: lease.version, offset: offsetInChunk, dataId, crc32c: crc, sizeBytes: data.length, clientId: cx.clientId, requestId },
    { targetName: lease.primary.id, timeoutMs: defaults.dataTimeoutMs },
  );
}

/** Makes every chunk of the file (or those in `range`) durable on every replica's disk (fsync). */
export async function sync(cx: DataContext, path: string, range: { startIndex: number; count: number }): Promise<void> {
  const f = await cx.chunks.locate(path, range.startIndex, range.count, true);
  const jobs: (() => Promise<void>)[] = [];
  for (const loc of f.chunks.values()) {
    if (loc.index < range.startIndex || loc.index >= range.startIndex + range.count) continue; // only the chunks asked for
    for (const r of loc.replicas) {
      jobs.push(async () => {
        await withRetry(() => rpcJson(r.url, '/chunk/sync', { handle: loc.handle, version: loc.version }, { targetName: r.id, timeoutMs: defaults.dataTimeoutMs }), { attempts: 3 });
      });
    }
  }
  await runLimited(jobs, (j) => j(), syncJobsInFlight);
}
