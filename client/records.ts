import { crc32c } from '../shared/checksum.js';
import { pooledRandomBytes } from '../shared/random-pool.js';
import type { CachedFile } from './location-cache.js';

// Record framing on top of record append. GFS appends are at-least-once and
// may leave padding, torn fragments and duplicates between records; each
// record therefore carries a magic number, its length, a crc32c over id and
// payload, and a unique id, so a reader can find every whole record exactly
// once. A record never spans chunks (the primary pads instead), so a reader
// can resynchronise by searching for the next magic number.
//
// frame: magic "GFR1" (4) | payload length u32 LE (4) | crc32c(id+payload) u32 LE (4) | id (16) | payload

export const recordMagic = Buffer.from('GFR1', 'latin1');
export const recordHeaderBytes = 28;
export const recordIdBytes = 16;

export function frameRecord(payload: Buffer, id: Buffer = pooledRandomBytes(16)): Buffer {
  const frame = Buffer.allocUnsafe(recordHeaderBytes + payload.length);
  recordMagic.copy(frame, 0);
  frame.writeUInt32LE(payload.length, 4);
  id.copy(frame, 12);
  payload.copy(frame, recordHeaderBytes);
  frame.writeUInt32LE(crc32c(frame.subarray(12)), 8);
  return frame;
}

export interface ParsedRecord {
  /** Offset of the frame within the scanned buffer. */
  offset: number;
  id: string;
  payload: Buffer;
}

/** Every whole record in buf (one chunk's bytes), in order, skipping padding and torn fragments. */
export function* parseRecords(buf: Buffer): Generator<ParsedRecord> {
  let pos = buf.indexOf(recordMagic, 0);
  while (pos >= 0 && pos + recordHeaderBytes <= buf.length) {
    const len = buf.readUInt32LE(pos + 4);
    const end = pos + recordHeaderBytes + len;
    if (end <= buf.length && crc32c(buf.subarray(pos + 12, end)) === buf.readUInt32LE(pos + 8)) {
      yield { offset: pos, id: buf.subarray(pos + 12, pos + 28).toString('hex'), payload: buf.subarray(pos + recordHeaderBytes, end) };
      pos = buf.indexOf(recordMagic, end);
    } else {
      pos = buf.indexOf(recordMagic, pos + 1);
    }
  }
}

// ---- records over a client ----

export interface RecordRead {
  /** Offset of the record's frame in the file. */
  offset: number;
  id: string;
  payload: Buffer;
}

/** Appends one framed record; returns the file offset of its frame. */
/** What record framing needs of a client (GfsClient has it): raw append, the file's extent, reads. */
export interface RecordIo {
  appendRaw(path: string, data: Buffer): Promise<number>;
  extent(path: string, wantEnd: number): Promise<CachedFile>;
  read(path: string, offset: number, length: number): Promise<Buffer>;
}

export async function appendRecord(client: RecordIo, path: string, payload: Buffer): Promise<number> {
  return client.appendRaw(path, frameRecord(payload));
}

export function maxRecordPayloadBytes(chunkSizeBytes: number): number {
  return Math.floor(chunkSizeBytes / 4) - recordHeaderBytes;
}

/** Every appended record once, in file order: padding, torn fragments and duplicates skipped. */
export async function* readRecords(client: RecordIo, path: string): AsyncGenerator<RecordRead> {
  // As far as the file goes now: past what the client knew, a replica of the last chunk (or the master) says.
  const f = await client.extent(path, Number.MAX_SAFE_INTEGER);
  const { chunkSizeBytes, sizeBytes } = f;
  const seen = new Set<string>();
  for (let start = 0; start < sizeBytes; start += chunkSizeBytes) {
    const bytes = await client.read(path, start, Math.min(chunkSizeBytes, sizeBytes - start));
    for (const r of parseRecords(bytes)) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      yield { offset: start + r.offset, id: r.id, payload: r.payload };
    }
  }
}

/**
 * Every record once, in file order, then each record appended later, until `stop()` says so (looked
 * at every `intervalMs`). Only the chunk being filled is read again, from the end of its last whole
 * record; duplicates are recognised within that chunk and the one before (a retried append lands
 * near its first attempt), so memory stays bounded however long it follows.
 */
export async function* followRecords(client: RecordIo, path: string, o: { intervalMs: number; stop: () => boolean }): AsyncGenerator<RecordRead> {
  let chunkIndex = 0;
  let resumeAt = 0; // within the file: where the next whole record may start
  let seenBefore = new Set<string>();
  let seenHere = new Set<string>();
  for (;;) {
    const f = await client.extent(path, Number.MAX_SAFE_INTEGER);
    const cs = f.chunkSizeBytes;
    for (;;) {
      const chunkStart = chunkIndex * cs;
      const from = Math.max(chunkStart, resumeAt);
      const end = Math.min(chunkStart + cs, f.sizeBytes);
      if (from < end) {
        const bytes = await client.read(path, from, end - from);
        for (const r of parseRecords(bytes)) {
          resumeAt = from + r.offset + recordHeaderBytes + r.payload.length;
          if (seenHere.has(r.id) || seenBefore.has(r.id)) continue;
          seenHere.add(r.id);
          yield { offset: from + r.offset, id: r.id, payload: r.payload };
        }
      }
      if (f.sizeBytes < chunkStart + cs) break; // the chunk being filled: look again later
      chunkIndex++;
      resumeAt = Math.max(resumeAt, chunkIndex * cs);
      seenBefore = seenHere;
      seenHere = new Set();
    }
    await new Promise((r) => setTimeout(r, o.intervalMs));
    if (o.stop()) return;
  }
}
