import type { Logger } from '../shared/log.js';
import type { ReplicaStore } from './store.js';

// Background scrubbing: verifies idle chunks against their checksums, one at
// a time, least recently verified first, so corruption of data nobody reads
// is still found (the store reports it to the master through onCorrupt).

export class Scrubber {
  private readonly lastVerifiedMs = new Map<string, number>();
  private readonly lastTouchedMs = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  scrubbed = 0;
  corruptFound = 0;

  constructor(
    private readonly store: ReplicaStore,
    private readonly intervalMs: number,
    /** A chunk mutated within this time is not idle: leave it for later. */
    private readonly idleMs: number,
    private readonly log: Logger,
  ) {}

  touched(handle: string): void {
    this.lastTouchedMs.set(handle, Date.now());
  }

  start(): void {
    if (this.intervalMs <= 0) return;
    this.timer = setInterval(() => void this.step(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async step(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const now = Date.now();
      const idle = this.store.list().filter((c) => now - (this.lastTouchedMs.get(c.handle) ?? 0) >= this.idleMs && c.version > 0);
      idle.sort((a, b) => (this.lastVerifiedMs.get(a.handle) ?? 0) - (this.lastVerifiedMs.get(b.handle) ?? 0));
      const next = idle[0];
      if (!next) return;
      const ok = await this.store.verify(next.handle).catch(() => true); // deleted meanwhile: nothing to report
      this.lastVerifiedMs.set(next.handle, Date.now());
      this.scrubbed++;
      if (!ok) {
        this.corruptFound++;
        this.log.warn({ handle: next.handle }, 'scrubber found a corrupt replica');
      }
    } finally {
      this.running = false;
    }
  }
}
