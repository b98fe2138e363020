// Lease decisions: pure functions over the master's view, with the clock
// passed in (monotonic milliseconds). The I/O (logging the version bump,
// telling replicas) lives in master/master.ts.
//
// Safety argument (invariant 1, never two primaries at once):
// - The master records a lease's expiry as (its clock when it recorded the
//   grant or extension) + leaseMs. A primary learns of its lease only by
//   asking (lease confirm, heartbeat) and counts the remaining time from the
//   moment it SENT the question, minus a drift margin, so the primary's
//   expiry always falls before the master's in real time, whatever the delay.
// - A new primary is chosen only once the old lease has expired by the
//   master's clock; a primary that does not answer is simply waited out.
// - A restarted master does not know which leases its previous incarnation
//   granted, so it grants none until leaseMs after it started.
//
// Deliberately broken option (shared/unsafe.ts): GFS_UNSAFE=master-no-lease-wait
// makes decideLease treat a lease whose primary is not among the live
// up-to-date replicas as expired, so the master grants a new lease without
// waiting out the old one. For proving the partition suite catches it.
import { unsafe } from '../../shared/unsafe.js';

const noLeaseWait = unsafe('master-no-lease-wait');

export interface Lease {
  primary: string;
  /** Replicas that took the lease's version, besides the primary. */
  secondaries: string[];
  version: number;
  expiresAtMs: number;
}

export type LeaseDecision =
  | { kind: 'current'; lease: Lease }
  | { kind: 'wait'; untilMs: number; reason: string }
  | { kind: 'grant'; primary: string }
  /** The holder is fine but a secondary is gone: the same primary gets a new lease with a new version. */
  | { kind: 'regrant'; primary: string }
  | { kind: 'no-replicas' };

export interface LeaseInput {
  nowMs: number;
  lease: Lease | undefined;
  /** Live replicas holding the master's current version, best primary candidate first. */
  upToDate: string[];
  /** No grant before this time (a restarted master waits out its predecessor's leases). */
  grantsAllowedAtMs: number;
  /** The chunk's version by the master. */
  version: number;
}

export function decideLease(i: LeaseInput): LeaseDecision {
  const held = i.lease !== undefined && i.lease.expiresAtMs > i.nowMs && !(noLeaseWait && !i.upToDate.includes(i.lease.primary));
  if (held && i.lease) {
    if (i.lease.version === i.version && i.upToDate.includes(i.lease.primary)) {
      // A secondary that died or went stale would fail every mutation until the
      // lease ran out. Granting the same primary a new version is safe (still
      // one primary) and leaves the lost replica behind as stale.
      if (i.lease.secondaries.some((s) => !i.upToDate.includes(s))) return { kind: 'regrant', primary: i.lease.primary };
      return { kind: 'current', lease: i.lease };
    }
    // The holder is dead or partitioned, or the lease was revoked by a
    // version change: it may still act until expiry, so wait it out.
    return { kind: 'wait', untilMs: i.lease.expiresAtMs, reason: 'previous lease may still be held' };
  }
  if (i.nowMs < i.grantsAllowedAtMs) return { kind: 'wait', untilMs: i.grantsAllowedAtMs, reason: 'master restarted: waiting out leases it may have granted before' };
  if (i.upToDate.length === 0) return { kind: 'no-replicas' };
  return { kind: 'grant', primary: i.upToDate[0]! };
}

/** A lease extension (asked by the primary itself): only the current holder, only before expiry. */
export function extendLease(lease: Lease | undefined, primary: string, nowMs: number, leaseMs: number, version: number): Lease | undefined {
  if (!lease || lease.primary !== primary || lease.expiresAtMs <= nowMs || lease.version !== version) return undefined;
  return { ...lease, expiresAtMs: Math.max(lease.expiresAtMs, nowMs + leaseMs) };
}

/** One lease as the master granted it, in wall-clock ms (for GET /debug/leases and the partition suite). */
export interface GrantRecord {
  handle: string;
  version: number;
  primary: string;
  secondaries: string[];
  grantedAtMs: number;
  /** The expiry by the master's reckoning, moved on by each extension. */
  expiresAtMs: number;
  extensions: number;
}

/** A bounded record of lease grants, one entry per (handle, version), oldest dropped first. */
export class GrantLog {
  private readonly entries = new Map<string, GrantRecord>();
  /** handle -> key of its latest grant. */
  private readonly latest = new Map<string, string>();

  /** `wallMs` is the wall clock the records are kept in (the runtime passes Date.now; tests a fake one). */
  constructor(
    private readonly maxEntries: number,
    private readonly wallMs: () => number,
  ) {}

  granted(handle: string, version: number, primary: string, secondaries: string[], remainingMs: number, nowWallMs = this.wallMs()): void {
    const key = `${handle}@${version}`;
    // A new lease for the same primary (a regrant at a new version) ends its previous one.
    const prev = this.entries.get(this.latest.get(handle) ?? '');
    if (prev && prev.primary === primary && prev.version < version && prev.expiresAtMs > nowWallMs) prev.expiresAtMs = nowWallMs;
    this.latest.set(handle, key);
    this.entries.delete(key);
    this.entries.set(key, { handle, version, primary, secondaries, grantedAtMs: nowWallMs, expiresAtMs: nowWallMs + Math.round(remainingMs), extensions: 0 });
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value!;
      const e = this.entries.get(oldest)!;
      if (this.latest.get(e.handle) === oldest) this.latest.delete(e.handle);
      this.entries.delete(oldest);
    }
  }

  extended(handle: string, version: number, remainingMs: number, nowWallMs = this.wallMs()): void {
    const e = this.entries.get(`${handle}@${version}`);
    if (!e) return;
    e.expiresAtMs = Math.max(e.expiresAtMs, nowWallMs + Math.round(remainingMs));
    e.extensions++;
  }

  /** The lease ended early: its primary gave it back (revocation). */
  revoked(handle: string, version: number, nowWallMs = this.wallMs()): void {
    const e = this.entries.get(`${handle}@${version}`);
    if (e && e.expiresAtMs > nowWallMs) e.expiresAtMs = nowWallMs;
  }

  /** The primary of the handle's latest grant, if it is still remembered. */
  latestPrimary(handle: string): string | undefined {
    const key = this.latest.get(handle);
    return key === undefined ? undefined : this.entries.get(key)?.primary;
  }

  list(): GrantRecord[] {
    return [...this.entries.values()].map((e) => ({ ...e, secondaries: [...e.secondaries] }));
  }
}

/** The master's lease table. A lease deleted from it (revoked: its primary gave it back) ends early in the grant log too. */
export class LeaseMap extends Map<string, Lease> {
  constructor(private readonly log: GrantLog) {
    super();
  }

  override delete(handle: string): boolean {
    const l = this.get(handle);
    if (l) this.log.revoked(handle, l.version);
    return super.delete(handle);
  }
}
