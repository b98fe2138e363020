import { GfsError } from '../shared/errors.js';
import { isUnder, normalizePath, trashDir } from '../shared/paths.js';
import { defaults } from '../shared/config.js';
import { rpcJson } from '../shared/rpc.js';
import type { LeaseAnswer } from '../shared/wire.js';
import type { LeaseTarget, MasterContext } from './context.js';
import { revokeLease } from './revoke.js';

// Copy-on-write snapshots of files and directory trees (DESIGN.md, Snapshot).
//
// Snapshot: under namespace locks (write locks on src and dst, read locks on
// their ancestors: no file under src is created, renamed, deleted or grows
// meanwhile), revoke the leases on every chunk under src, then log the
// 'snapshot' record, whose apply duplicates the metadata and raises each
// chunk's reference count. The master cannot take a lease back from a
// primary, so revoking means: grant no lease and no extension on those chunks
// from now on, and wait until every lease on them has expired by the master's
// clock (plus a short settle time for mutations a primary started just before
// its own, earlier, expiry). Mutations acknowledged before the snapshot
// started are therefore in both trees; none reaches the shared chunks after.
//
// Copy-on-write: a lease request names the file and chunk index it writes.
// When that chunk is shared (refCount > 1), the master takes a new handle,
// asks every live holder of the chunk to copy it locally (POST /chunk/copy:
// no chunk data crosses the network), logs a 'cow' record pointing THIS
// file's chunk at the copy (old refCount - 1, new refCount 1, same version),
// records the holders that copied as the copy's locations, and only then
// grants the lease, on the new handle; the answer names it (LeaseAnswer.handle)
// and the client writes there. Copies of one chunk are serialised, and each
// runs under the file's namespace write lock, so two writers of the same
// shared chunk of one file copy it once.
//
// Until its 'cow' record is logged, a copy is unknown to the namespace; the
// master must not delete it as an orphan when a heartbeat reports it
// (isPendingCopy). Its handle is logged first ('reserve'), so a master that
// dies between copying and logging never reuses it; the copy left behind is
// an orphan that heartbeats delete later.

export type { LeaseTarget };

export class Snapshots {
  /** Handle -> number of snapshots revoking its leases right now. */
  private readonly revokingCounts = new Map<string, number>();
  /** New handles copied on chunkservers whose 'cow' record is not applied yet. */
  private readonly pendingCopies = new Set<string>();
  /** Copy-on-write of one chunk at a time: old handle -> the tail of its queue. */
  private readonly cowChains = new Map<string, Promise<void>>();
  readonly counters = { snapshots: 0, copiesOnWrite: 0, localCopies: 0, localCopyFailures: 0, revokeWaitMs: 0, leasesRevoked: 0 };

  constructor(private readonly m: MasterContext) {}

  isRevoking(handle: string): boolean {
    return this.revokingCounts.has(handle);
  }

  isPendingCopy(handle: string): boolean {
    return this.pendingCopies.has(handle);
  }

  private get settleMs(): number {
    return Math.min(1_000, Math.max(50, this.m.opts.leaseMs / 10));
  }

  // ---- snapshot ----
  async snapshot(rawSrc: string, rawDst: string): Promise<void> {
    const m = this.m;
    const src = normalizePath(rawSrc);
    const dst = normalizePath(rawDst);
    if (isUnder(dst, trashDir)) throw new GfsError('INVALID_PATH', `${trashDir} is reserved`);
    // Hard-linked files under src have names elsewhere, which could allocate or truncate beside the
    // lease wait below: their nodes are locked too.
    const release = await m.locks.acquireWithInos(
      [
        { path: src, mode: 'w' },
        { path: dst, mode: 'w' },
      ],
      () => m.ns.inosAt(src, true),
    );
    try {
      // Validate before waiting: a bad request fails at once.
      m.ns.checkSnapshot(src, dst, Date.now());
      const handles = new Set<string>();
      for (const p of m.ns.subtree(src)) {
        const n = m.ns.get(p)!;
        if (n.type === 'file') for (const h of n.chunks) handles.add(h);
      }
      // Nothing under src changes while we wait (we hold its write lock).
      await this.withLeasesOut([...handles], () => m.logOp(m.ns.checkSnapshot(src, dst, Date.now())));
      this.counters.snapshots++;
    } finally {
      release();
      m.checkpointSoon();
    }
  }

  /**
   * Runs fn once no lease on any of `handles` can be in force, granting none and extending none
   * meanwhile (lease requests get LEASE_PENDING): a snapshot's wait for the chunks it shares, and a
   * truncate's for the chunks it drops (master/truncate.ts), so no mutation acknowledged after fn
   * logged its record can have reached them.
   */
  async withLeasesOut<T>(handles: string[], fn: () => Promise<T>): Promise<T> {
    for (const h of handles) this.revokingCounts.set(h, (this.revokingCounts.get(h) ?? 0) + 1);
    try {
      const t0 = this.m.now();
      await this.waitOutLeases(handles);
      this.counters.revokeWaitMs += Math.round(this.m.now() - t0);
      return await fn();
    } finally {
      for (const h of handles) {
        const n = (this.revokingCounts.get(h) ?? 1) - 1;
        if (n <= 0) this.revokingCounts.delete(h);
        else this.revokingCounts.set(h, n);
      }
    }
  }

  /**
   * Waits until no lease on any of `handles` can be in force: grants under way
   * finish first (no new ones start, nor extensions, while the handles are
   * revoking), then every recorded lease must have expired by the master's
   * clock, as must any a restarted master's predecessor may have granted.
   * Bounded by leaseMs plus margins.
   */
  /**
   * Asks each primary holding a lease on one of `handles` to give it back. A
   * primary that answers has stopped acting and finished every mutation it
   * had started, so its lease ends now; one that does not answer is waited
   * out by waitOutLeases.
   */
  private async revokeLeases(handles: string[]): Promise<void> {
    await Promise.all(
      handles.map(async (h) => {
        if (await revokeLease(this.m, h)) this.counters.leasesRevoked++;
      }),
    );
  }

  private async waitOutLeases(handles: string[]): Promise<void> {
    if (handles.length === 0) return;
    const m = this.m;
    await Promise.allSettled(handles.map((h) => m.leaseGrantState(h).inFlight).filter((p) => p !== undefined));
    await this.revokeLeases(handles);
    const deadline = m.now() + m.opts.leaseMs + this.settleMs + 1_000;
    for (;;) {
      const nowMs = m.now();
      // The last moment a primary may have acted on one of these chunks.
      let until = m.leaseGrantState(handles[0]!).grantsAllowedAtMs;
      for (const h of handles) {
        const l = m.leases.get(h);
        if (l && l.expiresAtMs > until) until = l.expiresAtMs;
      }
      const waitMs = until + this.settleMs - nowMs;
      if (waitMs <= 0) return;
      if (nowMs + waitMs > deadline) throw new GfsError('UNAVAILABLE', 'snapshot: leases on the source did not expire in time', { retryAfterMs: 500 });
      await new Promise((r) => setTimeout(r, Math.ceil(waitMs) + 1));
    }
  }

  // ---- copy-on-write ----
  /**
   * Called synchronously at the start of Master.lease. Throws LEASE_PENDING
   * while a snapshot revokes the chunk's leases. Returns the answer to give
   * instead when the lease belongs elsewhere: the file's chunk is another one
   * now (the client's location is stale), or the chunk is shared and is
   * copied first. Undefined: grant on `handle` as usual.
   */
  routeLease(handle: string, refCount: number, at: LeaseTarget | undefined): Promise<LeaseAnswer> | undefined {
    if (this.isRevoking(handle)) throw new GfsError('LEASE_PENDING', `chunk ${handle} is being snapshotted`, { retryAfterMs: 100 });
    if (!at) {
      if (refCount > 1) throw new GfsError('BAD_REQUEST', `chunk ${handle} is shared with a snapshot: a lease request must name the file and chunk index`);
      return undefined;
    }
    const path = normalizePath(at.path);
    const cur = this.m.ns.getFile(path).chunks[at.index];
    if (cur === undefined) throw new GfsError('NOT_FOUND', `${path} has no chunk ${at.index}`);
    if (cur !== handle) return this.m.lease(cur, { path, index: at.index });
    if (refCount > 1) return this.copyOnWrite(path, at.index, handle).then((h) => this.m.lease(h, { path, index: at.index }));
    return undefined;
  }

  /** Runs fn after every earlier copy-on-write of handle. */
  private serialOn<T>(handle: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.cowChains.get(handle) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.cowChains.set(handle, tail);
    void tail.then(() => {
      if (this.cowChains.get(handle) === tail) this.cowChains.delete(handle);
    });
    return run;
  }

  /** The handle chunk `index` of `path` refers to once it is no longer shared. */
  private copyOnWrite(path: string, index: number, handle: string): Promise<string> {
    const m = this.m;
    return this.serialOn(handle, () =>
      m.locks
        .acquireWithInos([{ path, mode: 'w' }], () => m.ns.inosAt(path))
        .then(async (release) => {
          try {
            return await this.copyLocked(path, index, handle);
          } finally {
            release();
          }
        })
        .finally(() => m.checkpointSoon()),
    );
  }

  /** copyOnWrite's work, with the file's locks held. */
  private async copyLocked(path: string, index: number, handle: string): Promise<string> {
    const m = this.m;
    // Judge again under the lock: an earlier copy may have settled it.
    const f = m.ns.getFile(path);
    const cur = f.chunks[index];
    if (cur === undefined) throw new GfsError('NOT_FOUND', `${path} has no chunk ${index}`);
    const meta = m.ns.chunks.get(cur)!;
    if (cur !== handle || meta.refCount <= 1) return cur;
    if (m.inSafeMode()) throw new GfsError('SAFE_MODE', 'master is in safe mode, waiting for chunkserver reports', { retryAfterMs: 500 });
    const nowMs = m.now();
    // The shared chunk must be still: no lease in force on it (a snapshot waited them out).
    const lease = m.leases.get(cur);
    const stillUntil = Math.max(lease ? lease.expiresAtMs + this.settleMs : 0, m.leaseGrantState(cur).grantsAllowedAtMs);
    if (stillUntil > nowMs || m.leaseGrantState(cur).inFlight)
      throw new GfsError('LEASE_PENDING', `chunk ${cur} may still be mutated`, { retryAfterMs: Math.max(50, Math.ceil(stillUntil - nowMs)) });
    const holders = m.servers.liveLocations(cur, nowMs);
    if (holders.length === 0) throw new GfsError('NO_REPLICAS', `no live up-to-date replica of chunk ${cur} to copy`);
    const op = m.ns.checkCow(path, index, Date.now());
    this.pendingCopies.add(op.newHandle);
    try {
      // Durable before any chunkserver holds it: a master restarted after a failed or
      // unlogged copy never hands the handle out again (the leftover copy is an orphan).
      await m.logOp({ op: 'reserve', handle: op.newHandle });
      const results = await Promise.allSettled(
        holders.map(async (id) => {
          const ref = m.servers.ref(id);
          if (!ref) throw new Error(`unknown server ${id}`);
          await rpcJson(ref.url, '/chunk/copy', { handle: cur, newHandle: op.newHandle, version: op.version }, { targetName: id, timeoutMs: defaults.dataTimeoutMs });
          return id;
        }),
      );
      const took: string[] = [];
      for (const [i, r] of results.entries()) {
        if (r.status === 'fulfilled') took.push(r.value);
        else {
          this.counters.localCopyFailures++;
          m.opts.log.warn({ handle: cur, newHandle: op.newHandle, server: holders[i], err: (r.reason as Error).message }, 'copy-on-write: local copy failed');
        }
      }
      this.counters.localCopies += took.length;
      if (took.length === 0) throw new GfsError('UNAVAILABLE', `no replica of chunk ${cur} could copy it`, { retryAfterMs: 200 });
      if (m.ns.chunks.get(cur)?.version !== op.version) throw new GfsError('UNAVAILABLE', `chunk ${cur} changed version while being copied`, { retryAfterMs: 50 });
      await m.logOp(op);
      for (const id of took) m.servers.addLocation(op.newHandle, id);
      this.counters.copiesOnWrite++;
      m.opts.log.debug({ path, index, from: cur, to: op.newHandle, replicas: took }, 'copy-on-write');
      return op.newHandle;
    } finally {
      this.pendingCopies.delete(op.newHandle);
    }
  }
}
