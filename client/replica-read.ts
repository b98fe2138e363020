import { GfsError } from '../shared/errors.js';
import type { ReplicaRef } from '../shared/wire.js';

// Deciding what one piece of one chunk holds from its replicas' answers
// (tried closest first, see closestFirst).
// Every replica of a chunk holds every acknowledged mutation, so a replica
// that answers with fewer bytes than another has lost some (a truncated
// file, a disk that lied): it is skipped like one that failed, never padded
// with zeros. A chunk can still be short on every replica alike: the end of
// the file's last chunk, or a hole left by a write past the end (a sparse
// file, truncate to a larger size), which reads as zeros as POSIX says.

export type PieceOutcome = { kind: 'data'; data: Buffer } | { kind: 'failed'; error: unknown };

export interface PieceRead {
  /** Bytes wanted: [offset, offset+len) of the chunk. */
  len: number;
  /** The chunk is the file's last: data may end inside it. */
  tail: boolean;
  /** No later try with fresh locations follows: settle for what the replicas agree on. */
  lastTry: boolean;
  /** For messages: "chunk 3 of /a/b". */
  what: string;
}

/** Asks the replicas in order until one answers with all `len` bytes; otherwise decides from the short answers. */
export async function readFromReplicas(replicas: ReplicaRef[], p: PieceRead, readOne: (r: ReplicaRef) => Promise<Buffer>): Promise<PieceOutcome> {
  const shorts: { id: string; data: Buffer }[] = [];
  const errors: { id: string; error: unknown }[] = [];
  for (const r of replicas) {
    let b: Buffer;
    try {
      b = await readOne(r);
    } catch (error) {
      errors.push({ id: r.id, error });
      continue;
    }
    if (b.length >= p.len) return { kind: 'data', data: b.length === p.len ? b : b.subarray(0, p.len) };
    shorts.push({ id: r.id, data: b });
  }
  return settleShort(shorts, errors, p);
}

function settleShort(shorts: { id: string; data: Buffer }[], errors: { id: string; error: unknown }[], p: PieceRead): PieceOutcome {
  const agree = shorts.length > 0 && errors.length === 0 && shorts.every((s) => s.data.length === shorts[0]!.data.length);
  if (agree) {
    const data = shorts[0]!.data;
    // Every replica ends here: the file's data does (tail), or a hole follows.
    if (p.tail) return { kind: 'data', data };
    const out = Buffer.alloc(p.len);
    data.copy(out);
    return { kind: 'data', data: out };
  }
  if (p.tail && p.lastTry && shorts.length > 0 && errors.length === 0) {
    // The last chunk's length is what its replicas hold: the longest answer is the most that was written
    // (only when every replica answered: one that failed may hold more).
    return { kind: 'data', data: shorts.reduce((a, b) => (b.data.length > a.data.length ? b : a)).data };
  }
  // Only failures: the last one says why (NOT_FOUND for a deleted chunk, STALE_VERSION, ...).
  if (shorts.length === 0 && errors.length > 0) return { kind: 'failed', error: errors[errors.length - 1]!.error };
  const parts = [...shorts.map((s) => `${s.id} had ${s.data.length} of ${p.len} bytes`), ...errors.map((e) => `${e.id}: ${e.error instanceof Error ? e.error.message : String(e.error)}`)];
  return { kind: 'failed', error: new GfsError('UNAVAILABLE', `no replica of ${p.what} could serve ${p.len} bytes (${parts.join('; ') || 'no replicas'})`) };
}

/** Orders replicas for a push chain or a read: closest first. On one host all are equally close; prefer the client's rack, then keep racks together. */
export function closestFirst(replicas: ReplicaRef[], clientRack?: string): ReplicaRef[] {
  return replicas
    .map((r, i) => ({ r, i }))
    .sort((a, b) => (a.r.rack === clientRack ? 0 : 1) - (b.r.rack === clientRack ? 0 : 1) || (a.r.rack < b.r.rack ? -1 : a.r.rack > b.r.rack ? 1 : 0) || a.i - b.i)
    .map((x) => x.r);
}
