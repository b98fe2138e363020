// The state of one open file in the mount: its write buffer, writes in flight and read-ahead windows.

export interface Piece {
  start: number;
  end: number;
  done: Promise<void>;
}

export interface Window {
  start: number;
  size: number;
  data: Promise<Buffer>;
  /** Set once data resolved. */
  got?: Buffer;
  /** When it first served a read: it is trusted for readTtlMs from then on. */
  usedAtMs?: number;
}

export interface Handle {
  id: number;
  path: string;
  append: boolean;
  /** Positional write buffer: bytes [start, start+len) of the piece [start, start+cap); buf grows as needed. */
  wbuf?: { start: number; cap: number; buf: Buffer; len: number };
  inflight: Set<Piece>;
  /** First error of a background write, reported by the next write/flush. */
  error?: unknown;
  /** Written (or appended) since the last sync. */
  dirty: boolean;
  /** Chunk indexes written since the last sync (flush syncs only these). */
  dirtyFirst: number;
  dirtyLast: number;
  /** The file size last learned for reading, and when. */
  knownSize?: { sizeBytes: number; atMs: number };
  /** Unlinked while open (the kernel then names it "-"). */
  unlinked?: boolean;
  /**
   * Written through since the file's times were last set: flush moves mtime (and ctime) to now, as a
   * write does on a local file system. Cleared by an explicit utimens on the file (tar's times win).
   */
  timesDue?: boolean;
  /** Read-ahead windows, in file order. */
  windows: Window[];
  lastReadEnd: number;
}

/** How long a read-ahead window, and the size a handle learned for reading, are trusted. */
export const readTtlMs = 1_000;
