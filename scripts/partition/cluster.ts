import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FaultRule } from '../../shared/fault.js';
import { daemonV8Flags, programPath } from '../../shared/programs.js';
import { rpcJson } from '../../shared/rpc.js';

// The partition suite's cluster: a master and chunkservers as separate OS
// processes, which the nemesis kills (SIGKILL), restarts on the same address,
// pauses (SIGSTOP) and resumes (SIGCONT) by PID. In layer mode every node
// listens on 127.0.0.1; in netns mode each runs inside its own network
// namespace (`ip netns exec NS ...`, see netns.ts) on its own address.
// Every process is tracked: stop() resumes paused ones and kills the rest by
// PID, and a process exit handler does the same if the run crashes.

/** The daemons' own programs, not `gfs master`: the nemesis's signals must reach the daemon's PID. */
const masterPath = programPath('master');
const chunkserverPath = programPath('chunkserver');
export const workerPath = fileURLToPath(new URL('../partition-worker.js', import.meta.url));

const live = new Set<ChildProcess>();
const paused = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) {
    if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) continue;
    try {
      if (paused.has(p)) process.kill(p.pid, 'SIGCONT');
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

export interface NodeSpec {
  /** "master" or a chunkserver id (cs0, cs1, ...): the name fault rules use. */
  name: string;
  /** Address to bind and advertise. */
  host: string;
  /** 0 for any (layer mode, first start); the port is kept across restarts. */
  port: number;
  /** Network namespace to run in (netns mode). */
  netns?: string;
  /** GFS_CLOCK_SKEW for this node. */
  clockSkew: number;
}

export interface ClusterConfig {
  dir: string;
  chunkservers: number;
  chunkSizeBytes: number;
  leaseMs: number;
  heartbeatMs: number;
  deadMs: number;
  safeModeMs: number;
  /** GFS_UNSAFE for every node (deliberately broken builds). */
  unsafe: string;
  nodes: NodeSpec[];
  /**
   * A log replica: the node named "shadow" (its port fixed up front) runs `--shadow-of` the master,
   * which runs with `--log-replicas`; chunkservers and workload processes get both URLs.
   */
  shadow?: boolean;
  /** How long a process may take to print its address (default 30 s; a loaded machine needs more). */
  startTimeoutMs?: number;
}

export interface RunningNode {
  spec: NodeSpec;
  proc: ChildProcess | undefined;
  url: string;
  paused: boolean;
  starts: number;
}

/** `ip netns exec NS node ...` in netns mode, `node ...` otherwise. */
export function nodeCommand(netns: string | undefined, args: string[]): { cmd: string; args: string[] } {
  return netns ? { cmd: 'ip', args: ['netns', 'exec', netns, process.execPath, ...args] } : { cmd: process.execPath, args };
}

function startProcess(name: string, netns: string | undefined, args: string[], env: Record<string, string>, logFile: string, startTimeoutMs = 30_000): { proc: ChildProcess; ready: Promise<string> } {
  const logFd = openSync(logFile, 'a');
  const c = nodeCommand(netns, args);
  const proc = spawn(c.cmd, c.args, { stdio: ['ignore', 'pipe', logFd], env: { ...process.env, GFS_LOG_LEVEL: process.env.GFS_LOG_LEVEL ?? 'warn', ...env } });
  closeSync(logFd);
  live.add(proc);
  proc.once('exit', () => {
    live.delete(proc);
    paused.delete(proc);
  });
  const ready = new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${startTimeoutMs / 1000} s (log: ${logFile})`)), startTimeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!out.includes('\n')) return;
      clearTimeout(timer);
      const parts = out.split('\n')[0]!.trim().split(' ');
      resolve(parts[parts.length - 1]!);
    });
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited during start-up (${sig ?? code}); log: ${logFile}`));
    });
  });
  return { proc, ready };
}

export class PartitionCluster {
  readonly nodes = new Map<string, RunningNode>();
  /** The fault rules in force (layer mode): installed on every start. */
  faults: FaultRule[] = [];
  /** The node acting as master: "shadow" once promoted (it then restarts as a master, without --shadow-of). */
  leader: 'master' | 'shadow' = 'master';

  constructor(readonly cfg: ClusterConfig) {
    for (const spec of cfg.nodes) this.nodes.set(spec.name, { spec, proc: undefined, url: '', paused: false, starts: 0 });
  }

  get master(): RunningNode {
    return this.nodes.get('master')!;
  }

  get masterUrl(): string {
    return `http://${this.master.spec.host}:${this.master.spec.port}`;
  }

  /** Every master URL, comma-separated (chunkservers and clients find the one acting as master). */
  get masterUrls(): string {
    return this.masterNames().map((n) => this.urlOf(n)).join(',');
  }

  get leaderUrl(): string {
    return this.urlOf(this.leader);
  }

  urlOf(name: string): string {
    const s = this.nodes.get(name)!.spec;
    return `http://${s.host}:${s.port}`;
  }

  masterNames(): string[] {
    return this.cfg.shadow ? ['master', 'shadow'] : ['master'];
  }

  chunkserverNames(): string[] {
    return [...this.nodes.keys()].filter((n) => n !== 'master' && n !== 'shadow');
  }

  isUp(name: string): boolean {
    const n = this.nodes.get(name);
    return !!n?.proc && n.proc.exitCode === null && n.proc.signalCode === null;
  }

  private env(n: RunningNode): Record<string, string> {
    const env: Record<string, string> = { GFS_CLOCK_SKEW: String(n.spec.clockSkew) };
    if (this.cfg.unsafe) env.GFS_UNSAFE = this.cfg.unsafe;
    if (this.faults.length) env.GFS_FAULTS = JSON.stringify(this.faults);
    return env;
  }

  async start(name: string): Promise<void> {
    const n = this.nodes.get(name)!;
    if (this.isUp(name)) return;
    const c = this.cfg;
    const dir = join(c.dir, name);
    const replication = name === 'master' ? (c.shadow ? ['--log-replicas', this.urlOf('shadow')] : []) : this.leader === 'shadow' ? [] : ['--shadow-of', this.urlOf('master')];
    const args =
      name === 'master' || name === 'shadow'
        ? [...daemonV8Flags.master, masterPath, '--dir', dir, '--host', n.spec.host, '--port', String(n.spec.port), '--chunk-size', String(c.chunkSizeBytes), '--lease-ms', String(c.leaseMs), '--heartbeat-ms', String(c.heartbeatMs), '--dead-ms', String(c.deadMs), '--safe-mode-ms', String(c.safeModeMs), ...replication]
        : [...daemonV8Flags.chunkserver, chunkserverPath, '--master', this.masterUrls, '--dir', dir, '--host', n.spec.host, '--port', String(n.spec.port), '--id', name, '--rack', `rack${(Number(name.replace(/\D/g, '')) % 3) + 1}`, '--scrub-ms', '0'];
    const { proc, ready } = startProcess(name, n.spec.netns, args, this.env(n), join(c.dir, `${name}.log`), c.startTimeoutMs);
    n.proc = proc;
    n.paused = false;
    n.starts++;
    n.url = await ready;
    if (n.spec.port === 0) n.spec.port = Number(new URL(n.url).port);
  }

  async startAll(): Promise<void> {
    if (this.cfg.shadow) await this.start('shadow');
    await this.start('master');
    await Promise.all(this.chunkserverNames().map((n) => this.start(n)));
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(name: string): Promise<void> {
    const n = this.nodes.get(name)!;
    const p = n.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    if (n.paused) this.resume(name); // SIGCONT first, so nothing is left stopped
    p.kill('SIGKILL');
    await gone;
  }

  pause(name: string): void {
    const n = this.nodes.get(name)!;
    if (!this.isUp(name) || n.paused) return;
    process.kill(n.proc!.pid!, 'SIGSTOP');
    n.paused = true;
    paused.add(n.proc!);
  }

  resume(name: string): void {
    const n = this.nodes.get(name)!;
    if (!n.paused || !n.proc) return;
    n.paused = false;
    paused.delete(n.proc);
    if (this.isUp(name)) process.kill(n.proc.pid!, 'SIGCONT');
  }

  /** Layer mode: replaces the fault rules on every live process (a paused one gets them when it resumes... or not at all: its own rules stay as they were). */
  async setFaults(rules: FaultRule[]): Promise<void> {
    this.faults = rules;
    await Promise.all(
      [...this.nodes.values()]
        .filter((n) => this.isUp(n.spec.name) && !n.paused)
        .map((n) => rpcJson(n.url, '/admin/faults', { rules }, { timeoutMs: 3_000 }).catch(() => undefined)),
    );
  }

  async stop(): Promise<void> {
    for (const n of this.nodes.values()) this.resume(n.spec.name);
    await Promise.all([...this.nodes.keys()].map((name) => this.kill(name)));
  }
}

/** A workload process; resolves when it exits. */
export function startWorker(o: { proc: number; masterUrl: string; out: string; peers: string[]; durationMs: number; seed: number; chunkSizeBytes: number; netns?: string; logFile: string }): { child: ChildProcess; exited: Promise<number | null> } {
  const logFd = openSync(o.logFile, 'a');
  const c = nodeCommand(o.netns, [workerPath, '--master', o.masterUrl, '--proc', String(o.proc), '--out', o.out, '--peers', o.peers.join(','), '--duration-ms', String(o.durationMs), '--seed', String(o.seed), '--chunk-size', String(o.chunkSizeBytes)]);
  const child = spawn(c.cmd, c.args, { stdio: ['ignore', logFd, logFd], env: { ...process.env, GFS_LOG_LEVEL: 'warn' } });
  closeSync(logFd);
  live.add(child);
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      live.delete(child);
      r(code);
    }),
  );
  return { child, exited };
}
