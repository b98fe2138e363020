import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaults } from '../../shared/config.js';
import type { FaultRule } from '../../shared/fault.js';
import { rpcJson, setRpcSelf } from '../../shared/rpc.js';
import { check, formatMinimums, formatViolations, shortfalls, type CheckResult, type Minimums, type Violation } from './checker.js';
import { PartitionCluster, startWorker, type NodeSpec } from './cluster.js';
import { freePort } from '../free-port.js';
import { Evidence } from './evidence.js';
import type { Applied } from './failover.js';
import { applyFault, type FaultContext } from './faults.js';
import { finalState } from './final-state.js';
import { parseHistory, type HistoryEntry } from './history.js';
import { describeAction, formatSchedule, makeSchedule, type FaultAction, type NemesisKind, type Schedule } from './nemesis.js';

// One run of the partition suite: start a cluster, run the workload
// processes while the nemesis applies its schedule, heal, restart the
// master, let re-replication settle, then check the history and the final
// state of every listed replica (scripts/partition/checker.ts).

export interface Network {
  mode: 'layer' | 'netns';
  /** Address and port a node listens on (port 0: any, kept across restarts). */
  host(name: string): string;
  port(name: string): number;
  /** Namespace a node or workload process runs in (netns mode). */
  netns(name: string): string | undefined;
  /** Installs fault rules between named nodes (layer: the fault layer on every process; netns: firewall rules). */
  setFaults(cluster: PartitionCluster, rules: FaultRule[]): Promise<void>;
}

export const layerNetwork: Network = {
  mode: 'layer',
  host: () => '127.0.0.1',
  port: () => 0,
  netns: () => undefined,
  setFaults: (cluster, rules) => cluster.setFaults(rules),
};

export interface RunOptions {
  seed: number;
  durationMs: number;
  nemeses: NemesisKind[];
  /** GFS_UNSAFE for the cluster (deliberately broken builds), '' for the real code. */
  unsafe: string;
  chunkservers: number;
  workers: number;
  chunkSizeBytes: number;
  leaseMs: number;
  heartbeatMs: number;
  deadMs: number;
  network: Network;
  dir?: string;
  /** Keep the run's directory (logs, histories) even when it passed. */
  keep: boolean;
  /** The least that must be acknowledged and checked for the run to pass. */
  minimums: Minimums;
  log: (line: string) => void;
}

export const defaultRunOptions = {
  chunkservers: 5,
  workers: 3,
  chunkSizeBytes: 256 * 1024,
  // Long enough past deadMs that a master which does not wait out leases (GFS_UNSAFE=master-no-lease-wait)
  // grants a new one while clients still send to the old primary, so the primaries' own records show it.
  leaseMs: 3_000,
  heartbeatMs: 200,
  deadMs: 1_000,
};

export interface RunResult {
  ok: boolean;
  dir: string;
  schedule: Schedule;
  actions: string[];
  result: CheckResult;
  settled: boolean;
  /** What fell short of the minimums, or that replication did not settle ([]: enough was checked). */
  tooLittle: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runPartition(o: RunOptions): Promise<RunResult> {
  setRpcSelf('harness'); // never named in a fault rule: the harness always gets through
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), `gfs-partition-${o.seed}-`));
  const csNames = Array.from({ length: o.chunkservers }, (_, i) => `cs${i}`);
  const clientNames = Array.from({ length: o.workers }, (_, i) => `w${i}`);
  const schedule = makeSchedule({ seed: o.seed, durationMs: o.durationMs, nemeses: o.nemeses, chunkservers: csNames, clients: clientNames, leaseMs: o.leaseMs, driftFraction: defaults.clockDriftFraction });
  o.log(formatSchedule(schedule));
  // With the promote nemesis, a log replica (the node named shadow).
  const shadow = o.nemeses.includes('promote');
  const cluster = await makeCluster(o, dir, schedule, csNames, shadow);
  const harnessViolations: Violation[] = [];
  const evidence = new Evidence(cluster);
  const workers: Worker[] = [];
  let stopPolling = () => {};
  let passed = false;
  try {
    await cluster.startAll();
    await clusterReady(cluster.masterUrl, o.chunkservers, 'all chunkservers registered and safe mode over', 30_000);
    o.log(formatMinimums(o.minimums));
    o.log(`cluster up in ${dir}: master ${cluster.masterUrl}${shadow ? ` with log replica (shadow) ${cluster.urlOf('shadow')}` : ''}, ${o.chunkservers} chunkservers, chunk ${o.chunkSizeBytes / 1024} KiB, lease ${o.leaseMs} ms, heartbeat ${o.heartbeatMs} ms, dead after ${o.deadMs} ms${o.unsafe ? `, GFS_UNSAFE=${o.unsafe}` : ''}, mode ${o.network.mode}`);
    stopPolling = pollEvery(evidence, 250);

    const histories = clientNames.map((w) => join(dir, `history-${w}.jsonl`));
    startWorkers(o, cluster, dir, clientNames, histories, workers);
    // The schedule counts from when every workload process has done its first operation: on a loaded
    // machine a process takes many seconds to start, and faults before then would hit an idle cluster.
    await waitFor('every workload process to record its first operation', async () => histories.every((h) => existsSync(h)) || workers.some((w) => w.child.exitCode !== null), 90_000).catch((e: Error) => o.log(`  ${e.message}: starting the nemesis anyway`));
    const start = Date.now();
    const faults: FaultContext = { cluster, evidence, setFaults: (rules) => o.network.setFaults(cluster, rules), chunkservers: csNames, clients: clientNames, leaseMs: o.leaseMs, harnessViolations };
    const actions = await runSchedule(schedule, start, (a) => applyFault(faults, a), o.log);
    await endWorkload(workers, start + o.durationMs, o.log);
    o.log(`workload done after ${((Date.now() - start) / 1000).toFixed(1)}s; healing, then a master SIGKILL + restart`);

    const settled = await restartMasterAndSettle(cluster, o, evidence);
    stopPolling();
    await evidence.pollAll();

    // Final state and check.
    const history: HistoryEntry[] = histories.flatMap((h) => (existsSync(h) ? parseHistory(readFileSync(h, 'utf8')) : []));
    const final = await finalState(cluster, history, o.chunkSizeBytes);
    const result = await check({ history, primaryActs: [...evidence.acts.values()], grants: [...evidence.grants.values()], final, grantSlackMs: 2 * o.heartbeatMs + 50 });
    result.violations.push(...harnessViolations);
    const tooLittle = [...(settled ? [] : ['replication did not settle']), ...shortfalls(result, history, o.minimums)];
    const counters = await serverCounters(cluster);
    o.log(report(result, counters, evidence, tooLittle));
    writeFileSync(join(dir, 'result.json'), JSON.stringify({ seed: o.seed, schedule, actions, result, counters, tooLittle }, null, 1));
    writeFileSync(join(dir, 'evidence.json'), JSON.stringify({ primaryActs: [...evidence.acts.values()], grants: [...evidence.grants.values()], files: final.files }));
    passed = result.violations.length === 0 && tooLittle.length === 0;
    return { ok: passed, dir, schedule, actions, result, settled, tooLittle };
  } finally {
    stopPolling();
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await o.network.setFaults(cluster, []).catch(() => undefined);
    await cluster.stop();
    if (passed && !o.keep && !o.dir) rmSync(dir, { recursive: true, force: true });
    else o.log(`run directory kept: ${dir}`);
  }
}

type Worker = ReturnType<typeof startWorker>;

/** The cluster's nodes; with a log replica (shadow), the master and it must know each other's port up front. */
async function makeCluster(o: RunOptions, dir: string, schedule: Schedule, csNames: string[], shadow: boolean): Promise<PartitionCluster> {
  const masters = shadow ? ['master', 'shadow'] : ['master'];
  const nodes: NodeSpec[] = [...masters, ...csNames].map((name) => ({ name, host: o.network.host(name), port: o.network.port(name), netns: o.network.netns(name), clockSkew: schedule.clockSkew[name] ?? 0 }));
  if (shadow) for (const n of nodes.slice(0, 2)) if (n.port === 0) n.port = await freePort();
  return new PartitionCluster({ dir, chunkservers: o.chunkservers, chunkSizeBytes: o.chunkSizeBytes, leaseMs: o.leaseMs, heartbeatMs: o.heartbeatMs, deadMs: o.deadMs, safeModeMs: 2_000, unsafe: o.unsafe, nodes, shadow, startTimeoutMs: 90_000 });
}

/** Waits until the master at `url` is out of safe mode with every chunkserver alive. */
function clusterReady(url: string, chunkservers: number, what: string, deadlineMs: number): Promise<boolean> {
  return waitFor(what, async () => {
    const s = await rpcJson<{ safeMode: boolean; chunkservers: { alive: boolean }[] }>(url, '/api/status', undefined, { timeoutMs: 2_000 });
    return !s.safeMode && s.chunkservers.filter((c) => c.alive).length === chunkservers;
  }, deadlineMs);
}

/** Polls the evidence every `everyMs`, one poll at a time; returns the stop (safe to call twice). */
function pollEvery(evidence: Evidence, everyMs: number): () => void {
  let polling = false;
  const poller = setInterval(() => {
    if (polling) return;
    polling = true;
    void evidence.pollAll().finally(() => (polling = false));
  }, everyMs);
  return () => clearInterval(poller);
}

/** One workload process per client name, each added to `into` as it starts (so a failure part-way still kills the earlier ones). */
function startWorkers(o: RunOptions, cluster: PartitionCluster, dir: string, clientNames: string[], histories: string[], into: Worker[]): void {
  clientNames.forEach((name, i) => into.push(startWorker({ proc: i, masterUrl: cluster.masterUrls, out: histories[i]!, peers: histories.filter((_, k) => k !== i), durationMs: o.durationMs, seed: o.seed, chunkSizeBytes: o.chunkSizeBytes, netns: o.network.netns(name), logFile: join(dir, `${name}.log`) })));
}

/** The nemesis, one fault at a time, each held for its time and healed; returns what was done, one line each. */
async function runSchedule(schedule: Schedule, start: number, apply: (a: FaultAction) => Promise<Applied>, log: (line: string) => void): Promise<string[]> {
  const actions: string[] = [];
  const at = (ms: number) => `t+${((ms - start) / 1000).toFixed(1).padStart(5)}s`;
  for (const f of schedule.faults) {
    const wait = start + f.atMs - Date.now();
    if (wait > 0) await sleep(wait);
    const t0 = Date.now();
    let applied: Applied | undefined;
    try {
      applied = await apply(f.action);
    } catch (e) {
      actions.push(`${at(t0)} could not apply "${describeAction(f.action)}": ${(e as Error).message}`);
    }
    if (!applied) continue;
    await sleep(Math.max(0, t0 + f.holdMs - Date.now()));
    try {
      await applied.heal();
      actions.push(`${at(t0)} ${applied.desc}; healed after ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    } catch (e) {
      actions.push(`${at(t0)} ${applied.desc}; healing failed: ${(e as Error).message}`);
    }
    log(`  ${actions[actions.length - 1]}`);
  }
  return actions;
}

/** The workload ends by itself at `endMs`; an operation still running gets its op timeout (15 s) and then some, then SIGTERM. */
async function endWorkload(workers: Worker[], endMs: number, log: (line: string) => void): Promise<void> {
  const exited = await Promise.race([Promise.all(workers.map((w) => w.exited)).then(() => true), sleep(Math.max(0, endMs + 25_000 - Date.now())).then(() => false)]);
  if (exited) return;
  log('  workload processes did not finish in time: SIGTERM');
  for (const w of workers) w.child.kill('SIGTERM');
  await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(3_000)]);
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
}

/** Heals everything, then restarts the master (acknowledged metadata must survive it) and waits for replication to settle. */
async function restartMasterAndSettle(cluster: PartitionCluster, o: RunOptions, evidence: Evidence): Promise<boolean> {
  await healAll(cluster, o.network);
  await evidence.pollAll();
  await cluster.kill(cluster.leader);
  await cluster.start(cluster.leader);
  await clusterReady(cluster.leaderUrl, o.chunkservers, 'the restarted master to hear from every chunkserver and leave safe mode', 60_000);
  const settleStart = Date.now();
  const settled = await settle(cluster.leaderUrl, 60_000, o.log);
  o.log(settled ? `replication settled ${((Date.now() - settleStart) / 1000).toFixed(1)}s after the master restart` : 'replication did NOT settle within 60 s (checking anyway)');
  return settled;
}

async function healAll(cluster: PartitionCluster, network: Network): Promise<void> {
  await network.setFaults(cluster, []);
  for (const n of cluster.nodes.keys()) cluster.resume(n);
  // After a promotion the old master stays as the nemesis left it (dead, or restarted and fenced off).
  if (!cluster.isUp(cluster.leader)) await cluster.start(cluster.leader);
  await Promise.all(cluster.chunkserverNames().filter((n) => !cluster.isUp(n)).map((n) => cluster.start(n)));
}

async function waitFor<T>(what: string, cond: () => Promise<T | false | undefined>, deadlineMs: number): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v !== false && v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${last ? ` (${(last as Error).message})` : ''}`);
    await sleep(200);
  }
}

/**
 * Waits until the cluster is quiet, twice in a row: no chunk under- or over-replicated or missing,
 * and no clone (repair or rebalancing) under way, so the final state is not read mid-move.
 */
async function settle(masterUrl: string, deadlineMs: number, log: (line: string) => void): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  let good = 0;
  let last = 'no answer';
  while (Date.now() < until) {
    try {
      const f = await rpcJson<{ summary: { underReplicated: number; overReplicated: number; missing: number } }>(masterUrl, '/api/fsck', undefined, { query: { path: '/' }, timeoutMs: 5_000 });
      const st = await rpcJson<{ counters: { clonesStarted: number; clonesDone: number; clonesFailed: number } }>(masterUrl, '/api/status', undefined, { timeoutMs: 5_000 });
      const cloning = st.counters.clonesStarted - st.counters.clonesDone - st.counters.clonesFailed;
      good = f.summary.underReplicated === 0 && f.summary.overReplicated === 0 && f.summary.missing === 0 && cloning === 0 ? good + 1 : 0;
      last = `${f.summary.underReplicated} under-replicated, ${f.summary.overReplicated} over-replicated, ${f.summary.missing} missing, ${cloning} clones under way`;
      if (good >= 2) return true;
    } catch {
      good = 0;
    }
    await sleep(500);
  }
  log(`  last fsck: ${last}`);
  return false;
}

interface ServerCounters {
  name: string;
  reads?: { served: number; refusedStale: number };
  refusedNoLease?: number;
}

async function serverCounters(cluster: PartitionCluster): Promise<{ servers: ServerCounters[]; master?: Record<string, number> }> {
  const servers = await Promise.all(
    cluster.chunkserverNames().map(async (name): Promise<ServerCounters> => {
      try {
        const s = await rpcJson<{ reads?: { served: number; refusedStale: number }; counters: { refusedNoLease: number } }>(cluster.nodes.get(name)!.url, '/debug/state', undefined, { timeoutMs: 3_000 });
        return { name, reads: s.reads, refusedNoLease: s.counters.refusedNoLease };
      } catch {
        return { name };
      }
    }),
  );
  return { servers };
}

function report(r: CheckResult, counters: { servers: ServerCounters[] }, ev: Evidence, tooLittle: string[]): string {
  const lines = ['operations (ok / fail / unknown):'];
  for (const [k, c] of Object.entries(r.counts)) lines.push(`  ${k.padEnd(7)} ${String(c.ok).padStart(6)} ${String(c.fail).padStart(6)} ${String(c.unknown).padStart(6)}`);
  const c = r.checked;
  lines.push(`checked: ${c.primaryRecords} primary records from ${ev.polls} polls (${ev.pollFailures} failed), ${c.grants} lease grants, ${c.ackedMutations} acknowledged mutations on ${c.replicaChunksRead} replica chunks (${c.replicasDroppedMeanwhile} dropped by healing meanwhile), ${c.constrainedReads} of ${c.reads} reads against acknowledged data, ${c.ackedMetadata} acknowledged creates/mkdirs, ${c.deletedPaths} deleted and ${c.undeletedPaths} undeleted paths (${c.eitherPaths} left either way by unknown outcomes)`);
  const served = counters.servers.reduce((s, x) => s + (x.reads?.served ?? 0), 0);
  const refused = counters.servers.reduce((s, x) => s + (x.reads?.refusedStale ?? 0), 0);
  const noLease = counters.servers.reduce((s, x) => s + (x.refusedNoLease ?? 0), 0);
  lines.push(`chunkservers since their last start: ${served} reads served, ${refused} refused as stale, ${noLease} mutations refused for want of a lease`);
  if (r.violations.length > 0) lines.push(`verdict: FAIL, ${r.violations.length} violations\n${formatViolations(r.violations)}`);
  if (tooLittle.length > 0) lines.push(`verdict: FAIL, too little checked: ${tooLittle.join(', ')}`);
  if (r.violations.length === 0 && tooLittle.length === 0) lines.push('verdict: PASS (no invariant violated, enough checked)');
  return lines.join('\n');
}
