import type { HeartbeatAnswer, HeartbeatReq, RegisterReq } from '../shared/wire.js';
import type { MasterContext } from './context.js';
import { processReport, type ReportOutcome } from './core/report.js';
import type { Leasing } from './leasing.js';

// The runtime of chunkserver reports: registration and heartbeats are judged
// by master/core/report.ts; this file logs what it decided (adopted versions),
// counts, and builds the reply (deletions, lease extensions). A shadow or a
// fenced master learns locations but gives no orders.

export interface HeartbeatHooks {
  /** A chunkserver saw this epoch: a newer master may exist (shadow.ts fences this one off). */
  noteEpoch(maxEpoch: number | undefined): void;
  isPendingCopy(handle: string): boolean;
  isRevoking(handle: string): boolean;
}

export class Heartbeats {
  constructor(
    private readonly m: MasterContext,
    private readonly leasing: Leasing,
    private readonly hooks: HeartbeatHooks,
  ) {}

  private judge(id: string, req: RegisterReq | HeartbeatReq, nowMs: number): ReportOutcome {
    const out = processReport(this.m.st, this.m.ns, { server: id, chunks: req.chunks, corruptChunks: req.corruptChunks }, { nowMs, safe: this.m.inSafeMode(), role: this.m.role, isPendingCopy: (h) => this.hooks.isPendingCopy(h) });
    const c = this.m.counters;
    c.staleReplicasDropped += out.staleDropped;
    c.orphansDeleted += out.orphans;
    c.corruptReported += out.corruptNew;
    for (const rec of out.records) this.m.logOp(rec).catch((e) => this.m.opts.log.error({ err: e, rec }, 'logging an adopted version failed'));
    return out;
  }

  private noOrders(reregister: boolean): HeartbeatAnswer {
    return { deleteChunks: [], leases: {}, clones: [], reregister, epoch: this.m.ns.epoch, role: this.m.role };
  }

  register(req: RegisterReq): HeartbeatAnswer {
    const nowMs = this.m.now();
    const s = this.m.servers.upsert(req, nowMs);
    this.hooks.noteEpoch(req.maxEpoch);
    const { deletes } = this.judge(s.id, req, nowMs);
    this.m.opts.log.info({ server: s.id, url: s.url, rack: s.rack, chunks: req.chunks.length, corrupt: req.corruptChunks?.length ?? 0 }, 'chunkserver registered');
    if (!this.m.isMaster()) return this.noOrders(false);
    return { deleteChunks: deletes, leases: {}, clones: [], reregister: false, epoch: this.m.ns.epoch, role: 'master' };
  }

  heartbeat(req: HeartbeatReq): HeartbeatAnswer {
    const nowMs = this.m.now();
    if (!this.m.servers.servers.has(req.id)) return this.noOrders(true);
    this.hooks.noteEpoch(req.maxEpoch);
    const s = this.m.servers.upsert(req, nowMs);
    const { deletes } = this.judge(s.id, req, nowMs);
    if (!this.m.isMaster()) {
      this.m.st.pendingDeletes.delete(s.id);
      return this.noOrders(false);
    }
    const leases = this.leasing.extendAll(s.id, req.leaseExtensions, (h) => this.hooks.isRevoking(h));
    return { deleteChunks: [...deletes, ...this.m.st.takePendingDeletes(s.id)], leases, clones: [], reregister: false, epoch: this.m.ns.epoch, role: 'master' };
  }

  /** A chunkserver found a corrupt replica (on read, scrub or write). */
  reportCorrupt(id: string, handle: string): void {
    const st = this.m.st;
    this.m.counters.corruptReported++;
    st.markCorrupt(id, handle);
    this.m.opts.log.warn({ server: id, handle }, 'replica reported corrupt');
    // Delete it at once when a good replica exists (re-replication restores the count);
    // otherwise keep it until one does, in case it is the only copy of most of the data.
    if (st.servers.liveLocations(handle, this.m.now()).length > 0) st.orderDelete(id, handle);
  }
}
