import { randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, openSync, readSync, writeSync } from 'node:fs';

// The machine's own ceilings, measured in the same run on the same disk as
// the cluster's data, plus the benchmark's data source.

export const MiB = 1024 * 1024;

/**
 * Random data without holding the file in memory: one random source buffer;
 * piece i is a window of it starting at a different place each time, with the
 * piece index stamped in its first 16 bytes, so no two pieces are identical.
 */
export class PieceSource {
  private readonly src: Buffer;
  constructor(readonly sourceBytes = 64 * MiB) {
    this.src = randomBytes(sourceBytes);
  }

  /** Fills out[0..len) with piece `index`'s bytes. */
  fill(out: Buffer, index: number, len: number): Buffer {
    const start = (index * 1_048_573 + index * 4099) % this.sourceBytes;
    let done = 0;
    let at = start;
    while (done < len) {
      const n = Math.min(len - done, this.sourceBytes - at);
      this.src.copy(out, done, at, at + n);
      done += n;
      at = 0;
    }
    if (len >= 16) {
      out.writeBigUInt64LE(BigInt(index), 0);
      out.writeBigUInt64LE(BigInt(index) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn, 8);
    }
    return out.subarray(0, len);
  }
}

/** Sequential write of `totalBytes` in `pieceBytes` writes, one fdatasync at the end; bytes/s including the fdatasync. */
export function rawWrite(path: string, totalBytes: number, pieceBytes: number, source: PieceSource): { bytesPerSec: number; seconds: number } {
  const buf = Buffer.allocUnsafe(pieceBytes);
  const fd = openSync(path, 'w');
  try {
    const t0 = process.hrtime.bigint();
    for (let i = 0, at = 0; at < totalBytes; i++) {
      const len = Math.min(pieceBytes, totalBytes - at);
      const b = source.fill(buf, i, len);
      let off = 0;
      while (off < b.length) off += writeSync(fd, b, off, b.length - off);
      at += len;
    }
    fdatasyncSync(fd);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { bytesPerSec: totalBytes / s, seconds: s };
  } finally {
    closeSync(fd);
  }
}

/** Sequential read of the whole file in `pieceBytes` reads. */
export function rawRead(path: string, pieceBytes: number): { bytesPerSec: number; seconds: number; bytes: number } {
  const buf = Buffer.allocUnsafe(pieceBytes);
  const fd = openSync(path, 'r');
  try {
    const t0 = process.hrtime.bigint();
    let total = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      total += n;
    }
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { bytesPerSec: total / s, seconds: s, bytes: total };
  } finally {
    closeSync(fd);
  }
}

/** Single-op durable append rate: append `recordBytes` + fdatasync, one at a time, for ~durationMs. */
export function fsyncRate(path: string, durationMs = 1_000, recordBytes = 100): { opsPerSec: number; meanMs: number; ops: number } {
  const buf = randomBytes(recordBytes);
  const fd = openSync(path, 'a');
  try {
    // One warm-up op so the file exists on disk and its first allocation is not counted.
    writeSync(fd, buf);
    fdatasyncSync(fd);
    const t0 = process.hrtime.bigint();
    const until = t0 + BigInt(durationMs) * 1_000_000n;
    let ops = 0;
    let now = t0;
    while (now < until) {
      writeSync(fd, buf);
      fdatasyncSync(fd);
      ops++;
      now = process.hrtime.bigint();
    }
    const s = Number(now - t0) / 1e9;
    return { opsPerSec: ops / s, meanMs: (s * 1000) / ops, ops };
  } finally {
    closeSync(fd);
  }
}

/** ext4 O_APPEND rate: `recordBytes` writes through an fd opened with 'a', no fsync, for ~durationMs. */
export function appendRate(path: string, durationMs = 1_000, recordBytes = 1024): { opsPerSec: number; ops: number } {
  const buf = randomBytes(recordBytes);
  const fd = openSync(path, 'a');
  try {
    const t0 = process.hrtime.bigint();
    const until = t0 + BigInt(durationMs) * 1_000_000n;
    let ops = 0;
    let now = t0;
    while (now < until) {
      for (let k = 0; k < 64; k++) writeSync(fd, buf);
      ops += 64;
      now = process.hrtime.bigint();
    }
    const s = Number(now - t0) / 1e9;
    return { opsPerSec: ops / s, ops };
  } finally {
    closeSync(fd);
  }
}
