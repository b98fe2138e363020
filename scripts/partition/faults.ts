import type { GrantRecord } from '../../master/core/leases.js';
import type { FaultRule } from '../../shared/fault.js';
import type { Violation } from './checker.js';
import type { PartitionCluster } from './cluster.js';
import type { Evidence } from './evidence.js';
import { killMasterInBump, promoteShadow, type Applied } from './failover.js';
import { cut, describeAction, type FaultAction } from './nemesis.js';

// Applying one of the nemesis's scheduled actions (scripts/partition/nemesis.ts) to a running
// cluster: which node it hits (the primary of a busy chunk where it can), the fault rules or
// signals, and how to heal it.

export interface FaultContext {
  cluster: PartitionCluster;
  evidence: Evidence;
  /** Installs fault rules between named nodes ([]: none). */
  setFaults: (rules: FaultRule[]) => Promise<void>;
  chunkservers: string[];
  clients: string[];
  leaseMs: number;
  /** Where the promotion nemesis reports what it saw go wrong. */
  harnessViolations: Violation[];
}

interface Target {
  primary: string;
  secondaries: string[];
  what: string;
}

/** A primary with a live lease, the pick leaning towards the busiest chunks. */
async function hot(c: FaultContext, pick: number): Promise<Target | undefined> {
  await c.evidence.pollMaster();
  const now = Date.now();
  // Hottest first: the chunks whose primaries ordered the most mutations (shared append files, where
  // several clients hold the lease at once); the pick leans towards them (pick^2).
  const acts = (g: GrantRecord) => c.evidence.acts.get(`${g.primary}|${g.handle}|${g.version}`)?.acts ?? 0;
  const active = [...c.evidence.grants.values()]
    .filter((g) => g.expiresAtMs > now && c.cluster.isUp(g.primary) && !c.cluster.nodes.get(g.primary)!.paused)
    .sort((a, b) => acts(b) - acts(a) || (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : a.version - b.version));
  if (active.length === 0) return undefined;
  const g = active[Math.min(active.length - 1, Math.floor(pick * pick * active.length))]!;
  return { primary: g.primary, secondaries: g.secondaries, what: `primary of ${g.handle} v${g.version}` };
}

function anyServer(c: FaultContext, pick: number): Target {
  const cs = c.chunkservers;
  const primary = cs[Math.min(cs.length - 1, Math.floor(pick * cs.length))]!;
  return { primary, secondaries: cs.filter((x) => x !== primary).slice(0, 2), what: 'no lease active: a random chunkserver' };
}

const hotOrAny = async (c: FaultContext, pick: number): Promise<Target> => (await hot(c, pick)) ?? anyServer(c, pick);

/** Applies `a`; returns what it did and how to heal it. */
export async function applyFault(c: FaultContext, a: FaultAction): Promise<Applied> {
  const { cluster, evidence } = c;
  const clear = async () => c.setFaults([]);
  switch (a.type) {
    case 'isolate-primary-master': {
      const t = await hotOrAny(c, a.pick);
      const rules = a.way === 'both' ? cut(t.primary, 'master') : a.way === 'to-master' ? [{ from: t.primary, to: 'master', drop: true }] : [{ from: 'master', to: t.primary, drop: true }];
      await c.setFaults(rules);
      return { desc: `${t.primary} (${t.what}) cut from the master (${a.way})`, heal: clear };
    }
    case 'isolate-primary-secondaries': {
      const t = await hotOrAny(c, a.pick);
      await c.setFaults(t.secondaries.flatMap((s) => cut(t.primary, s)));
      return { desc: `${t.primary} (${t.what}) cut from its secondaries ${t.secondaries.join(' ') || '(none)'}`, heal: clear };
    }
    case 'halves': {
      const names = Object.keys(a.side);
      const rules: FaultRule[] = [];
      for (const x of names) for (const y of names) if (a.side[x] === 0 && a.side[y] === 1) rules.push(...cut(x, y));
      await c.setFaults(rules);
      return { desc: describeAction(a), heal: clear };
    }
    case 'one-way':
      await c.setFaults([{ from: a.from, to: a.to, drop: true }]);
      return { desc: describeAction(a), heal: clear };
    case 'slow-primary': {
      const t = await hotOrAny(c, a.pick);
      await c.setFaults([...cut(t.primary, 'master'), ...c.clients.map((w) => ({ from: w, to: t.primary, delayMs: a.delayMs }))]);
      return { desc: `${t.primary} (${t.what}) cut from the master, clients' requests to it ${a.delayMs} ms late`, heal: clear };
    }
    case 'kill-chunkserver': {
      const t = a.primary ? await hotOrAny(c, a.pick) : anyServer(c, a.pick);
      await evidence.pollServer(t.primary);
      await cluster.kill(t.primary);
      return { desc: `SIGKILL ${t.primary}${a.primary ? ` (${t.what})` : ''}`, heal: () => cluster.start(t.primary) };
    }
    case 'kill-master': {
      const leader = cluster.leader;
      await evidence.pollMaster();
      await cluster.kill(leader);
      return { desc: `SIGKILL the master (${leader})`, heal: () => cluster.start(leader) };
    }
    case 'kill-master-in-bump':
      await evidence.pollMaster();
      return killMasterInBump(cluster, c.setFaults, a.delayMs, 4 * c.leaseMs);
    case 'promote-shadow':
      await evidence.pollMaster();
      return promoteShadow(cluster, a.restartOld, 30_000, c.harnessViolations);
    case 'pause-primary': {
      const t = await hotOrAny(c, a.pick);
      await evidence.pollServer(t.primary);
      cluster.pause(t.primary);
      return { desc: `SIGSTOP ${t.primary} (${t.what})`, heal: async () => cluster.resume(t.primary) };
    }
  }
}
