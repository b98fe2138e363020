import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { invariant } from '../shared/errors.js';

// The replica store's cache of open file descriptors: one entry per replica
// (data file, and its crc file once a mutation or sync needed it), least
// recently used entries closed beyond a bound, never an entry in use.

interface FdEntry {
  data: Promise<FileHandle>;
  /** Opened lazily: only mutations and sync need it. */
  crc: Promise<FileHandle> | undefined;
  users: number;
  closed: boolean;
}

export class FdCache {
  /** LRU: Map iteration order is insertion order, touched entries are re-inserted. */
  private readonly fds = new Map<string, FdEntry>();
  private openFdCount = 0;

  constructor(
    private readonly maxOpenFiles: number,
    /** Where a replica's files are. */
    private readonly fileOf: (handle: string, kind: 'chunk' | 'crc') => string,
  ) {
    // Two fds per replica (data + crc), so fewer than two could never hold one replica open.
    invariant(Number.isSafeInteger(maxOpenFiles) && maxOpenFiles >= 2, 'maxOpenFiles must be an integer >= 2');
  }

  async with<T>(handle: string, needCrc: boolean, fn: (data: FileHandle, crc: FileHandle | undefined) => Promise<T>): Promise<T> {
    let e = this.fds.get(handle);
    if (e) {
      this.fds.delete(handle);
      this.fds.set(handle, e);
    } else {
      e = { data: this.openFd(this.fileOf(handle, 'chunk')), crc: undefined, users: 0, closed: false };
      this.fds.set(handle, e);
    }
    if (needCrc && !e.crc) e.crc = this.openFd(this.fileOf(handle, 'crc'));
    e.users++;
    this.evictIdle();
    try {
      let data: FileHandle;
      let crc: FileHandle | undefined;
      try {
        data = await e.data;
        crc = needCrc ? await e.crc : undefined;
      } catch (err) {
        // Never keep a failed open cached; the entry closes once its last user leaves.
        if (this.fds.get(handle) === e) this.fds.delete(handle);
        throw err;
      }
      return await fn(data, crc);
    } finally {
      e.users--;
      if (e.users === 0 && this.fds.get(handle) !== e) void this.closeEntry(e);
      else if (this.openFdCount > this.maxOpenFiles) this.evictIdle();
    }
  }

  /** Closes handle's fds (nobody may be using them: the caller holds the replica exclusively). */
  async drop(handle: string): Promise<void> {
    const e = this.fds.get(handle);
    if (!e) return;
    invariant(e.users === 0, 'dropping fds still in use');
    this.fds.delete(handle);
    await this.closeEntry(e);
  }

  async closeAll(): Promise<void> {
    const entries = [...this.fds.values()];
    this.fds.clear();
    await Promise.all(entries.map((e) => this.closeEntry(e)));
  }

  private openFd(file: string): Promise<FileHandle> {
    this.openFdCount++;
    const p = fsp.open(file, 'r+');
    p.catch(() => {
      this.openFdCount--;
    });
    return p;
  }

  /** Closes least recently used entries nobody is using until under the bound; entries in use are skipped, never closed. */
  private evictIdle(): void {
    if (this.openFdCount <= this.maxOpenFiles) return;
    for (const [handle, e] of this.fds) {
      if (this.openFdCount <= this.maxOpenFiles) break;
      if (e.users > 0) continue;
      this.fds.delete(handle);
      void this.closeEntry(e);
    }
  }

  private async closeEntry(e: FdEntry): Promise<void> {
    if (e.closed) return;
    e.closed = true;
    const all: Promise<FileHandle>[] = e.crc ? [e.data, e.crc] : [e.data];
    // Counted down before the close completes so eviction stops at once; a
    // failed open was already counted down by openFd.
    await Promise.allSettled(
      all.map(async (p) => {
        const fh = await p;
        this.openFdCount--;
        await fh.close();
      }),
    );
  }
}
