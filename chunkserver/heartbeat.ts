import type { Logger } from '../shared/log.js';
import { rpcJson } from '../shared/rpc.js';
import type { HeartbeatAnswer, HeartbeatReq, RegisterReq } from '../shared/wire.js';
import type { LeaseTable } from './leases.js';
import type { MasterSet } from './masters.js';
import type { ReplicaStore } from './store.js';

// Registration and heartbeats. A chunkserver reports every chunk it holds
// with its version at start-up and in every heartbeat (the master keeps no
// locations of its own), and apart from them the replicas it found corrupt;
// the replies carry deletions, lease extensions and clone orders.

const maxCorruptListed = 100_000;

export interface HeartbeatOptions {
  id: string;
  url: () => string;
  rack: string;
  masterUrl: string;
  heartbeatMs: number;
  leaseMs: () => number;
  store: ReplicaStore;
  leases: LeaseTable;
  load: () => number;
  log: Logger;
  onDeleted?: (handle: string) => void;
  /** With several masters (a master and its shadows): whose answers count (chunkserver/masters.ts). */
  masters?: MasterSet;
}

export class Heartbeater {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private registered = false;
  lastOkAtMs = 0;
  readonly counters = { heartbeats: 0, failures: 0, deletions: 0 };

  constructor(private readonly o: HeartbeatOptions) {}

  get masterUrl(): string {
    return this.o.masterUrl;
  }

  private async report(): Promise<RegisterReq> {
    const disk = await this.o.store.diskStats();
    return {
      id: this.o.id,
      url: this.o.url(),
      rack: this.o.rack,
      capacityBytes: disk.capacityBytes,
      freeBytes: disk.freeBytes,
      usedBytes: this.o.store.usedBytes(),
      chunks: this.o.store.list(),
      // Listed until the master orders their deletion (bounded as the wire allows).
      corruptChunks: this.o.store.corruptList().slice(0, maxCorruptListed),
      ...(this.o.masters ? { maxEpoch: this.o.masters.maxEpoch } : {}),
    };
  }

  async register(): Promise<void> {
    const answer = await rpcJson<HeartbeatAnswer>(this.o.masterUrl, '/api/cs/register', await this.report(), { targetName: 'master' });
    this.registered = true;
    this.lastOkAtMs = Date.now();
    if (!this.counts(answer)) return;
    await this.obey(answer);
  }

  async beat(): Promise<void> {
    if (!this.registered) return this.register();
    const sentAtMs = this.o.leases.now(); // the lease clock, which may run skewed in tests
    // Lease extensions are asked of the leading master only (a shadow grants none).
    const leader = !this.o.masters || this.o.masters.isLeader(this.o.masterUrl.replace(/\/+$/, ''));
    const body: HeartbeatReq = { ...(await this.report()), leaseExtensions: leader ? this.o.leases.wantExtension(this.o.leaseMs()) : [], load: this.o.load() };
    const answer = await rpcJson<HeartbeatAnswer>(this.o.masterUrl, '/api/cs/heartbeat', body, { targetName: 'master', timeoutMs: Math.max(2_000, this.o.heartbeatMs * 3) });
    this.counters.heartbeats++;
    this.lastOkAtMs = Date.now();
    if (answer.reregister) {
      this.registered = false;
      return this.register();
    }
    if (!this.counts(answer)) return;
    this.o.leases.extend(sentAtMs, answer.leases);
    await this.obey(answer);
  }

  /** Whether an answer's orders count: from a master (not a shadow) of the highest epoch seen. */
  private counts(answer: HeartbeatAnswer): boolean {
    if (!this.o.masters) return true;
    return this.o.masters.answered(this.o.masterUrl.replace(/\/+$/, ''), answer.epoch, answer.role);
  }

  private async obey(answer: HeartbeatAnswer): Promise<void> {
    for (const h of answer.deleteChunks) {
      try {
        this.o.leases.drop(h);
        await this.o.store.delete(h);
        this.counters.deletions++;
        this.o.onDeleted?.(h);
      } catch (e) {
        this.o.log.warn({ handle: h, err: (e as Error).message }, 'delete ordered by master failed');
      }
    }
  }

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      try {
        await this.beat();
      } catch (e) {
        this.counters.failures++;
        this.o.log.debug({ err: (e as Error).message }, 'heartbeat failed');
      }
      if (!this.stopped) this.timer = setTimeout(tick, this.o.heartbeatMs);
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
