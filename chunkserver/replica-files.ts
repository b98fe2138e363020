import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { atomicTmpSuffix, writeFileAtomic } from '../shared/atomic-file.js';
import { GfsError } from '../shared/errors.js';
export { preadFull, pwriteFull } from '../shared/file-io.js';
import { checkHandle } from '../shared/handles.js';
import { timedFsync } from '../shared/metrics.js';

// File I/O of the replica store: where a replica's files are, full-length
// pread/pwrite, the crc file's byte format, the version meta file, the
// corrupt marker and the (coalesced) fsync of the chunks directory.
// <handle>.corrupt marks a replica found corrupt: it survives restarts until
// the master has the replica deleted.

export type FileKind = 'chunk' | 'crc' | 'meta' | 'corrupt';
export type FsyncKind = 'chunk' | 'meta' | 'dir';
/** Temp files of atomic replacements end in this; the start-up scan removes them. */
export const tmpSuffix = atomicTmpSuffix;

export function isErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as NodeJS.ErrnoException).code === code;
}

/** A full disk (or quota) as NO_SPACE (HTTP 507) naming the server; any other error unchanged. */
export function noSpaceError(e: unknown, serverId: string): unknown {
  if (!isErrno(e, 'ENOSPC') && !isErrno(e, 'EDQUOT')) return e;
  return new GfsError('NO_SPACE', `chunkserver ${serverId} is out of disk space: ${(e as Error).message}`, { server: serverId });
}

export async function unlinkIfPresent(file: string): Promise<void> {
  try {
    await fsp.unlink(file);
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
  }
}

export function crcBytes(crcs: Uint32Array, first: number, count: number): Buffer {
  // Explicit LE rather than viewing the Uint32Array's memory: the file format must not depend on host endianness.
  const out = Buffer.allocUnsafe(4 * count);
  for (let i = 0; i < count; i++) out.writeUInt32LE(crcs[first + i]!, 4 * i);
  return out;
}

/** Parses a crc file into the first `blocks` entries of crcs (entries it lacks are left as they are). */
export function readCrcTable(raw: Buffer, crcs: Uint32Array, blocks: number): void {
  const have = Math.min(blocks, Math.floor(raw.length / 4));
  for (let i = 0; i < have; i++) crcs[i] = raw.readUInt32LE(4 * i);
}

export class ReplicaFiles {
  private dirSyncCurrent: Promise<void> | undefined;
  private dirSyncNext: Promise<void> | undefined;

  constructor(
    readonly chunksDir: string,
    private readonly onFsync: ((kind: FsyncKind, seconds: number) => void) | undefined,
  ) {}

  file(handle: string, kind: FileKind): string {
    // Handles come from the wire: re-check here so no path is ever built from an unchecked string.
    return path.join(this.chunksDir, `${checkHandle(handle)}.${kind}`);
  }

  timed<T>(kind: FsyncKind, fn: () => Promise<T>): Promise<T> {
    const onFsync = this.onFsync;
    return timedFsync(onFsync && ((seconds) => onFsync(kind, seconds)), fn);
  }

  async createEmpty(handle: string, kind: FileKind): Promise<void> {
    // 'w' rather than 'wx': a leftover from a deletion interrupted by an I/O error must not block re-creation.
    const fh = await fsp.open(this.file(handle, kind), 'w');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /**
   * Removes every file of handle; meta first, so a crash part-way never
   * leaves a replica that comes back half-deleted, the corrupt marker last,
   * so a crash part-way never leaves a corrupt replica unmarked.
   */
  async removeAll(handle: string): Promise<void> {
    await unlinkIfPresent(this.file(handle, 'meta'));
    await unlinkIfPresent(this.file(handle, 'chunk'));
    await unlinkIfPresent(this.file(handle, 'crc'));
    await unlinkIfPresent(this.file(handle, 'corrupt'));
  }

  /** Replaces <handle>.meta atomically and durably. */
  writeMeta(handle: string, version: number): Promise<void> {
    return this.writeAtomic(handle, 'meta', JSON.stringify({ version }));
  }

  /** Marks handle corrupt, durably. */
  writeCorruptMark(handle: string, reason: string, atMs = Date.now()): Promise<void> {
    return this.writeAtomic(handle, 'corrupt', JSON.stringify({ reason, atMs }));
  }

  private writeAtomic(handle: string, kind: FileKind, data: string): Promise<void> {
    return writeFileAtomic(this.file(handle, kind), data, { syncDir: () => this.syncDir(), timeFsync: (fsync) => this.timed('meta', fsync) });
  }

  /**
   * fsyncs the chunks directory. Concurrent callers share one fsync when it
   * started after their change, so a burst of creates costs two fsyncs, not one each.
   */
  syncDir(): Promise<void> {
    if (this.dirSyncNext) return this.dirSyncNext;
    if (!this.dirSyncCurrent) return this.startDirSync();
    // The running fsync may have started before our rename: queue one more after it.
    const next = this.dirSyncCurrent
      .catch(() => {})
      .then(() => {
        this.dirSyncNext = undefined;
        return this.startDirSync();
      });
    this.dirSyncNext = next;
    return next;
  }

  /** Waits for directory fsyncs under way (at close). */
  async settle(): Promise<void> {
    await Promise.allSettled([this.dirSyncCurrent, this.dirSyncNext]);
  }

  private startDirSync(): Promise<void> {
    const p = (async () => {
      const fh = await fsp.open(this.chunksDir, 'r');
      try {
        await this.timed('dir', () => fh.sync());
      } finally {
        await fh.close();
      }
    })();
    this.dirSyncCurrent = p;
    const clear = (): void => {
      if (this.dirSyncCurrent === p) this.dirSyncCurrent = undefined;
    };
    p.then(clear, clear);
    return p;
  }
}
