// Record append placement at the primary: a pure decision over the chunk's
// current length. Records are limited to a quarter of the chunk size, which
// bounds the padding wasted at the end of a chunk to a quarter too.

export type AppendPlacement = { kind: 'append'; offset: number } | { kind: 'pad'; toSizeBytes: number } | { kind: 'too-large'; maxBytes: number };

export function maxRecordBytes(chunkSizeBytes: number): number {
  return Math.floor(chunkSizeBytes / 4);
}

export function placeRecord(chunkLengthBytes: number, recordBytes: number, chunkSizeBytes: number): AppendPlacement {
  const max = maxRecordBytes(chunkSizeBytes);
  if (recordBytes > max) return { kind: 'too-large', maxBytes: max };
  if (chunkLengthBytes + recordBytes > chunkSizeBytes) return { kind: 'pad', toSizeBytes: chunkSizeBytes };
  return { kind: 'append', offset: chunkLengthBytes };
}

// ---- group commit (chunkserver/append-groups.ts runs it) ----

export interface GroupBounds {
  /** Records in one group at most (a single request larger than this still goes, alone). */
  maxRecords: number;
  /** Record bytes in one group at most (likewise). */
  maxBytes: number;
}

export interface GroupPlan {
  /** How many of the waiting requests, from the first, this group takes (whole requests only, at least one). */
  taken: number;
  /** Per request taken: the chunk offsets of its records that were placed, in order (a prefix of its records). */
  offsets: number[][];
  /** Where the group's bytes go (the chunk's length before it) and how many there are: one contiguous write. */
  writeOffset: number;
  writeBytes: number;
  /** Set when a record did not fit: the chunk is padded to this length, and that record and every later one find it full. */
  padTo: number | undefined;
}

/**
 * The next group of record appends to a chunk of chunkLengthBytes: waiting
 * requests (each its records' sizes, in arrival order) are taken whole while
 * the group stays within bounds; records are placed back to back from the
 * chunk's end, never straddling its size; the first that does not fit pads
 * the chunk, and it and every record after it are answered "chunk full" (the
 * client retries them on the next chunk). Each record must be at most
 * maxRecordBytes (checked before it waits).
 */
export function planGroup(chunkLengthBytes: number, chunkSizeBytes: number, waiting: readonly (readonly number[])[], bounds: GroupBounds): GroupPlan {
  let records = 0;
  let bytes = 0;
  let taken = 0;
  for (const sizes of waiting) {
    const b = sizes.reduce((s, n) => s + n, 0);
    if (taken > 0 && (records + sizes.length > bounds.maxRecords || bytes + b > bounds.maxBytes)) break;
    records += sizes.length;
    bytes += b;
    taken++;
  }
  let pos = chunkLengthBytes;
  let full = false;
  const offsets: number[][] = [];
  for (let i = 0; i < taken; i++) {
    const placed: number[] = [];
    for (const n of waiting[i]!) {
      if (!full && pos + n <= chunkSizeBytes) {
        placed.push(pos);
        pos += n;
      } else {
        full = true;
      }
    }
    offsets.push(placed);
  }
  return { taken, offsets, writeOffset: chunkLengthBytes, writeBytes: pos - chunkLengthBytes, padTo: full && pos < chunkSizeBytes ? chunkSizeBytes : undefined };
}
