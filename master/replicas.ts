// Log replicas: the master's operation log on more than one machine.
//
// A log replica is a shadow master (`gfs master --shadow-of URL`): it writes
// every record the master logs into its own operation log (fsynced, group
// commit) and applies it to its own namespace, so it can serve reads and be
// promoted. The master (`--log-replicas URL,URL`) ships each batch to every
// replica while it writes the batch locally, and acknowledges the batch's
// mutations only when both are durable (master/oplog.ts `replicate`).
//
// Records are numbered by log index (Namespace.appliedIndex). A replica
// accepts a batch only if it continues its log exactly (LOG_GAP otherwise);
// one that fell behind, restarted or was never in sync gets the master's
// whole state at a consistent index (taken while no batch is being applied,
// OpLog.exclusive) and then the batches after it. Until then it does not
// count: the master refuses mutations (UNAVAILABLE) unless started with
// --allow-fewer-log-replicas, in which case it goes on with fewer copies and
// says so in `gfs status`. Idle, the master sends an empty batch now and then,
// so a shadow can tell how stale it is.

import { GfsError, invariant } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { rpcJson } from '../shared/rpc.js';
import type { LogAppendAnswer } from '../shared/wire.js';

export interface ReplicaState {
  url: string;
  /** In sync: every batch since its last install or append reached it. */
  synced: boolean;
  /** The last log index it confirmed. */
  lastIndex: number;
  lastOkAtMs: number | undefined;
  lastError: string | undefined;
  /** Wall clock before which no new catch-up is tried (bounded retry). */
  nextTryAtMs: number;
}

export interface ShipperOptions {
  urls: string[];
  /** Go on acknowledging mutations while a replica is out of sync (fewer copies). */
  allowFewer: boolean;
  selfUrl: () => string;
  epoch: () => number;
  /** Index of the last record applied here: batches handed to ship() start right after it. */
  appliedIndex: () => number;
  /** The whole state as JSON text, taken synchronously at a consistent point. */
  snapshotJson: () => string;
  /** Runs fn while no batch is written or applied (OpLog.exclusive). */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  log: Logger;
  /** A log replica answered that it has seen a higher epoch: this master was failed over. */
  onFenced: (epoch: number) => void;
  timeoutMs: number;
  /** Keep-alive period when idle, and the pause between catch-up attempts. */
  periodMs: number;
}

const maxRetryBackoffMs = 5_000;

export class LogShipper {
  readonly replicas: ReplicaState[];
  private timer: NodeJS.Timeout | undefined;
  private catchingUp = false;
  private failuresInARow = new Map<string, number>();

  constructor(private readonly o: ShipperOptions) {
    invariant(o.urls.length > 0 && o.urls.length <= 16, 'between 1 and 16 log replicas');
    this.replicas = o.urls.map((url) => ({ url: url.replace(/\/+$/, ''), synced: false, lastIndex: 0, lastOkAtMs: undefined, lastError: 'not contacted yet', nextTryAtMs: 0 }));
  }

  /** Whether a mutation may be logged now: every replica in sync, or fewer copies allowed. */
  checkWritable(): void {
    if (this.o.allowFewer) return;
    const behind = this.replicas.filter((r) => !r.synced);
    if (behind.length > 0) {
      throw new GfsError('UNAVAILABLE', `log replica${behind.length > 1 ? 's' : ''} ${behind.map((r) => `${r.url} (${r.lastError ?? 'catching up'})`).join(', ')} not in sync: mutations refused until caught up`, { retryAfterMs: 500 });
    }
  }

  /** OpLog's replicate hook: the batch to every replica in sync; fails if one of them fails (unless fewer are allowed). */
  async ship(records: string[]): Promise<void> {
    const firstIndex = this.o.appliedIndex() + 1;
    const targets = this.replicas.filter((r) => r.synced);
    const results = await Promise.allSettled(targets.map((r) => this.append(r, firstIndex, records)));
    const failed: string[] = [];
    results.forEach((res, i) => {
      if (res.status === 'rejected') {
        const r = targets[i]!;
        this.markBehind(r, res.reason);
        failed.push(`${r.url}: ${r.lastError}`);
      }
    });
    const missing = this.replicas.length - (targets.length - failed.length);
    if (missing > 0 && !this.o.allowFewer) {
      throw new GfsError('UNAVAILABLE', `batch not on every log replica (${failed.join('; ') || 'replicas out of sync'})`);
    }
  }

  start(): void {
    const tick = async () => {
      try {
        await this.maintain();
      } catch (e) {
        this.o.log.warn({ err: (e as Error).message }, 'log replica maintenance failed');
      }
      if (this.timer !== undefined) this.timer = setTimeout(tick, this.o.periodMs);
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Keep-alives to replicas in sync; a whole-state install to one behind whose retry time has come. */
  private async maintain(): Promise<void> {
    const nowMs = Date.now();
    await Promise.allSettled(
      this.replicas.filter((r) => r.synced).map((r) => this.append(r, this.o.appliedIndex() + 1, []).catch((e: unknown) => this.markBehind(r, e))),
    );
    if (this.catchingUp) return;
    const due = this.replicas.filter((r) => !r.synced && r.nextTryAtMs <= nowMs);
    if (due.length === 0) return;
    this.catchingUp = true;
    try {
      // While no batch is in flight: the state is exactly every logged record, at appliedIndex.
      await this.o.exclusive(async () => {
        const index = this.o.appliedIndex();
        const state = this.o.snapshotJson();
        await Promise.allSettled(
          due.map(async (r) => {
            try {
              await rpcJson(r.url, '/api/log/install', { epoch: this.o.epoch(), index, state, masterUrl: this.o.selfUrl() }, { timeoutMs: Math.max(this.o.timeoutMs, 30_000), targetName: 'log-replica' });
              r.synced = true;
              r.lastIndex = index;
              r.lastOkAtMs = Date.now();
              r.lastError = undefined;
              this.failuresInARow.delete(r.url);
              this.o.log.info({ replica: r.url, index }, 'log replica caught up');
            } catch (e) {
              this.markBehind(r, e);
            }
          }),
        );
      });
    } finally {
      this.catchingUp = false;
    }
  }

  private async append(r: ReplicaState, firstIndex: number, records: string[]): Promise<void> {
    const a = await rpcJson<LogAppendAnswer>(r.url, '/api/log/append', { epoch: this.o.epoch(), firstIndex, records, masterUrl: this.o.selfUrl() }, { timeoutMs: this.o.timeoutMs, targetName: 'log-replica' });
    invariant(a.lastIndex >= firstIndex - 1 + records.length, 'a replica confirms every record it was sent');
    r.lastIndex = a.lastIndex;
    r.lastOkAtMs = Date.now();
  }

  private markBehind(r: ReplicaState, e: unknown): void {
    if (e instanceof GfsError && e.code === 'STALE_EPOCH') this.o.onFenced(this.o.epoch() + 1);
    const was = r.synced;
    r.synced = false;
    r.lastError = e instanceof Error ? e.message : String(e);
    const n = (this.failuresInARow.get(r.url) ?? 0) + 1;
    this.failuresInARow.set(r.url, n);
    r.nextTryAtMs = Date.now() + Math.min(maxRetryBackoffMs, this.o.periodMs * n);
    if (was) this.o.log.warn({ replica: r.url, err: r.lastError }, 'log replica out of sync');
  }

  status(): { allowFewer: boolean; replicas: ReplicaState[]; inSync: number; configured: number } {
    return { allowFewer: this.o.allowFewer, replicas: this.replicas.map((r) => ({ ...r })), inSync: this.replicas.filter((r) => r.synced).length, configured: this.replicas.length };
  }
}
