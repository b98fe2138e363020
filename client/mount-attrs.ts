// The mount's attribute cache: file and directory attributes from the master, kept for a short while.
import type { FuseStat } from 'fuse-native';
import { defaultModeOf, typeBits } from '../shared/file-types.js';
import type { EntryType, FileInfo, ListEntry } from '../shared/wire.js';
import type { GfsClient } from './client.js';

/**
 * How long a path this mount changed is only ever cached from an exact stat, never from a listing:
 * a listing's sizes come from chunkserver heartbeats (1 s apart by default) and may not show a write
 * this mount just made yet.
 */
export const listingDistrustMs = 30_000;
/** Bound on the paths remembered as recently changed (oldest dropped first). */
const maxChangedPaths = 16_384;

export interface Attr {
  type: EntryType;
  sizeBytes: number;
  replication: number;
  /** Permission bits (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  /** A symbolic link's target. */
  target?: string;
  /** A device node's number. */
  rdev?: number;
  /** Names of a hard-linked file (absent: 1). */
  nlink?: number;
}

/** The attributes of a stat answer or a listing entry (a master from before modes were kept: the old defaults). */
export function attrOf(i: FileInfo | ListEntry): Attr {
  return {
    type: i.type,
    sizeBytes: i.sizeBytes,
    replication: i.replication,
    mode: i.mode ?? defaultModeOf(i.type),
    uid: i.uid ?? 0,
    gid: i.gid ?? 0,
    atimeMs: i.atimeMs ?? i.mtimeMs,
    mtimeMs: i.mtimeMs,
    ctimeMs: i.ctimeMs ?? i.mtimeMs,
    ...(i.target !== undefined ? { target: i.target } : {}),
    ...(i.rdev !== undefined ? { rdev: i.rdev } : {}),
    ...(i.nlink !== undefined ? { nlink: i.nlink } : {}),
  };
}

/**
 * A file with several names is changed through any of them, and this cache knows it by one path:
 * its attributes are never kept (nor its size), so a write or unlink under another name shows at once.
 */
function cacheable(a: Attr): boolean {
  return (a.nlink ?? 1) <= 1;
}

export class AttrCache {
  private readonly attrs = new Map<string, { attr: Attr; atMs: number }>();
  private readonly statting = new Map<string, Promise<Attr>>();
  private attrGen = 0;
  /** Paths this mount changed, with when; a listing's attributes are not taken for them for listingDistrustMs. */
  private readonly changed = new Map<string, number>();
  /** When this mount last forgot everything: listings are not taken for listingDistrustMs after. */
  private changedAllAtMs = -Infinity;
  /** Trees this mount renamed, with when (bounded, oldest dropped first): nothing under them is taken from listings for listingDistrustMs. */
  private readonly changedTrees: { path: string; atMs: number }[] = [];
  /** Attributes taken from listings, and from stats (for the stats the mount saved). */
  readonly counts = { fromListing: 0, stats: 0 };

  constructor(
    private readonly client: GfsClient,
    private readonly cacheMs: number,
  ) {}

  /** Drops what is cached for path (everything when undefined): it changed. */
  forget(path?: string): void {
    this.attrGen++; // a stat already under way must not cache what it learned before this change
    const nowMs = Date.now();
    if (path === undefined) {
      this.attrs.clear();
      this.statting.clear();
      this.changedAllAtMs = nowMs;
    } else {
      this.attrs.delete(path);
      this.statting.delete(path);
      this.changed.delete(path);
      this.changed.set(path, nowMs);
      if (this.changed.size > maxChangedPaths) this.changed.delete(this.changed.keys().next().value!);
    }
  }

  /**
   * This mount appended to path, which now reaches at least endBytes: a cached entry takes that size
   * (and mtime now) instead of being dropped, so a stream of O_APPEND writes costs no stat each (the
   * kernel asks for the attributes again after every write). Others' appends show when it expires.
   */
  appended(path: string, endBytes: number): void {
    this.attrGen++; // a stat under way may predate this append
    this.statting.delete(path);
    const nowMs = Date.now();
    this.changed.delete(path);
    this.changed.set(path, nowMs);
    if (this.changed.size > maxChangedPaths) this.changed.delete(this.changed.keys().next().value!);
    const c = this.attrs.get(path);
    if (c) c.attr = { ...c.attr, sizeBytes: Math.max(c.attr.sizeBytes, endBytes), mtimeMs: nowMs, ctimeMs: nowMs };
  }

  /**
   * This mount created path and the master answered with its attributes. They are exact (a new file
   * has no data anywhere), so they are cached, and a later listing may fill them: unlike a path this
   * mount wrote, there is no write its listing could be older than. Saves the stat the kernel makes
   * right after every create.
   */
  created(path: string, info: FileInfo): void {
    this.attrGen++; // a stat or listing under way predates the file
    this.statting.delete(path);
    this.changed.delete(path);
    const attr = attrOf(info);
    if (cacheable(attr)) this.attrs.set(path, { attr, atMs: Date.now() });
    else this.attrs.delete(path);
  }

  /** Drops what is cached at or under each path (a renamed tree): it changed. */
  forgetTrees(paths: string[]): void {
    this.attrGen++;
    const nowMs = Date.now();
    const under = (p: string) => paths.some((t) => p === t || p.startsWith(t.endsWith('/') ? t : `${t}/`));
    for (const k of [...this.attrs.keys()]) if (under(k)) this.attrs.delete(k);
    for (const k of [...this.statting.keys()]) if (under(k)) this.statting.delete(k);
    for (const path of paths) this.changedTrees.push({ path, atMs: nowMs });
    while (this.changedTrees.length > 256) this.changedTrees.shift();
  }

  /** The generation to hand to fill(): a change between reading it and filling voids the fill. */
  get generation(): number {
    return this.attrGen;
  }

  /**
   * Attributes of a directory's entries from its listing (`ls -l` is then one listing, not a stat per
   * entry) where the listing is exact: directories and empty files, except paths this mount changed
   * lately. Files with data keep coming from stats (their listed size may lag a write by a heartbeat).
   */
  fill(entries: ListEntry[], generation: number): void {
    if (generation !== this.attrGen) return;
    const nowMs = Date.now();
    if (nowMs - this.changedAllAtMs < listingDistrustMs) return;
    while (this.changedTrees.length > 0 && nowMs - this.changedTrees[0]!.atMs >= listingDistrustMs) this.changedTrees.shift();
    const trees = this.changedTrees.map((t) => (t.path.endsWith('/') ? t.path : `${t.path}/`));
    for (const e of entries) {
      // A listing's size of a file with data comes from heartbeats and may lag a write another client
      // just made; only sizes that are exact are taken: directories, and files without chunks (empty).
      if (e.type === 'file' && e.chunkCount > 0) continue;
      if (trees.length > 0 && trees.some((t) => e.path.startsWith(t) || `${e.path}/` === t)) continue;
      const at = this.changed.get(e.path);
      if (at !== undefined) {
        if (nowMs - at < listingDistrustMs) continue;
        this.changed.delete(e.path);
      }
      const attr = attrOf(e);
      if (!cacheable(attr)) continue;
      this.attrs.set(e.path, { attr, atMs: nowMs });
      this.counts.fromListing++;
    }
  }

  /** The attributes of path: cached for cacheMs, and one master call at a time per path. */
  async stat(path: string): Promise<Attr> {
    const c = this.attrs.get(path);
    if (c && Date.now() - c.atMs < this.cacheMs) return c.attr;
    let p = this.statting.get(path);
    if (!p) {
      const atMs = Date.now();
      const gen = this.attrGen;
      this.counts.stats++;
      const q: Promise<Attr> = this.client.stat(path).then((i) => {
        const attr = attrOf(i);
        if (this.attrGen === gen && cacheable(attr)) this.attrs.set(path, { attr, atMs });
        return attr;
      });
      p = q;
      q.finally(() => {
        if (this.statting.get(path) === q) this.statting.delete(path);
      }).catch(() => undefined);
      this.statting.set(path, q);
    }
    return p;
  }
}

/**
 * The attributes the kernel sees. fuse-native carries times as whole milliseconds from 1970 on (the
 * nanoseconds within a millisecond are kept by the master and shown by `gfs stat`, not here; a time
 * before 1970 shows as 1970). nlink: a file's names (hard links), 2 for directories (gnulib's fts,
 * under find and du, trusts a directory's nlink only on file systems it knows, never on FUSE).
 */
export function toStat(a: Attr, size: number): FuseStat {
  const dir = a.type === 'dir';
  const bytes = dir ? 4096 : a.type === 'symlink' ? Buffer.byteLength(a.target ?? '') : a.type === 'file' ? size : 0;
  const ms = (t: number) => Math.max(0, t);
  return {
    mode: typeBits[a.type] | (a.mode & 0o7777),
    uid: a.uid,
    gid: a.gid,
    size: bytes,
    nlink: dir ? 2 : (a.nlink ?? 1),
    rdev: a.rdev ?? 0,
    blksize: 128 * 1024, // the mount's largest kernel request (max_write)
    blocks: Math.ceil(bytes / 512),
    atime: ms(a.atimeMs),
    mtime: ms(a.mtimeMs),
    ctime: ms(a.ctimeMs || a.mtimeMs),
  };
}
