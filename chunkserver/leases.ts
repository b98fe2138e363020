import { GfsError } from '../shared/errors.js';
import { primaryExpiryMs } from '../master/leases.js';
import type { LeaseConfirmAnswer, ReplicaRef } from '../shared/wire.js';

// The primary's own record of its leases. A lease is learned only by asking
// the master (lease confirm, or an extension in a heartbeat reply), and it
// runs from the moment the question was SENT, shortened by the drift bound,
// so it always ends before the master's record of it (see master/leases.ts).
// The primary refuses to act on a chunk once its lease has expired by its
// own clock.

export interface HeldLease {
  version: number;
  expiresAtMs: number;
  secondaries: ReplicaRef[];
  lastMutationAtMs: number;
}

export interface LeaseTableOptions {
  clock: () => number;
  driftFraction: number;
  /** Asks the master whether this server holds the lease on handle. */
  confirm: (handle: string) => Promise<LeaseConfirmAnswer>;
  /** Do not start a mutation with less lease than this left. */
  minRemainingMs: number;
  /** Counts mutations refused because the lease had run out, for tests and metrics. */
  onRefused?: (handle: string) => void;
}

export class LeaseTable {
  private readonly leases = new Map<string, HeldLease>();
  private readonly confirming = new Map<string, Promise<HeldLease>>();

  constructor(private readonly o: LeaseTableOptions) {}

  /** The lease on handle if it is valid now for at least minRemainingMs; asks the master otherwise. */
  async ensure(handle: string, version: number): Promise<HeldLease> {
    const held = this.leases.get(handle);
    if (held && held.version === version && held.expiresAtMs - this.o.clock() > this.o.minRemainingMs) return held;
    let p = this.confirming.get(handle);
    if (!p) {
      p = this.ask(handle).finally(() => this.confirming.delete(handle));
      this.confirming.set(handle, p);
    }
    const lease = await p;
    if (lease.version !== version) throw new GfsError('STALE_VERSION', `lease on ${handle} is for version ${lease.version}, not ${version}`);
    return lease;
  }

  private async ask(handle: string): Promise<HeldLease> {
    const sentAtMs = this.o.clock();
    let a: LeaseConfirmAnswer;
    try {
      a = await this.o.confirm(handle);
    } catch (e) {
      // No word from the master means no lease: refuse as a primary without
      // one (409, the client asks the master again), not as an unavailable server.
      this.o.onRefused?.(handle);
      const code = this.leases.has(handle) ? 'LEASE_EXPIRED' : 'NOT_PRIMARY';
      throw new GfsError(code, `no valid lease on ${handle}: cannot confirm it with the master (${(e as Error).message})`);
    }
    if (!a.primary) {
      this.leases.delete(handle);
      throw new GfsError('NOT_PRIMARY', `this server holds no lease on ${handle}`);
    }
    const lease: HeldLease = {
      version: a.version,
      expiresAtMs: primaryExpiryMs(sentAtMs, a.remainingMs, this.o.driftFraction),
      secondaries: a.secondaries,
      lastMutationAtMs: this.o.clock(),
    };
    if (lease.expiresAtMs - this.o.clock() <= this.o.minRemainingMs) throw new GfsError('LEASE_EXPIRED', `lease on ${handle} is about to expire`);
    this.leases.set(handle, lease);
    return lease;
  }

  /** Throws unless this server holds a lease on handle that is valid right now (checked again just before acting). */
  check(handle: string, version: number): void {
    const l = this.leases.get(handle);
    if (!l || l.version !== version) {
      this.o.onRefused?.(handle);
      throw new GfsError('NOT_PRIMARY', `no lease on ${handle} at version ${version}`);
    }
    if (l.expiresAtMs <= this.o.clock()) {
      this.o.onRefused?.(handle);
      throw new GfsError('LEASE_EXPIRED', `lease on ${handle} has expired`);
    }
    l.lastMutationAtMs = this.o.clock();
  }

  /** Leases worth extending: mutated within the last half lease and still held. */
  wantExtension(leaseMs: number): string[] {
    const now = this.o.clock();
    const out: string[] = [];
    for (const [h, l] of this.leases) {
      if (l.expiresAtMs <= now) {
        this.leases.delete(h);
        continue;
      }
      if (now - l.lastMutationAtMs < leaseMs / 2) out.push(h);
    }
    return out;
  }

  /** Extensions from a heartbeat reply; `sentAtMs` is when that heartbeat was sent. */
  extend(sentAtMs: number, granted: Record<string, number>): void {
    for (const [h, remainingMs] of Object.entries(granted)) {
      const l = this.leases.get(h);
      if (!l) continue;
      const e = primaryExpiryMs(sentAtMs, remainingMs, this.o.driftFraction);
      if (e > l.expiresAtMs) l.expiresAtMs = e;
    }
  }

  drop(handle: string): void {
    this.leases.delete(handle);
  }

  get(handle: string): HeldLease | undefined {
    return this.leases.get(handle);
  }

  held(): { handle: string; version: number; remainingMs: number }[] {
    const now = this.o.clock();
    return [...this.leases.entries()].filter(([, l]) => l.expiresAtMs > now).map(([handle, l]) => ({ handle, version: l.version, remainingMs: Math.round(l.expiresAtMs - now) }));
  }
}
