import { join } from 'node:path';
import type { FaultRule } from '../../shared/fault.js';
import { rpcJson } from '../../shared/rpc.js';
import type { Violation } from './checker.js';
import type { PartitionCluster } from './cluster.js';
import { OpLogWatch } from './oplog-watch.js';

// The nemeses that hit the master itself beyond a plain SIGKILL: a kill
// inside a version bump ('bump') and the promotion of the log replica
// ('promote'), see nemesis.ts. Each returns what it did and how to heal.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Applied {
  desc: string;
  heal: () => Promise<void>;
}

/**
 * Delays the master's calls to every chunkserver (its /chunk/version among them) so a bump's window
 * is long, waits until its op log shows a bump logged and not yet confirmed, and SIGKILLs it there
 * (or at the end of `waitMs` if no lease was granted meanwhile: said in the description).
 */
export async function killMasterInBump(cluster: PartitionCluster, setFaults: (rules: FaultRule[]) => Promise<void>, delayMs: number, waitMs: number): Promise<Applied> {
  const leader = cluster.leader;
  const watch = new OpLogWatch(join(cluster.cfg.dir, leader));
  watch.inWindow(0); // skip what was logged before
  await setFaults(cluster.chunkserverNames().map((cs) => ({ from: 'master', to: cs, delayMs })));
  const until = Date.now() + waitMs;
  let pending: string[] = [];
  while (Date.now() < until) {
    pending = watch.inWindow(delayMs);
    if (pending.length > 0) break;
    await sleep(25);
  }
  await cluster.kill(leader);
  return {
    desc: pending.length > 0 ? `SIGKILL the master (${leader}) inside the bump of ${pending.join(' ')}` : `SIGKILL the master (${leader}): no bump began within ${waitMs} ms`,
    heal: async () => {
      await setFaults([]);
      await cluster.start(leader);
    },
  };
}

/**
 * SIGKILLs the master and promotes the shadow (POST /api/promote {force:false}, as `gfs master
 * promote` does). The heal either leaves the old master dead or restarts it as it was, and then
 * expects it fenced off within `fenceWithinMs`; if not, a violation goes to `out`.
 */
export async function promoteShadow(cluster: PartitionCluster, restartOld: boolean, fenceWithinMs: number, out: Violation[]): Promise<Applied> {
  if (!cluster.cfg.shadow) throw new Error('no log replica in this run');
  if (cluster.leader !== 'master') throw new Error('the shadow was promoted already');
  await cluster.kill('master');
  let promoted: { epoch: number; appliedIndex: number } | undefined;
  let last: unknown;
  // The shadow may still be applying the last batch it accepted: a few tries, a few seconds.
  for (let i = 0; i < 10 && !promoted; i++) {
    try {
      promoted = await rpcJson<{ epoch: number; appliedIndex: number }>(cluster.urlOf('shadow'), '/api/promote', { force: false }, { timeoutMs: 10_000 });
    } catch (e) {
      last = e;
      await sleep(500);
    }
  }
  if (!promoted) throw new Error(`the shadow refused promotion: ${(last as Error).message}`);
  cluster.leader = 'shadow';
  const desc = `SIGKILL the master, shadow promoted (epoch ${promoted.epoch}, log index ${promoted.appliedIndex})`;
  if (!restartOld) return { desc: `${desc}; the old master stays dead`, heal: async () => undefined };
  return {
    desc: `${desc}; the old master restarted as it was`,
    heal: async () => {
      await cluster.start('master');
      const until = Date.now() + fenceWithinMs;
      let status: { role: string; epoch: number; fencedByEpoch?: number } | undefined;
      while (Date.now() < until) {
        status = (await rpcJson<typeof status>(cluster.urlOf('master'), '/api/status', undefined, { timeoutMs: 5_000 }).catch(() => undefined)) ?? status;
        if (status?.fencedByEpoch !== undefined) return;
        await sleep(200);
      }
      // One that never answered acted as nothing either; one that answered as an unfenced master is a second master.
      if (status) out.push({ invariant: 1, kind: 'old-master-not-fenced', message: `the old master, restarted after the shadow's promotion to epoch ${promoted.epoch}, was not fenced off within ${fenceWithinMs} ms (it answers as ${status.role} of epoch ${status.epoch}, not fenced)`, ops: ['master'] });
    },
  };
}
