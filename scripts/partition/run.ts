import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PrimaryActs } from '../../chunkserver/leases.js';
import type { GrantRecord } from '../../master/core/leases.js';
import { defaults } from '../../shared/config.js';
import { GfsError } from '../../shared/errors.js';
import type { FaultRule } from '../../shared/fault.js';
import { rpcJson, rpcStream, setRpcSelf } from '../../shared/rpc.js';
import type { ChunksAnswer, FileInfo } from '../../shared/wire.js';
import { check, formatMinimums, formatViolations, shortfalls, type CheckResult, type FileState, type Minimums, type ServerActs, type Violation } from './checker.js';
import { PartitionCluster, startWorker, type NodeSpec } from './cluster.js';
import { freePort } from '../free-port.js';
import { killMasterInBump, promoteShadow } from './failover.js';
import { parseHistory, type HistoryEntry } from './history.js';
import { cut, describeAction, formatSchedule, makeSchedule, type FaultAction, type NemesisKind, type Schedule } from './nemesis.js';

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

/** Primary logs and lease grants, polled from every live process and merged (a killed process's memory is gone). */
class Evidence {
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

interface Target {
  primary: string;
  secondaries: string[];
  what: string;
}

export async function runPartition(o: RunOptions): Promise<RunResult> {
  setRpcSelf('harness'); // never named in a fault rule: the harness always gets through
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), `gfs-partition-${o.seed}-`));
  const csNames = Array.from({ length: o.chunkservers }, (_, i) => `cs${i}`);
  const clientNames = Array.from({ length: o.workers }, (_, i) => `w${i}`);
  const schedule = makeSchedule({ seed: o.seed, durationMs: o.durationMs, nemeses: o.nemeses, chunkservers: csNames, clients: clientNames, leaseMs: o.leaseMs, driftFraction: defaults.clockDriftFraction });
  o.log(formatSchedule(schedule));
  // With the promote nemesis, a log replica; the master and it must know each other's port up front.
  const shadow = o.nemeses.includes('promote');
  const masters = shadow ? ['master', 'shadow'] : ['master'];
  const nodes: NodeSpec[] = [...masters, ...csNames].map((name) => ({ name, host: o.network.host(name), port: o.network.port(name), netns: o.network.netns(name), clockSkew: schedule.clockSkew[name] ?? 0 }));
  if (shadow) for (const n of nodes.slice(0, 2)) if (n.port === 0) n.port = await freePort();
  const cluster = new PartitionCluster({ dir, chunkservers: o.chunkservers, chunkSizeBytes: o.chunkSizeBytes, leaseMs: o.leaseMs, heartbeatMs: o.heartbeatMs, deadMs: o.deadMs, safeModeMs: 2_000, unsafe: o.unsafe, nodes, shadow, startTimeoutMs: 90_000 });
  const harnessViolations: Violation[] = [];
  const evidence = new Evidence(cluster);
  const actions: string[] = [];
  const workers: ReturnType<typeof startWorker>[] = [];
  let poller: NodeJS.Timeout | undefined;
  let passed = false;
  try {
    await cluster.startAll();
    await waitFor('all chunkservers registered and safe mode over', async () => {
      const s = await rpcJson<{ safeMode: boolean; chunkservers: { alive: boolean }[] }>(cluster.masterUrl, '/api/status', undefined, { timeoutMs: 2_000 });
      return !s.safeMode && s.chunkservers.filter((c) => c.alive).length === o.chunkservers;
    }, 30_000);
    o.log(formatMinimums(o.minimums));
    o.log(`cluster up in ${dir}: master ${cluster.masterUrl}${shadow ? ` with log replica (shadow) ${cluster.urlOf('shadow')}` : ''}, ${o.chunkservers} chunkservers, chunk ${o.chunkSizeBytes / 1024} KiB, lease ${o.leaseMs} ms, heartbeat ${o.heartbeatMs} ms, dead after ${o.deadMs} ms${o.unsafe ? `, GFS_UNSAFE=${o.unsafe}` : ''}, mode ${o.network.mode}`);

    let polling = false;
    poller = setInterval(() => {
      if (polling) return;
      polling = true;
      void evidence.pollAll().finally(() => (polling = false));
    }, 250);

    const histories = clientNames.map((w) => join(dir, `history-${w}.jsonl`));
    for (let i = 0; i < o.workers; i++) {
      workers.push(startWorker({ proc: i, masterUrl: cluster.masterUrls, out: histories[i]!, peers: histories.filter((_, k) => k !== i), durationMs: o.durationMs, seed: o.seed, chunkSizeBytes: o.chunkSizeBytes, netns: o.network.netns(clientNames[i]!), logFile: join(dir, `${clientNames[i]}.log`) }));
    }
    // The schedule counts from when every workload process has done its first operation: on a loaded
    // machine a process takes many seconds to start, and faults before then would hit an idle cluster.
    await waitFor('every workload process to record its first operation', async () => histories.every((h) => existsSync(h)) || workers.some((w) => w.child.exitCode !== null), 90_000).catch((e: Error) => o.log(`  ${e.message}: starting the nemesis anyway`));
    const start = Date.now();

    // The nemesis, one fault at a time.
    const at = (ms: number) => `t+${((ms - start) / 1000).toFixed(1).padStart(5)}s`;
    const hot = async (pick: number): Promise<Target | undefined> => {
      await evidence.pollMaster();
      const now = Date.now();
      // Hottest first: the chunks whose primaries ordered the most mutations (shared append files, where
      // several clients hold the lease at once); the pick leans towards them (pick^2).
      const acts = (g: GrantRecord) => evidence.acts.get(`${g.primary}|${g.handle}|${g.version}`)?.acts ?? 0;
      const active = [...evidence.grants.values()]
        .filter((g) => g.expiresAtMs > now && cluster.isUp(g.primary) && !cluster.nodes.get(g.primary)!.paused)
        .sort((a, b) => acts(b) - acts(a) || (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : a.version - b.version));
      if (active.length === 0) return undefined;
      const g = active[Math.min(active.length - 1, Math.floor(pick * pick * active.length))]!;
      return { primary: g.primary, secondaries: g.secondaries, what: `primary of ${g.handle} v${g.version}` };
    };
    const anyServer = (pick: number): Target => {
      const primary = csNames[Math.min(csNames.length - 1, Math.floor(pick * csNames.length))]!;
      return { primary, secondaries: csNames.filter((c) => c !== primary).slice(0, 2), what: 'no lease active: a random chunkserver' };
    };
    const apply = async (a: FaultAction): Promise<{ desc: string; heal: () => Promise<void> }> => {
      const clear = async () => o.network.setFaults(cluster, []);
      switch (a.type) {
        case 'isolate-primary-master': {
          const t = (await hot(a.pick)) ?? anyServer(a.pick);
          const rules = a.way === 'both' ? cut(t.primary, 'master') : a.way === 'to-master' ? [{ from: t.primary, to: 'master', drop: true }] : [{ from: 'master', to: t.primary, drop: true }];
          await o.network.setFaults(cluster, rules);
          return { desc: `${t.primary} (${t.what}) cut from the master (${a.way})`, heal: clear };
        }
        case 'isolate-primary-secondaries': {
          const t = (await hot(a.pick)) ?? anyServer(a.pick);
          await o.network.setFaults(cluster, t.secondaries.flatMap((s) => cut(t.primary, s)));
          return { desc: `${t.primary} (${t.what}) cut from its secondaries ${t.secondaries.join(' ') || '(none)'}`, heal: clear };
        }
        case 'halves': {
          const names = Object.keys(a.side);
          const rules: FaultRule[] = [];
          for (const x of names) for (const y of names) if (a.side[x] === 0 && a.side[y] === 1) rules.push(...cut(x, y));
          await o.network.setFaults(cluster, rules);
          return { desc: describeAction(a), heal: clear };
        }
        case 'one-way':
          await o.network.setFaults(cluster, [{ from: a.from, to: a.to, drop: true }]);
          return { desc: describeAction(a), heal: clear };
        case 'slow-primary': {
          const t = (await hot(a.pick)) ?? anyServer(a.pick);
          await o.network.setFaults(cluster, [...cut(t.primary, 'master'), ...clientNames.map((w) => ({ from: w, to: t.primary, delayMs: a.delayMs }))]);
          return { desc: `${t.primary} (${t.what}) cut from the master, clients' requests to it ${a.delayMs} ms late`, heal: clear };
        }
        case 'kill-chunkserver': {
          const t = a.primary ? ((await hot(a.pick)) ?? anyServer(a.pick)) : anyServer(a.pick);
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
          return killMasterInBump(cluster, (rules) => o.network.setFaults(cluster, rules), a.delayMs, 4 * o.leaseMs);
        case 'promote-shadow':
          await evidence.pollMaster();
          return promoteShadow(cluster, a.restartOld, 30_000, harnessViolations);
        case 'pause-primary': {
          const t = (await hot(a.pick)) ?? anyServer(a.pick);
          await evidence.pollServer(t.primary);
          cluster.pause(t.primary);
          return { desc: `SIGSTOP ${t.primary} (${t.what})`, heal: async () => cluster.resume(t.primary) };
        }
      }
    };
    for (const f of schedule.faults) {
      const wait = start + f.atMs - Date.now();
      if (wait > 0) await sleep(wait);
      const t0 = Date.now();
      let applied: { desc: string; heal: () => Promise<void> } | undefined;
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
      o.log(`  ${actions[actions.length - 1]}`);
    }

    // The workload ends by itself; an operation still running gets its op timeout (15 s) and then some.
    const exited = await Promise.race([Promise.all(workers.map((w) => w.exited)).then(() => true), sleep(Math.max(0, start + o.durationMs + 25_000 - Date.now())).then(() => false)]);
    if (!exited) {
      o.log('  workload processes did not finish in time: SIGTERM');
      for (const w of workers) w.child.kill('SIGTERM');
      await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(3_000)]);
      for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    }
    o.log(`workload done after ${((Date.now() - start) / 1000).toFixed(1)}s; healing, then a master SIGKILL + restart`);

    // Heal everything, then restart the master: acknowledged metadata must survive it.
    await healAll(cluster, o.network);
    await evidence.pollAll();
    await cluster.kill(cluster.leader);
    await cluster.start(cluster.leader);
    await waitFor('the restarted master to hear from every chunkserver and leave safe mode', async () => {
      const s = await rpcJson<{ safeMode: boolean; chunkservers: { alive: boolean }[] }>(cluster.leaderUrl, '/api/status', undefined, { timeoutMs: 2_000 });
      return !s.safeMode && s.chunkservers.filter((c) => c.alive).length === o.chunkservers;
    }, 60_000);
    const settleStart = Date.now();
    const settled = await settle(cluster.leaderUrl, 60_000, o.log);
    o.log(settled ? `replication settled ${((Date.now() - settleStart) / 1000).toFixed(1)}s after the master restart` : 'replication did NOT settle within 60 s (checking anyway)');
    clearInterval(poller);
    poller = undefined;
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
    if (poller) clearInterval(poller);
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await o.network.setFaults(cluster, []).catch(() => undefined);
    await cluster.stop();
    if (passed && !o.keep && !o.dir) rmSync(dir, { recursive: true, force: true });
    else o.log(`run directory kept: ${dir}`);
  }
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

async function retrying<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof GfsError && e.code === 'NOT_FOUND') throw e;
      last = e;
      await sleep(300 * (i + 1));
    }
  }
  throw last;
}

async function finalState(cluster: PartitionCluster, history: HistoryEntry[], chunkSizeBytes: number): Promise<{ files: Record<string, FileState>; readChunk: (replica: string, handle: string, version: number) => Promise<Buffer | { error: string }> }> {
  const masterUrl = cluster.leaderUrl;
  const urls = new Map<string, string>();
  const files: Record<string, FileState> = {};
  for (const path of new Set(history.map((e) => e.path))) {
    let info: FileInfo;
    try {
      info = await retrying(() => rpcJson<FileInfo>(masterUrl, '/api/stat', undefined, { query: { path }, timeoutMs: 5_000 }));
    } catch (e) {
      if (e instanceof GfsError && e.code === 'NOT_FOUND') {
        files[path] = { exists: false, chunkSizeBytes, chunks: [] };
        continue;
      }
      throw e;
    }
    if (info.type !== 'file' || info.chunkCount === 0) {
      files[path] = { exists: true, chunkSizeBytes: info.chunkSizeBytes || chunkSizeBytes, chunks: [] };
      continue;
    }
    const a = await retrying(() => rpcJson<ChunksAnswer>(masterUrl, '/api/chunks', { path, startIndex: 0, count: info.chunkCount }, { timeoutMs: 10_000 }));
    for (const c of a.chunks) for (const r of c.replicas) urls.set(r.id, r.url);
    files[path] = { exists: true, chunkSizeBytes: a.chunkSizeBytes, chunks: a.chunks.map((c) => ({ index: c.index, handle: c.handle, version: c.version, replicas: c.replicas.map((r) => r.id) })) };
  }
  const where = new Map<string, { path: string; index: number }>();
  for (const [path, f] of Object.entries(files)) for (const c of f.chunks) where.set(c.handle, { path, index: c.index });
  /** Whether the master, asked again after a few heartbeats, still lists `replica` for `handle`. */
  const stillListed = async (replica: string, handle: string): Promise<boolean> => {
    const w = where.get(handle);
    if (!w) return true;
    // A few heartbeats for the master to hear of a deletion it ordered.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const a = await rpcJson<ChunksAnswer>(masterUrl, '/api/chunks', { path: w.path, startIndex: w.index, count: 1 }, { timeoutMs: 10_000 });
        if (!a.chunks.some((c) => c.handle === handle && c.replicas.some((r) => r.id === replica))) return false;
      } catch {
        // asked again below
      }
      await sleep(500);
    }
    return true;
  };
  return {
    files,
    readChunk: async (replica, handle, version) => {
      const url = urls.get(replica);
      if (!url) return { error: `no URL for ${replica}` };
      try {
        const res = await rpcStream(url, '/chunk/read', undefined, { query: { handle, offset: 0, length: chunkSizeBytes, version }, timeoutMs: 10_000 });
        return Buffer.from(await res.body.arrayBuffer());
      } catch (e) {
        return { error: (e as Error).message, unlisted: !(await stillListed(replica, handle)) };
      }
    },
  };
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
