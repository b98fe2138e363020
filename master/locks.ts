import { invariant } from '../shared/errors.js';
import { RwLock, type LockMode } from '../shared/rwlock.js';
import { ancestorsOf } from '../shared/paths.js';

// Namespace locks, as in GFS: a mutation takes read locks on every ancestor
// of the paths it touches and a read or write lock on each leaf. Two creates
// in one directory only share read locks on the directory, so they proceed
// in parallel; a snapshot (write lock on /a) excludes a create of /a/x (read
// lock on /a). Locks are taken in one global order (sorted path strings) so
// no two operations can deadlock. Locks exist only while held or awaited.

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
  for (const leaf of leaves) for (const a of ancestorsOf(leaf.path)) want(a, 'r');
  for (const leaf of leaves) want(leaf.path, leaf.mode);
  return [...modes.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([path, mode]) => ({ path, mode }));
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

  async with<T>(leaves: { path: string; mode: LockMode }[], fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(leaves);
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
