import { GfsError } from '../shared/errors.js';
import { primaryExpiryMs } from '../shared/lease-time.js';
import { unsafe } from '../shared/unsafe.js';
import type { LeaseConfirmAnswer, ReplicaRef } from '../shared/wire.js';

// The primary's own record of its leases. A lease is learned from the master:
// handed over with the grant (install, timed from when the version order that
// named this server arrived, which precedes the grant), or by asking (lease
// confirm, or an extension in a heartbeat reply), and it runs from the moment
// the question was SENT, shortened by the drift bound,
// so it always ends before the master's record of it (see master/leases.ts).
// The primary refuses to act on a chunk once its lease has expired by its
// own clock.
//
// Primary log: the server's own record of when it acted as primary, per
// (handle, version): the wall-clock interval [firstActMs, lastActMs] in which
// it ordered mutations, and the lease expiry it believed in when it last did
// (GET /debug/primary-log). The partition suite compares these records
// across servers: two servers acting for one chunk at overlapping times is
// a violation of "never two primaries at once".
//
// Deliberately broken option (shared/unsafe.ts): GFS_UNSAFE=primary-ignores-lease
// makes a held lease never expire here, so a primary keeps acting on it.

const ignoresLease = unsafe('primary-ignores-lease');

export interface PrimaryActs {
  handle: string;
  version: number;
  /** Wall clock (Date.now()) of the first and last mutation ordered as primary. */
  firstActMs: number;
  lastActMs: number;
  acts: number;
  /** The lease expiry this server believed in at its last act, as wall clock. */
  believedExpiryMs: number;
}

/** A bounded record of primary activity, one entry per (handle, version), oldest dropped first. */
export class PrimaryLog {
  private readonly entries = new Map<string, PrimaryActs>();

  constructor(private readonly maxEntries = 10_000) {}

  note(handle: string, version: number, believedExpiryMs: number, nowMs = Date.now()): void {
    const key = `${handle}@${version}`;
    const e = this.entries.get(key);
    if (e) {
      e.lastActMs = Math.max(e.lastActMs, nowMs);
      e.acts++;
      e.believedExpiryMs = believedExpiryMs;
      return;
    }
    this.entries.set(key, { handle, version, firstActMs: nowMs, lastActMs: nowMs, acts: 1, believedExpiryMs });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  list(): PrimaryActs[] {
    return [...this.entries.values()].map((e) => ({ ...e }));
  }
}

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
  /** Bumped by revoke(): a confirmation asked before a revocation must not bring the lease back. */
  private readonly epochs = new Map<string, number>();
  readonly primaryLog = new PrimaryLog();

  constructor(private readonly o: LeaseTableOptions) {}

  /** This server's lease clock (monotonic ms). */
  now(): number {
    return this.o.clock();
  }

  /** Whether l has run out (with at least minMs left required); never, in the broken primary-ignores-lease build. */
  private expired(l: HeldLease, minMs = 0): boolean {
    return !ignoresLease && l.expiresAtMs - this.o.clock() <= minMs;
  }

  /** Called by the mutator each time it orders a mutation as primary, right after check(). */
  acted(handle: string, version: number): void {
    const l = this.leases.get(handle);
    const remaining = l ? l.expiresAtMs - this.o.clock() : 0;
    this.primaryLog.note(handle, version, Date.now() + Math.round(remaining));
  }

  /** The lease on handle if it is valid now for at least minRemainingMs; asks the master otherwise. */
  async ensure(handle: string, version: number): Promise<HeldLease> {
    const held = this.leases.get(handle);
    if (held && held.version === version && !this.expired(held, this.o.minRemainingMs)) return held;
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
    const epoch = this.epochs.get(handle) ?? 0;
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
    if ((this.epochs.get(handle) ?? 0) !== epoch) throw new GfsError('NOT_PRIMARY', `lease on ${handle} was revoked`);
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

  /** When this server heard it would be primary of handle at a version (the version order said so), for install(). */
  private readonly offers = new Map<string, { version: number; atMs: number; epoch: number }>();

  /** The master's version order named this server primary-to-be: remember when (its lease can only start later). */
  offered(handle: string, version: number, atMs = this.o.clock()): void {
    this.offers.set(handle, { version, atMs, epoch: this.epochs.get(handle) ?? 0 });
    // Bounded: an offer matters only until its lease arrives, moments later.
    if (this.offers.size > 10_000) this.offers.delete(this.offers.keys().next().value!);
  }

  /**
   * The lease the master granted after that version order: held from the moment the order
   * arrived (before the master started the lease), shortened by the drift bound, as if confirmed
   * then. False (and nothing held) without a matching offer, or after a revocation since.
   */
  install(handle: string, version: number, secondaries: ReplicaRef[], remainingMs: number): boolean {
    const offer = this.offers.get(handle);
    this.offers.delete(handle);
    if (!offer || offer.version !== version || offer.epoch !== (this.epochs.get(handle) ?? 0)) return false;
    const held = this.leases.get(handle);
    if (held && held.version > version) return false;
    const lease: HeldLease = { version, expiresAtMs: primaryExpiryMs(offer.atMs, remainingMs, this.o.driftFraction), secondaries, lastMutationAtMs: this.o.clock() };
    if (this.expired(lease, this.o.minRemainingMs)) return false;
    this.leases.set(handle, lease);
    return true;
  }

  /** The master took the lease back (snapshot): stop acting as primary at once, and ignore answers asked before. */
  revoke(handle: string): void {
    this.leases.delete(handle);
    this.epochs.set(handle, (this.epochs.get(handle) ?? 0) + 1);
    // Bounded: epochs only matter while a confirmation may be in flight.
    if (this.epochs.size > 100_000) this.epochs.delete(this.epochs.keys().next().value!);
  }

  /** Throws unless this server holds a lease on handle that is valid right now (checked again just before acting). */
  check(handle: string, version: number): void {
    const l = this.leases.get(handle);
    if (!l || l.version !== version) {
      this.o.onRefused?.(handle);
      throw new GfsError('NOT_PRIMARY', `no lease on ${handle} at version ${version}`);
    }
    if (this.expired(l)) {
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
      if (this.expired(l)) {
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
