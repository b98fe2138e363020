// The mount's reads: per-handle read-ahead windows fetched straight from the replicas.
import type { Handle, Window } from './mount-handle.js';
import { readTtlMs } from './mount-handle.js';
import type { MountShared } from './mount-writes.js';

const KiB = 1024;

export class ReadAhead {
  constructor(
    private readonly m: MountShared,
    private readonly readAheadBytes: number,
  ) {}

  /** Forgets every handle's windows and learned size for path: it changed. */
  drop(handles: Iterable<Handle>, path: string): void {
    for (const h of handles) {
      if (h.path !== path) continue;
      h.windows = [];
      h.knownSize = undefined;
    }
  }

  /**
   * Bytes [start, start+size) of path, short at the end of the file. Like
   * GfsClient.read, but the file's size is learned again only when the
   * window reaches past the size last learned for this handle or that is
   * older than readTtlMs, so a sequential reader costs no round trip for it
   * per window.
   */
  private async readRange(h: Handle, path: string, start: number, size: number): Promise<Buffer> {
    let known = h.knownSize;
    if (!known || start + size > known.sizeBytes || Date.now() - known.atMs > readTtlMs) {
      const atMs = Date.now();
      // Past what the client knows, it asks a replica of the last chunk (the master only when that chunk is full).
      const f = await this.m.client.extent(path, start + size);
      known = h.knownSize = { sizeBytes: f.sizeBytes, atMs };
    }
    const end = Math.min(start + size, known.sizeBytes);
    if (end <= start) return Buffer.alloc(0);
    const cs = this.m.chunkSizeBytes;
    // Locations for this window and those a sequential reader will want next, in one master call.
    const first = Math.floor(start / cs);
    await this.m.client.locate(path, first, Math.floor((end - 1) / cs) - first + 1 + Math.ceil((this.m.client.concurrency * this.readAheadBytes) / cs));
    const out = Buffer.alloc(end - start);
    // readPiece answers whole pieces (holes as zeros) except in the last chunk, whose replicas may hold less than the size said: the data ends there.
    let dataEnd = out.length;
    const jobs: Promise<void>[] = [];
    for (let at = start; at < end; ) {
      const index = Math.floor(at / cs);
      const inChunk = at % cs;
      const len = Math.min(end - at, cs - inChunk, this.m.client.pieceBytes);
      const to = at - start;
      jobs.push(
        this.m.client.readPiece(path, index, inChunk, len).then((b) => {
          b.copy(out, to, 0, Math.min(b.length, len));
          if (b.length < len) dataEnd = Math.min(dataEnd, to + b.length);
        }),
      );
      at += len;
    }
    await Promise.all(jobs);
    return dataEnd === out.length ? out : out.subarray(0, dataEnd);
  }

  private fetch(h: Handle, path: string, start: number, size: number): Window {
    const w: Window = { start, size, data: this.readRange(h, path, start, size) };
    w.data.then(
      (b) => (w.got = b),
      () => undefined,
    );
    return w;
  }

  /** Serves a read from the handle's windows, fetching those missing, and keeps read-ahead going for a sequential reader. */
  async read(h: Handle, out: Buffer, len: number, pos: number): Promise<number> {
    const path = h.path;
    const sequential = pos === h.lastReadEnd || pos === 0;
    const win = this.readAheadBytes;
    const now = Date.now();
    h.windows = h.windows.filter((w) => (w.usedAtMs === undefined || now - w.usedAtMs < readTtlMs) && w.start + w.size > pos - win);
    let done = 0;
    const fetchedNow = new Set<Window>();
    while (done < len) {
      const at = pos + done;
      let w = h.windows.find((x) => at >= x.start && at < x.start + x.size);
      if (!w) {
        w = this.fetch(h, path, at, sequential ? win : Math.max(len - done, 128 * KiB));
        fetchedNow.add(w);
        h.windows = h.windows.filter((x) => x.start > at);
        h.windows.unshift(w);
      }
      let data: Buffer;
      try {
        data = await w.data;
      } catch (e) {
        h.windows = h.windows.filter((x) => x !== w);
        throw e;
      }
      const off = at - w.start;
      if (off >= data.length) {
        // Past what existed when fetched: end of file then, maybe not now.
        h.windows = h.windows.filter((x) => x !== w);
        if (!fetchedNow.has(w)) continue;
        break;
      }
      w.usedAtMs ??= now;
      const n = data.copy(out, done, off, Math.min(data.length, off + (len - done)));
      done += n;
      if (data.length < w.size && off + n >= data.length) {
        // A short window ends at the then end of the file: fetch again next time.
        h.windows = h.windows.filter((x) => x !== w);
        break;
      }
    }
    h.lastReadEnd = pos + done;
    if (sequential && done > 0) this.readAhead(h, path, pos + done);
    return done;
  }

  /** Keeps up to `depth` full windows ahead of a sequential reader in flight. */
  private readAhead(h: Handle, path: string, from: number, depth = this.m.client.concurrency): void {
    const win = this.readAheadBytes;
    let last = h.windows.find((x) => from >= x.start && from < x.start + x.size);
    if (!last) return;
    for (let i = 0; i < depth; i++) {
      if (last.got && last.got.length < last.size) return; // end of file
      const next: Window | undefined = h.windows.find((x) => x.start === last!.start + last!.size);
      if (next) {
        last = next;
        continue;
      }
      const w = this.fetch(h, path, last.start + last.size, win);
      w.data.catch(() => undefined);
      h.windows.push(w);
      last = w;
    }
  }
}
