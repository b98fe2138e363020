import { GfsError } from '../shared/errors.js';
import { normalizePath } from '../shared/paths.js';
import { rpcJson } from '../shared/rpc.js';
import type { LeaseAnswer, LeaseConfirmAnswer, ReplicaRef } from '../shared/wire.js';
import type { LeaseTarget, MasterContext } from './context.js';
import { chooseLease, extendHeld, makeLease } from './core/lease-choice.js';
import type { Lease } from './core/leases.js';
import { bumpLogged, settleBump, startBump } from './core/version-bump.js';

// The runtime of leases: carries out what master/core/lease-choice.ts and
// master/core/version-bump.ts decide (log the bump, tell the replicas, log
// who took it, hand the lease to the primary, answer the client), one grant
// per chunk at a time.

/** How long a replica is given to take a new version. */
const versionRpcTimeoutMs = 5_000;
/** How long the lease hand-over to a new primary may hold up the grant's answer. */
const handOverTimeoutMs = 2_000;

export class Leasing {
  private readonly grantsInFlight = new Map<string, Promise<LeaseAnswer>>();
  /** No grant before this time: a restarted or promoted master waits out its predecessor's leases. */
  grantsAllowedAtMs: number;

  constructor(
    private readonly m: MasterContext,
    grantsAllowedAtMs: number,
  ) {
    this.grantsAllowedAtMs = grantsAllowedAtMs;
  }

  inFlight(handle: string): Promise<LeaseAnswer> | undefined {
    return this.grantsInFlight.get(handle);
  }

  /** The replication goal of the file a lease request names (the default when it names none). */
  private goalOf(at: LeaseTarget | undefined): number {
    try {
      const n = at ? this.m.ns.get(normalizePath(at.path)) : undefined;
      return n?.type === 'file' ? n.replication : this.m.opts.defaultReplication;
    } catch {
      return this.m.opts.defaultReplication;
    }
  }

  /** After snapshot routing (master.ts): the current lease, a new grant, or why to wait. */
  decide(handle: string, at: LeaseTarget | undefined): Promise<LeaseAnswer> {
    const inFlight = this.grantsInFlight.get(handle);
    if (inFlight) return inFlight;
    const nowMs = this.m.now();
    const d = chooseLease(this.m.st, this.m.ns, { handle, goal: this.goalOf(at), nowMs, grantsAllowedAtMs: this.grantsAllowedAtMs });
    switch (d.kind) {
      case 'current':
        return Promise.resolve(this.answer(handle, d.lease, nowMs));
      case 'busy':
        throw new GfsError('LEASE_PENDING', `chunk ${handle} ${d.reason}`, { retryAfterMs: d.retryAfterMs });
      case 'wait':
        throw new GfsError('LEASE_PENDING', `no lease for ${handle} yet: ${d.reason}`, { retryAfterMs: Math.max(1, Math.ceil(d.untilMs - nowMs)) });
      case 'no-replicas':
        throw new GfsError('NO_REPLICAS', `no live up-to-date replica of chunk ${handle}`);
      case 'grant':
      case 'regrant': {
        const upToDate = this.m.st.upToDate(handle, nowMs);
        this.m.st.granting.add(handle);
        const p = this.grant(handle, d.primary, upToDate, d.kind === 'regrant').finally(() => {
          this.grantsInFlight.delete(handle);
          this.m.st.granting.delete(handle);
        });
        this.grantsInFlight.set(handle, p);
        return p;
      }
    }
  }

  answer(handle: string, lease: Lease, nowMs: number): LeaseAnswer {
    const servers = this.m.servers;
    return {
      handle,
      version: lease.version,
      primary: servers.ref(lease.primary)!,
      secondaries: lease.secondaries.map((id) => servers.ref(id)).filter((r): r is ReplicaRef => !!r),
      leaseRemainingMs: Math.max(0, lease.expiresAtMs - nowMs),
    };
  }

  private async grant(handle: string, preferred: string, upToDate: string[], samePrimaryOnly: boolean): Promise<LeaseAnswer> {
    const { version, took } = await this.runBump(handle, upToDate, preferred);
    if (took.length === 0) throw new GfsError('UNAVAILABLE', `no replica of ${handle} took version ${version}`);
    const nowMs = this.m.now();
    const g = makeLease(this.m.st, handle, version, preferred, took, samePrimaryOnly, nowMs, this.m.opts.leaseMs);
    if (g.kind === 'wait') throw new GfsError('LEASE_PENDING', `${handle}: ${g.reason}`, { retryAfterMs: Math.max(1, Math.ceil(g.untilMs - nowMs)) });
    this.m.counters.leaseGrants++;
    this.m.opts.log.debug({ handle, version, primary: g.lease.primary }, 'lease granted');
    const answer = this.answer(handle, g.lease, nowMs);
    if (g.lease.primary === preferred) await this.handOver(answer);
    return answer;
  }

  /**
   * Hands the lease to its primary before any client hears of it, so the primary's first mutation
   * needs no lease-confirm round trip. Best effort: a primary that misses it confirms as before.
   */
  private async handOver(a: LeaseAnswer): Promise<void> {
    const body = { handle: a.handle, version: a.version, secondaries: a.secondaries, remainingMs: Math.floor(a.leaseRemainingMs) };
    await rpcJson(a.primary.url, '/chunk/lease', body, { targetName: a.primary.id, timeoutMs: handOverTimeoutMs }).catch((e: unknown) => {
      this.m.opts.log.debug({ handle: a.handle, err: (e as Error).message }, 'lease hand-over failed; the primary will confirm');
    });
  }

  /**
   * The version-bump protocol (master/core/version-bump.ts), for grants and clones: log the new
   * version, tell `targets`, settle who took it and log that. Returns the new version and who took it.
   */
  async runBump(handle: string, targets: string[], primary?: string): Promise<{ version: number; took: string[] }> {
    const b = startBump(this.m.st, this.m.ns, handle);
    await this.m.logOp(b.record);
    bumpLogged(this.m.st, b, this.m.now());
    const results = await Promise.allSettled(
      targets.map(async (id) => {
        const ref = this.m.servers.ref(id);
        if (!ref) throw new Error(`unknown chunkserver ${id}`);
        await rpcJson(ref.url, '/chunk/version', { handle, version: b.version, ...(id === primary ? { primary: true } : {}) }, { targetName: id, timeoutMs: versionRpcTimeoutMs });
        return id;
      }),
    );
    const took = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const record = settleBump(this.m.st, b, targets, took);
    // Durable before any client hears of a lease at this version: a master restarted before this
    // record knows no mutation happened at it (ChunkState.recoveredPending).
    if (record) await this.m.logOp(record);
    return { version: b.version, took };
  }

  /** A primary asks whether it still holds its lease (and extends it). */
  confirm(id: string, handle: string, revoking: boolean): LeaseConfirmAnswer {
    const version = this.m.ns.chunks.get(handle)?.version ?? 0;
    if (revoking) return { primary: false, version, secondaries: [], remainingMs: 0 };
    const nowMs = this.m.now();
    const ext = extendHeld(this.m.st, this.m.ns, id, handle, nowMs, this.m.opts.leaseMs);
    if (!ext) return { primary: false, version, secondaries: [], remainingMs: 0 };
    const a = this.answer(handle, ext, nowMs);
    return { primary: true, version: ext.version, secondaries: a.secondaries, remainingMs: a.leaseRemainingMs };
  }

  /** Extensions a primary asked for in its heartbeat: handle -> remaining ms. */
  extendAll(id: string, handles: string[], isRevoking: (h: string) => boolean): Record<string, number> {
    const nowMs = this.m.now();
    const leases: Record<string, number> = {};
    for (const h of handles) {
      if (isRevoking(h)) continue; // no extension while a snapshot revokes it
      const ext = extendHeld(this.m.st, this.m.ns, id, h, nowMs, this.m.opts.leaseMs);
      if (!ext) continue;
      leases[h] = ext.expiresAtMs - nowMs;
      this.m.counters.leaseExtensions++;
    }
    return leases;
  }
}
