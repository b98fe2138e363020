import { invariant } from '../shared/errors.js';
import { RwLock, type LockMode } from '../shared/rwlock.js';
import { ancestorsOf } from '../shared/paths.js';

// Namespace locks, as in GFS: a mutation takes read locks on every ancestor
// of the paths it touches and a read or write lock on each leaf. Two creates
// in one directory only share read locks on the directory, so they proceed
// in parallel; a snapshot (write lock on /a) excludes a create of /a/x (read
// lock on /a). Locks are taken in one global order (sorted path strings) so
// no two operations can deadlock. Locks exist only while held or awaited.
//
// A hard-linked node has several paths, so a path lock alone would let two of
// its names change its chunk list at once. Changes of a file's content
// (allocation, copy-on-write, truncation) and snapshots of trees holding
// linked files also lock the node itself: a key `#<ino>`, which has no
// ancestors and sorts before every path, so the one global order still holds.

export type { LockMode };

export interface LockRequest {
  path: string;
  mode: LockMode;
}

/** Lock set for an operation on `leaves`: read locks on all their ancestors, the given mode on each leaf. */
export function lockSet(leaves: { path: string; mode: LockMode }[]): LockRequest[] {
  const modes = new Map<string, LockMode>();
  const want = (path: string, mode: LockMode) => {
    if (modes.get(path) !== 'w') modes.set(path, mode);
  };
  for (const leaf of leaves) if (!isInoKey(leaf.path)) for (const a of ancestorsOf(leaf.path)) want(a, 'r');
  for (const leaf of leaves) want(leaf.path, leaf.mode);
  return [...modes.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([path, mode]) => ({ path, mode }));
}

/** The lock key of a hard-linked node (its ino). */
export function inoKey(ino: number): string {
  return `#${ino}`;
}

function isInoKey(key: string): boolean {
  return key.startsWith('#');
}

export class LockManager {
  private readonly locks = new Map<string, RwLock>();

  get held(): number {
    return this.locks.size;
  }

  /** Acquires every lock (in sorted order) and returns the function that releases them all. */
  async acquire(leaves: { path: string; mode: LockMode }[]): Promise<() => void> {
    const set = lockSet(leaves);
    const taken: LockRequest[] = [];
    for (const req of set) {
      let lock = this.locks.get(req.path);
      if (!lock) {
        lock = new RwLock();
        this.locks.set(req.path, lock);
      }
      const wait = lock.acquire(req.mode);
      if (wait) await wait;
      taken.push(req);
    }
    let released = false;
    return () => {
      invariant(!released, 'locks released twice');
      released = true;
      for (const req of taken.reverse()) {
        const lock = this.locks.get(req.path);
        invariant(lock, `lock for ${req.path} vanished while held`);
        lock.release(req.mode);
        if (lock.idle()) this.locks.delete(req.path);
      }
    };
  }

  /**
   * Locks `leaves` and the nodes `inosNow()` names (the hard-linked nodes the operation changes), read
   * before locking and again once locked: a link made in between changes them, and then it tries again.
   * Once the paths are held no new link of them can be made (a link locks its source and its
   * destination's ancestors), so the second try settles it.
   */
  async acquireWithInos(leaves: { path: string; mode: LockMode }[], inosNow: () => number[]): Promise<() => void> {
    for (let attempt = 0; ; attempt++) {
      const inos = [...new Set(inosNow())].sort((a, b) => a - b);
      const release = await this.acquire([...leaves, ...inos.map((ino) => ({ path: inoKey(ino), mode: 'w' as const }))]);
      const again = [...new Set(inosNow())].sort((a, b) => a - b);
      if (again.length === inos.length && again.every((v, i) => v === inos[i])) return release;
      release();
      invariant(attempt < 3, `hard links of ${leaves.map((l) => l.path).join(', ')} kept changing while their paths were locked`);
    }
  }

  async with<T>(leaves: { path: string; mode: LockMode }[], fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(leaves);
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
