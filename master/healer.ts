import { GfsError } from '../shared/errors.js';
import { rpcJson } from '../shared/rpc.js';
import type { MasterContext } from './context.js';
import { revokeLease } from './revoke.js';
import { planHealing } from './core/healing.js';
import { initialChunkVersion, type Op } from './core/namespace.js';
import type { InFlightClone } from './core/replication.js';
import { settleClone } from './core/version-bump.js';
import type { Leasing } from './leasing.js';

// The runtime of healing: every tick it asks master/core/healing.ts what to
// do and does it: clones (each after a version bump, through the one bump
// protocol in leasing.ts), lease revocations for repair, retried bumps no
// replica took, and the trash's reclaim.

/** Recent creations above which a server is a clone target only when nothing else fits. */
const recentCreatesLimit = 32;

export class Healer {
  private ticking = false;
  private retryingBumps = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly m: MasterContext,
    private readonly leasing: Leasing,
    private readonly runtime: {
      /** Deletes trash entries past their grace period (master.ts: it is a namespace mutation). */
      reclaimTrash(): Promise<void>;
      /** Creates a never-written chunk's replicas afresh up to `goal` (files.ts placeNewChunk). */
      placeAfresh(handle: string, goal: number): Promise<void>;
    },
    /** The chunkserver calls (a test gives its own). */
    private readonly rpc: typeof rpcJson = rpcJson,
  ) {}

  start(periodMs: number): void {
    this.timer = setInterval(() => void this.tick(), periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async tick(): Promise<void> {
    if (this.ticking || !this.m.isMaster() || this.m.inSafeMode()) return;
    this.ticking = true;
    try {
      const o = this.m.opts;
      const plan = planHealing(this.m.st, this.m.ns, this.m.now(), {
        chunkSizeBytes: o.chunkSizeBytes,
        limits: { maxClusterClones: o.maxClusterClones, maxPerServerClones: o.maxPerServerClones },
        rebalanceMinImbalance: o.rebalanceMinImbalance,
        recentCreatesLimit,
      });
      for (const c of plan.clones) void this.runClone(c.handle, c.version, c.source, c.target);
      for (const h of plan.revokes) void this.revokeForRepair(h);
      if (plan.rebalance) {
        this.m.counters.rebalanceMoves++;
        void this.runClone(plan.rebalance.handle, plan.rebalance.version, plan.rebalance.source, plan.rebalance.target);
      }
      this.m.counters.excessDeleted += plan.excess.length;
      for (const p of plan.placements) {
        this.m.counters.placedAfresh++;
        this.m.opts.log.warn({ handle: p.handle }, 'a chunk never written is held by no live server: creating it afresh');
        void this.runtime.placeAfresh(p.handle, p.goal).catch((e) => this.m.opts.log.warn({ handle: p.handle, err: (e as Error).message }, 'placing a chunk afresh failed'));
      }
      void this.retryBumps();
      await this.runtime.reclaimTrash();
    } catch (e) {
      this.m.opts.log.error({ err: e }, 'healing tick failed');
    } finally {
      this.ticking = false;
    }
  }

  /** Tells the replicas of chunks in ChunkState.unbumped their current version again; listed again once they took it. */
  private async retryBumps(): Promise<void> {
    const st = this.m.st;
    if (this.retryingBumps || st.unbumped.size === 0) return;
    this.retryingBumps = true;
    try {
      const nowMs = this.m.now();
      await Promise.allSettled(
        [...st.unbumped].flatMap(([handle, ub]) => {
          const meta = this.m.ns.chunks.get(handle);
          if (!meta) {
            st.unbumped.delete(handle);
            return [];
          }
          if (st.granting.has(handle)) return [];
          const version = meta.version;
          return [...ub.servers]
            .filter((id) => st.servers.isAlive(st.servers.servers.get(id), nowMs))
            .map(async (id) => {
              await this.rpc(st.servers.ref(id)!.url, '/chunk/version', { handle, version }, { targetName: id, timeoutMs: 5_000 });
              if (st.unbumped.get(handle) !== ub || this.m.ns.chunks.get(handle)?.version !== version) return;
              ub.servers.delete(id);
              st.servers.addLocation(handle, id);
              if (ub.servers.size === 0) st.unbumped.delete(handle);
            });
        }),
      );
    } finally {
      this.retryingBumps = false;
    }
  }

  /**
   * Before a clone, a new version on every live replica. A primary whose lease has run out may
   * still have a mutation on its way to the replicas: ordered while its lease ran, delivered late
   * (a paused or slow primary, a slow network). A clone copied at the old version would miss it
   * while the replicas it came from apply and acknowledge it, leaving a listed replica without an
   * acknowledged write (found by the partition suite; test/partition/lease-partition.test.ts).
   * At a new version every replica refuses such a late mutation. Returns the version to clone.
   */
  private async bumpBeforeClone(handle: string, version: number, source: string): Promise<number> {
    const meta = this.m.ns.chunks.get(handle);
    if (!meta || meta.version !== version) throw new GfsError('STALE_VERSION', `chunk ${handle} is no longer at version ${version}`);
    if (version === initialChunkVersion) return version; // never leased: no primary ever acted on it
    const bumped = await this.leasing.runBump(handle, this.m.servers.liveLocations(handle, this.m.now()));
    if (!bumped.took.includes(source)) throw new GfsError('UNAVAILABLE', `clone source ${source} did not take version ${bumped.version}`);
    return bumped.version;
  }

  /** Takes a lease back from a primary that acknowledges it stopped (chunkserver /chunk/revoke); otherwise it runs out. */
  private async revokeForRepair(handle: string): Promise<void> {
    const st = this.m.st;
    st.revoking.add(handle);
    try {
      if (await revokeLease(this.m, handle, this.rpc)) this.m.counters.leasesRevokedForRepair++;
    } finally {
      st.revoking.delete(handle);
    }
  }

  private async runClone(handle: string, version: number, source: string, target: string): Promise<void> {
    const st = this.m.st;
    const clone: InFlightClone = { handle, source, target };
    st.clones.push(clone);
    this.m.counters.clonesStarted++;
    try {
      const src = st.servers.ref(source);
      const dst = st.servers.ref(target);
      // Every clone started ends as done or failed (status and the partition suite count the ones
      // under way as started - done - failed).
      if (!src || !dst) throw new GfsError('UNAVAILABLE', `clone of ${handle}: chunkserver ${src ? target : source} is unknown`);
      version = await this.bumpBeforeClone(handle, version, source);
      const bytesPerSec = this.m.opts.cloneBytesPerSec;
      const r = await this.rpc<{ sizeBytes: number }>(
        dst.url,
        '/chunk/clone',
        { handle, version, sourceUrl: src.url, sourceId: source, bytesPerSec },
        { targetName: target, timeoutMs: Math.max(60_000, bytesPerSec > 0 ? (2 * this.m.opts.chunkSizeBytes * 1000) / bytesPerSec : 0) },
      );
      // Counts only if nothing changed meanwhile (no lease could be granted during the clone): a copy
      // of an older version is no replica (its target's next report has it deleted as stale).
      const record = settleClone(st, this.m.ns, handle, version, target, r.sizeBytes);
      if (this.m.ns.chunks.get(handle)?.version !== version) throw new GfsError('STALE_VERSION', `chunk ${handle} moved past version ${version} during the clone`);
      this.m.counters.clonesDone++;
      this.m.counters.clonedBytes += r.sizeBytes;
      // The clone is still in ChunkState.clones here, so reports of the target wait for the record.
      if (record) await this.logTook(record, target);
    } catch (e) {
      st.movedFrom.delete(handle); // a failed move leaves nothing to trim
      this.m.counters.clonesFailed++;
      this.m.opts.log.warn({ handle, source, target, err: (e as Error).message }, 'clone failed');
    } finally {
      st.clones.splice(st.clones.indexOf(clone), 1);
    }
  }

  /**
   * Logs that a finished clone's target took the version, so that it stays among the replicas that
   * took it (Namespace.took), after a restart too. The clone itself succeeded: a failure here is
   * counted apart from failed clones. Unlogged (full disk, failed log), the target is judged to have
   * taken the version late at its next report and dropped, as a restarted master would judge it;
   * re-replication copies again. (Logged here but not shipped to every log replica: it counts.)
   */
  private async logTook(record: Op, target: string): Promise<void> {
    try {
      await this.m.logOp(record);
    } catch (e) {
      this.m.counters.cloneRecordsFailed++;
      this.m.opts.log.warn({ record, target, err: (e as Error).message }, 'clone done, but its record could not be logged');
    }
  }
}
