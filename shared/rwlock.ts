import { invariant } from './errors.js';

// One reader/writer lock for the whole code base (the master's namespace locks
// and the chunkserver's per-replica locks). FIFO among waiters, so a queued
// writer is not starved by a stream of readers and callers are served in the
// order they asked. A free lock is granted synchronously, so a caller that has
// just made the lock holds it before anyone else can queue.

export type LockMode = 'r' | 'w';

interface Waiter {
  mode: LockMode;
  grant: () => void;
}

export class RwLock {
  private readers = 0;
  private writer = false;
  private readonly waiters: Waiter[] = [];

  /** Neither held nor awaited (a lock table may drop it). */
  idle(): boolean {
    return this.readers === 0 && !this.writer && this.waiters.length === 0;
  }

  /** Undefined when granted at once; otherwise a promise that resolves once granted. */
  acquire(mode: LockMode): Promise<void> | undefined {
    if (this.waiters.length === 0 && this.canGrant(mode)) {
      this.take(mode);
      return undefined;
    }
    return new Promise((grant) => this.waiters.push({ mode, grant }));
  }

  release(mode: LockMode): void {
    if (mode === 'r') {
      invariant(this.readers > 0, 'read lock released but not held');
      this.readers--;
    } else {
      invariant(this.writer, 'write lock released but not held');
      this.writer = false;
    }
    while (this.waiters.length > 0 && this.canGrant(this.waiters[0]!.mode)) {
      const w = this.waiters.shift()!;
      this.take(w.mode);
      w.grant();
    }
  }

  /**
   * Runs fn holding the lock in mode, releasing it however fn ends. fn starts
   * on a later tick even when the lock is free, so a caller's synchronous code
   * after this call always runs first.
   */
  async with<T>(mode: LockMode, fn: () => Promise<T>): Promise<T> {
    await this.acquire(mode);
    try {
      return await fn();
    } finally {
      this.release(mode);
    }
  }

  shared<T>(fn: () => Promise<T>): Promise<T> {
    return this.with('r', fn);
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.with('w', fn);
  }

  private canGrant(mode: LockMode): boolean {
    return mode === 'w' ? !this.writer && this.readers === 0 : !this.writer;
  }

  private take(mode: LockMode): void {
    if (mode === 'w') this.writer = true;
    else this.readers++;
  }
}
