// The mount's attribute cache: file and directory attributes from the master, kept for a short while.
import type { FuseStat } from 'fuse-native';
import type { GfsClient } from './client.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const KiB = 1024;

export interface Attr {
  type: 'file' | 'dir';
  sizeBytes: number;
  replication: number;
  mtimeMs: number;
  ctimeMs: number;
}

export class AttrCache {
  private readonly attrs = new Map<string, { attr: Attr; atMs: number }>();
  private readonly statting = new Map<string, Promise<Attr>>();
  private attrGen = 0;

  constructor(
    private readonly client: GfsClient,
    private readonly cacheMs: number,
  ) {}

  /** Drops what is cached for path (everything when undefined): it changed. */
  forget(path?: string): void {
    this.attrGen++; // a stat already under way must not cache what it learned before this change
    if (path === undefined) {
      this.attrs.clear();
      this.statting.clear();
    } else {
      this.attrs.delete(path);
      this.statting.delete(path);
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
      const q: Promise<Attr> = this.client.stat(path).then((i) => {
        const attr: Attr = { type: i.type, sizeBytes: i.sizeBytes, replication: i.replication, mtimeMs: i.mtimeMs, ctimeMs: i.ctimeMs };
        if (this.attrGen === gen) this.attrs.set(path, { attr, atMs });
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

/** The attributes the kernel sees: gfs has no owners or permissions, so the mount's user owns everything. */
export function toStat(a: Attr, size: number): FuseStat {
  const dir = a.type === 'dir';
  return {
    mode: dir ? S_IFDIR | 0o755 : S_IFREG | 0o644,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    size: dir ? 4096 : size,
    nlink: dir ? 2 : 1,
    blksize: 128 * KiB,
    blocks: Math.ceil((dir ? 4096 : size) / 512),
    atime: a.mtimeMs,
    mtime: a.mtimeMs,
    ctime: a.ctimeMs || a.mtimeMs,
  };
}
