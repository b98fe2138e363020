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
