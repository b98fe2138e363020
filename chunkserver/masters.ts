import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../shared/atomic-file.js';

// The masters a chunkserver reports to (`--master URL,URL`: the master and its
// shadows) and the fence against a master that was failed over.
//
// Every master stamps its answers and its orders with its epoch (x-gfs-epoch,
// raised by each promotion of a shadow, master/replicas.ts). The chunkserver
// keeps the highest epoch it has seen, durably (a restarted chunkserver must
// not take orders from a master it had already seen superseded), refuses
// orders carrying a lower one (STALE_EPOCH), ignores heartbeat answers from
// lower epochs and from shadows, and sends lease questions and corruption
// reports to the master of the highest epoch. It also tells every master the
// highest epoch in its heartbeats, so a returning old master learns it is
// fenced off.

export interface MasterView {
  url: string;
  epoch: number | undefined;
  role: 'master' | 'shadow' | undefined;
  lastAnswerAtMs: number | undefined;
}

export class MasterSet {
  readonly masters: MasterView[];
  private maxEpochSeen: number;
  private readonly file: string;

  constructor(urls: string[], dir: string) {
    if (urls.length === 0 || urls.length > 16) throw new Error('between 1 and 16 master URLs');
    this.masters = urls.map((u) => ({ url: u.replace(/\/+$/, ''), epoch: undefined, role: undefined, lastAnswerAtMs: undefined }));
    mkdirSync(dir, { recursive: true });
    this.file = join(dir, 'master-epoch');
    this.maxEpochSeen = existsSync(this.file) ? Number(readFileSync(this.file, 'utf8').trim()) || 0 : 0;
  }

  get maxEpoch(): number {
    return this.maxEpochSeen;
  }

  /** Records an epoch seen on an order or answer; true if it may be obeyed (not lower than the highest seen). */
  see(epoch: number): boolean {
    if (!Number.isSafeInteger(epoch) || epoch < 0) return false;
    if (epoch < this.maxEpochSeen) return false;
    if (epoch > this.maxEpochSeen) {
      this.maxEpochSeen = epoch;
      // Durable before any order of the new epoch is obeyed (rare: once per failover), the rename included.
      writeFileAtomicSync(this.file, `${epoch}\n`);
    }
    return true;
  }

  /** A heartbeat answer from `url`: whether its orders count (a master, of the highest epoch). */
  answered(url: string, epoch: number | undefined, role: 'master' | 'shadow' | undefined): boolean {
    const m = this.masters.find((x) => x.url === url);
    const e = epoch ?? 1;
    if (m) {
      m.epoch = e;
      m.role = role ?? 'master';
      m.lastAnswerAtMs = Date.now();
    }
    if (!this.see(e)) return false;
    return (role ?? 'master') === 'master';
  }

  /** Where lease questions and reports go: the answering master of the highest epoch, else the first URL. */
  leaderUrl(): string {
    const fresh = this.masters.filter((m) => m.role === 'master' && m.epoch !== undefined && m.epoch >= this.maxEpochSeen);
    fresh.sort((a, b) => (b.lastAnswerAtMs ?? 0) - (a.lastAnswerAtMs ?? 0));
    return (fresh[0] ?? this.masters[0]!).url;
  }

  isLeader(url: string): boolean {
    return this.leaderUrl() === url;
  }
}
