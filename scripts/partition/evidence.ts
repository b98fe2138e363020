import type { PrimaryActs } from '../../chunkserver/leases.js';
import type { GrantRecord } from '../../master/core/leases.js';
import { rpcJson } from '../../shared/rpc.js';
import type { ServerActs } from './checker.js';
import type { PartitionCluster } from './cluster.js';

// What the checker needs from the processes themselves (scripts/partition/checker.ts
// invariant 1): the chunkservers' records of acting as primary and the masters'
// lease grants, polled during the run and merged.

/** Primary logs and lease grants, polled from every live process and merged (a killed process's memory is gone). */
export class Evidence {
  readonly acts = new Map<string, ServerActs>();
  readonly grants = new Map<string, GrantRecord>();
  polls = 0;
  pollFailures = 0;

  constructor(private readonly cluster: PartitionCluster) {}

  async pollServer(name: string): Promise<void> {
    const n = this.cluster.nodes.get(name)!;
    if (!this.cluster.isUp(name) || n.paused || !n.url) return;
    try {
      const r = await rpcJson<{ id: string; entries: PrimaryActs[] }>(n.url, '/debug/primary-log', undefined, { timeoutMs: 2_000 });
      this.polls++;
      for (const e of r.entries) {
        const key = `${name}|${e.handle}|${e.version}`;
        const old = this.acts.get(key);
        if (!old) {
          this.acts.set(key, { ...e, server: name });
          continue;
        }
        old.firstActMs = Math.min(old.firstActMs, e.firstActMs);
        if (e.lastActMs >= old.lastActMs) {
          old.lastActMs = e.lastActMs;
          old.believedExpiryMs = e.believedExpiryMs;
        }
        old.acts = Math.max(old.acts, e.acts);
      }
    } catch {
      this.pollFailures++;
    }
  }

  /** Every master node: after a promotion both may have granted leases. */
  async pollMaster(): Promise<void> {
    await Promise.all(this.cluster.masterNames().map((m) => this.pollMasterNode(m)));
  }

  private async pollMasterNode(name: string): Promise<void> {
    const n = this.cluster.nodes.get(name)!;
    if (!this.cluster.isUp(name) || n.paused || !n.url) return;
    try {
      const r = await rpcJson<{ grants: GrantRecord[] }>(n.url, '/debug/leases', undefined, { timeoutMs: 2_000 });
      this.polls++;
      for (const g of r.grants) {
        const key = `${g.handle}@${g.version}`;
        // The latest answer is the master's current truth (an extension moves the expiry later, a
        // revocation earlier); a record the master no longer has (it restarted) keeps its last value.
        const old = this.grants.get(key);
        this.grants.set(key, { ...g, grantedAtMs: Math.min(g.grantedAtMs, old?.grantedAtMs ?? Infinity) });
      }
    } catch {
      this.pollFailures++;
    }
  }

  async pollAll(): Promise<void> {
    await Promise.all([this.pollMaster(), ...this.cluster.chunkserverNames().map((n) => this.pollServer(n))]);
  }
}
