import { GfsError } from '../shared/errors.js';
import { rpcStream } from '../shared/rpc.js';
import type { ReplicaRef } from '../shared/wire.js';
import type { DataContext } from './data-context.js';
import { closestFirst, readFromReplicas } from './replica-read.js';
import { runLimited } from './run-limited.js';

// Reads go straight to a replica (closest first, rotated to spread load),
// at the version the cached location names: a replica at another version
// refuses, and the client asks the master afresh. Only the file's last chunk
// may come back short; elsewhere a short answer fails over to the next
// replica, never zeros.

/** Rounds of one piece's read: the first from cached locations, the others with fresh ones. */
const readRounds = 3;

/** A read that rotates over replicas: one counter per client. */
export interface ReadCursor {
  next: number;
}

/** Reads up to `length` bytes at `offset`: short only at the end of the file, never padded where a replica came up short. */
export async function read(cx: DataContext, cursor: ReadCursor, path: string, offset: number, length: number): Promise<Buffer> {
  if (length <= 0) return Buffer.alloc(0);
  const f = await cx.chunks.extent(path, offset + length);
  const cs = f.chunkSizeBytes;
  const end = Math.min(offset + length, f.sizeBytes);
  if (end <= offset) return Buffer.alloc(0);
  const first = Math.floor(offset / cs);
  await cx.chunks.locate(path, first, Math.floor((end - 1) / cs) - first + 1);
  const out = Buffer.alloc(end - offset);
  const pieces: { index: number; inChunk: number; len: number; at: number }[] = [];
  for (let pos = offset; pos < end; ) {
    const index = Math.floor(pos / cs);
    const inChunk = pos % cs;
    const len = Math.min(end - pos, cs - inChunk, cx.pieceBytes);
    pieces.push({ index, inChunk, len, at: pos - offset });
    pos += len;
  }
  // Only the last chunk's pieces can come back short (its replicas hold less than the size said): the data ends at the first such.
  let dataEnd = out.length;
  await runLimited(
    pieces,
    async (p) => {
      const b = await readPiece(cx, cursor, path, p.index, p.inChunk, p.len);
      b.copy(out, p.at);
      if (b.length < p.len) dataEnd = Math.min(dataEnd, p.at + b.length);
    },
    cx.concurrency,
  );
  return dataEnd === out.length ? out : out.subarray(0, dataEnd);
}

/**
 * One piece of one chunk: all `len` bytes, except in the file's last chunk,
 * whose data may end sooner. Tries the closest replica first and fails over
 * to the next on an error or a short answer; when none serves the piece,
 * asks the master for fresh locations once, then fails.
 */
export async function readPiece(cx: DataContext, cursor: ReadCursor, path: string, index: number, inChunk: number, len: number): Promise<Buffer> {
  let lastErr: unknown;
  for (let round = 0; round < readRounds; round++) {
    const f = await cx.chunks.locate(path, index, 1, round > 0);
    const loc = f.chunks.get(index);
    if (!loc) throw new GfsError('NOT_FOUND', `chunk ${index} of ${path} vanished`);
    if (loc.replicas.length === 0) {
      // Replicas may be re-registering (a restarted chunkserver): a short wait, bounded by the rounds.
      lastErr = new GfsError('NO_REPLICAS', `no live replica of chunk ${index} of ${path}`);
      await new Promise((r) => setTimeout(r, 200 * (round + 1)));
      continue;
    }
    // Spread reads over replicas, closest first.
    const ordered = closestFirst(loc.replicas, cx.rack);
    const start = cursor.next++ % ordered.length;
    const rotated = ordered.map((_, i) => ordered[(start + i) % ordered.length]!);
    const lastTry = round > 0;
    const outcome = await readFromReplicas(rotated, { len, tail: index >= f.chunkCount - 1, lastTry, what: `chunk ${index} of ${path}` }, (r) =>
      readReplica(r, loc.handle, loc.version, inChunk, len),
    );
    if (outcome.kind === 'data') return outcome.data;
    lastErr = outcome.error;
    if (lastTry) break;
  }
  throw lastErr instanceof Error ? lastErr : new GfsError('UNAVAILABLE', `cannot read chunk ${index} of ${path}`);
}

/** Bytes [offset, offset+length) of one replica at `version`; an answer shorter than it announced is an error. */
export async function readReplica(r: ReplicaRef, handle: string, version: number, offset: number, length: number): Promise<Buffer> {
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
