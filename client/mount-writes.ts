// The mount's write buffers: positional writes gathered per handle into chunk-aligned pieces, record appends, flush.
import type { GfsClient } from './client.js';
import type { AttrCache } from './mount-attrs.js';
import type { Handle, Piece } from './mount-handle.js';
import { RecordAppender } from './appender.js';

const KiB = 1024;

/** What the mount's parts share: the client, the attribute cache, the chunk size learned at init. */
export interface MountShared {
  readonly client: GfsClient;
  readonly attrs: AttrCache;
  readonly chunkSizeBytes: number;
}

/** Throws (once) the first failure of a handle's background writes. */
export function throwPendingError(h: Handle): void {
  if (h.error === undefined) return;
  const e = h.error;
  h.error = undefined;
  throw e;
}

/** Paths with an appender kept at most (idle ones beyond it are dropped). */
const maxAppenders = 256;

export class WriteBuffers {
  /** Per path, the O_APPEND writes of every shell and handle, batched together (client/appender.ts, unframed). */
  private readonly appenders = new Map<string, RecordAppender>();

  constructor(private readonly m: MountShared) {}

  private appenderFor(path: string): RecordAppender {
    let a = this.appenders.get(path);
    if (a) return a;
    if (this.appenders.size >= maxAppenders) for (const [p, x] of this.appenders) if (x.idle) this.appenders.delete(p);
    a = new RecordAppender(this.m.client, path, { framed: false, maxInFlight: 2 });
    this.appenders.set(path, a);
    return a;
  }

  markDirty(h: Handle, firstIndex: number, lastIndex: number): void {
    h.dirty = true;
    h.dirtyFirst = Math.min(h.dirtyFirst, firstIndex);
    h.dirtyLast = Math.max(h.dirtyLast, lastIndex);
  }

  /** End of the write piece that holds `off`: pieces never straddle a chunk. */
  private pieceEnd(off: number): number {
    const cs = this.m.chunkSizeBytes;
    const chunkStart = Math.floor(off / cs) * cs;
    const pb = Math.min(this.m.client.pieceBytes, cs);
    return chunkStart + Math.min(cs, (Math.floor((off - chunkStart) / pb) + 1) * pb);
  }

  /** Sends the handle's buffered piece in the background; a failure is kept for the next write or flush. */
  sendBuffer(h: Handle): void {
    const w = h.wbuf;
    h.wbuf = undefined;
    if (!w || w.len === 0) return;
    const start = w.start;
    const data = w.buf.subarray(0, w.len);
    const end = start + data.length;
    const overlapping = [...h.inflight].filter((x) => x.start < end && start < x.end).map((x) => x.done);
    const path = h.path;
    const cs = this.m.chunkSizeBytes;
    const piece: Piece = { start, end, done: Promise.resolve() };
    this.markDirty(h, Math.floor(start / cs), Math.floor(start / cs));
    piece.done = (async () => {
      // Overlapping earlier writes land first.
      if (overlapping.length) await Promise.allSettled(overlapping);
      await this.m.client.writePiece(path, Math.floor(start / cs), start % cs, data);
    })()
      .catch((e) => {
        h.error ??= e;
      })
      .finally(() => {
        h.inflight.delete(piece);
        this.m.attrs.forget(path);
      });
    h.inflight.add(piece);
  }

  /** A positional write: gathered into the handle's piece, which is sent once full. */
  async write(h: Handle, buf: Buffer, len: number, pos: number): Promise<number> {
    if (h.wbuf && h.wbuf.start + h.wbuf.len !== pos) this.sendBuffer(h);
    let at = 0;
    while (at < len) {
      if (!h.wbuf) {
        const start = pos + at;
        const cap = this.pieceEnd(start) - start;
        h.wbuf = { start, cap, buf: Buffer.allocUnsafe(Math.min(cap, Math.max(len - at, 256 * KiB))), len: 0 };
      }
      const w = h.wbuf;
      const n = Math.min(len - at, w.cap - w.len);
      if (w.len + n > w.buf.length) {
        // Grow geometrically up to the piece size: small files do not hold whole pieces.
        const bigger = Buffer.allocUnsafe(Math.min(w.cap, Math.max(w.len + n, w.buf.length * 4)));
        w.buf.copy(bigger, 0, 0, w.len);
        w.buf = bigger;
      }
      buf.copy(w.buf, w.len, at, at + n);
      w.len += n;
      at += n;
      if (w.len === w.cap) this.sendBuffer(h);
    }
    // Bounded memory: at most `concurrency` pieces in flight per handle.
    while (h.inflight.size >= this.m.client.concurrency) await Promise.race([...h.inflight].map((x) => x.done));
    return len;
  }

  /** A write to an O_APPEND handle (after the file's buffered writes went out): record appends of exactly its bytes. */
  async append(h: Handle, data: Buffer): Promise<number> {
    // One write() is one record; a write larger than the record limit (a quarter chunk) is split.
    const cs = this.m.chunkSizeBytes;
    const limit = Math.floor(cs / 4);
    for (let at = 0; at < data.length; at += limit) {
      // Appends to the same file from other shells that arrive meanwhile go in the same request.
      const piece = data.subarray(at, at + limit);
      const off = await this.appenderFor(h.path).append(piece);
      this.markDirty(h, Math.floor(off / cs), Math.floor(off / cs));
      this.m.attrs.appended(h.path, off + piece.length);
    }
    return data.length;
  }

  /** Sends what the handle buffers, waits for its writes, reports their first failure; with sync, makes the chunks it wrote durable. */
  async flushHandle(h: Handle, sync: boolean): Promise<void> {
    this.sendBuffer(h);
    await Promise.allSettled([...h.inflight].map((x) => x.done));
    throwPendingError(h);
    if (h.unlinked) h.dirty = false; // gone: nothing left to make durable
    if (sync && h.dirty) {
      const range = h.dirtyLast >= h.dirtyFirst ? { startIndex: h.dirtyFirst, count: h.dirtyLast - h.dirtyFirst + 1 } : undefined;
      h.dirtyFirst = Infinity;
      h.dirtyLast = -1;
      h.dirty = false;
      try {
        await this.m.client.sync(h.path, range);
      } catch (e) {
        h.dirty = true;
        if (range) this.markDirty(h, range.startIndex, range.startIndex + range.count - 1);
        throw e;
      }
    }
  }
}
