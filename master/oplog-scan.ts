// The frames of operation log files (master/oplog.ts):
//   [u32 LE payloadLength][u32 LE crc32c(payload)][payload = UTF-8 JSON]
// encodeFrame makes one; scanLog reads them in order and stops at the first bad one. What follows a
// bad frame tells a torn tail from corruption: a crash mid-write leaves
// nothing decodable after the tear (the last batch was never acknowledged),
// while a damaged record in the middle is followed by good ones, which were
// acknowledged and must not be dropped (goodFrameAfter).

import { open as openFile } from 'node:fs/promises';
import { crc32c } from '../shared/checksum.js';
import { invariant } from '../shared/errors.js';

const MiB = 1024 * 1024;
export const FRAME_HEADER_BYTES = 8;
/** Upper bound of one record's payload, enforced on write and on read (a larger length field is corruption). */
export const MAX_RECORD_BYTES = 16 * MiB;
const READ_CHUNK_BYTES = 1 * MiB;
/**
 * The search for a good frame after a bad one reads at most this much of the file. A torn tail is
 * at most one batch (64 MiB by default); more bytes than this after a bad frame cannot be one.
 */
export const MAX_TAIL_SEARCH_BYTES = 128 * MiB;
/** Bytes hashed while searching, at most (random garbage can look like many long frames). */
const MAX_SEARCH_CRC_BYTES = 512 * MiB;

/** One record's frame, for a payload already checked against MAX_RECORD_BYTES. */
export function encodeFrame(json: string, payloadBytes: number): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes);
  frame.writeUInt32LE(payloadBytes, 0);
  const written = frame.write(json, FRAME_HEADER_BYTES, 'utf8');
  invariant(written === payloadBytes, 'frame payload length matches its byteLength');
  frame.writeUInt32LE(crc32c(frame.subarray(FRAME_HEADER_BYTES)), 4);
  return frame;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export type ScanResult =
  | { ok: true; goodBytes: number; totalBytes: number }
  | { ok: false; goodBytes: number; totalBytes: number; reason: string };

/** The payload of the frame at buf[at], or why there is none. */
function frameAt(buf: Buffer, at: number): { ok: true; len: number; record: unknown } | { ok: false; reason: string } {
  if (at + FRAME_HEADER_BYTES > buf.length) return { ok: false, reason: 'incomplete frame header' };
  const len = buf.readUInt32LE(at);
  if (len === 0 || len > MAX_RECORD_BYTES) return { ok: false, reason: `bad payload length ${len}` };
  if (at + FRAME_HEADER_BYTES + len > buf.length) return { ok: false, reason: `incomplete frame of ${len} payload bytes` };
  const payload = buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + len);
  if (crc32c(payload) !== buf.readUInt32LE(at + 4)) return { ok: false, reason: 'crc mismatch' };
  try {
    return { ok: true, len, record: JSON.parse(payload.toString('utf8')) };
  } catch (e) {
    return { ok: false, reason: `unparsable JSON: ${errorMessage(e)}` };
  }
}

/**
 * Reads frames from the start of a log, handing each decoded record (and the
 * file offset just past its frame) to onRecord, and stops at the first bad frame. Reads in bounded chunks so a log
 * that grew large (e.g. checkpoints kept failing) does not need one huge buffer.
 */
export async function scanLog(path: string, onRecord: (record: unknown, endOffset: number) => void): Promise<ScanResult> {
  const fh = await openFile(path, 'r');
  try {
    const totalBytes = (await fh.stat()).size;
    let buf: Buffer = Buffer.alloc(0);
    let bufStart = 0; // file offset of buf[0]
    let pos = 0; // file offset of the next frame

    // Makes [pos, pos+n) available in buf, as far as the file has it.
    const ensure = async (n: number): Promise<void> => {
      const want = Math.min(pos + n, totalBytes);
      if (bufStart + buf.length >= want) return;
      const keep = buf.subarray(pos - bufStart);
      const readLen = Math.min(Math.max(want - (bufStart + buf.length), READ_CHUNK_BYTES), totalBytes - (bufStart + buf.length));
      const next = Buffer.allocUnsafe(keep.length + readLen);
      keep.copy(next, 0);
      let filled = 0;
      while (filled < readLen) {
        const { bytesRead } = await fh.read(next, keep.length + filled, readLen - filled, bufStart + buf.length + filled);
        // The file shrank under us: nobody else may touch the log directory.
        invariant(bytesRead > 0, `log ${path} shrank while being read`);
        filled += bytesRead;
      }
      buf = next;
      bufStart = pos;
    };

    for (;;) {
      if (pos === totalBytes) return { ok: true, goodBytes: pos, totalBytes };
      await ensure(FRAME_HEADER_BYTES);
      const len = pos + FRAME_HEADER_BYTES <= totalBytes ? buf.readUInt32LE(pos - bufStart) : 0;
      if (len > 0 && len <= MAX_RECORD_BYTES) await ensure(FRAME_HEADER_BYTES + len);
      const f = frameAt(buf, pos - bufStart);
      if (!f.ok) return { ok: false, goodBytes: pos, totalBytes, reason: `${f.reason} at offset ${pos}` };
      pos += FRAME_HEADER_BYTES + f.len;
      onRecord(f.record, pos);
    }
  } finally {
    await fh.close();
  }
}

/**
 * After a bad frame at `badOffset`: the offset of the first good frame behind it, 'too-large' when
 * more follows than a torn tail can hold (or searching would cost too much), else undefined (a torn
 * tail). A good frame is one whose length, checksum and JSON all check out; garbage passes all
 * three with a chance of about 2^-32 per position.
 */
export async function goodFrameAfter(path: string, badOffset: number): Promise<number | 'too-large' | undefined> {
  const fh = await openFile(path, 'r');
  try {
    const totalBytes = (await fh.stat()).size;
    const tailBytes = totalBytes - badOffset;
    if (tailBytes > MAX_TAIL_SEARCH_BYTES) return 'too-large';
    const buf = Buffer.allocUnsafe(tailBytes);
    let filled = 0;
    while (filled < tailBytes) {
      const { bytesRead } = await fh.read(buf, filled, tailBytes - filled, badOffset + filled);
      invariant(bytesRead > 0, `log ${path} shrank while being read`);
      filled += bytesRead;
    }
    let hashed = 0;
    for (let at = 1; at + FRAME_HEADER_BYTES < buf.length; at++) {
      const len = buf.readUInt32LE(at);
      if (len === 0 || len > MAX_RECORD_BYTES || at + FRAME_HEADER_BYTES + len > buf.length) continue;
      hashed += len;
      if (hashed > MAX_SEARCH_CRC_BYTES) return 'too-large';
      if (frameAt(buf, at).ok) return badOffset + at;
    }
    return undefined;
  } finally {
    await fh.close();
  }
}
