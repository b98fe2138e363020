import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { daemonV8Flags } from '../../shared/programs.js';
import { rpcJson, rpcStream } from '../../shared/rpc.js';

// The benchmark's own cluster: one master and N chunkservers as separate OS
// processes on 127.0.0.1, on ports they pick themselves (--port 0), data in a
// temp dir. Every child the benchmark starts (daemons and append workers) is
// registered here, so a normal end, an error, an exit or a Ctrl-C all stop
// them by PID and remove the temp dir.

/** The compiled tree this module runs from (…/dist). */
export const distRoot = fileURLToPath(new URL('../../', import.meta.url));
let appDist = distRoot;

/**
 * Copies dist/ (plus package.json, and a link to node_modules) into dir/app
 * and runs every daemon and worker from that copy, so a rebuild of dist/
 * during a long run (others compiling in the same tree) cannot leave the
 * daemons and later-spawned workers on different versions of the code.
 */
export function snapshotDist(dir: string): string {
  const repoRoot = dirname(distRoot.replace(/\/+$/, ''));
  const app = join(dir, 'app');
  mkdirSync(app, { recursive: true });
  cpSync(distRoot, join(app, 'dist'), { recursive: true, filter: (src) => !src.endsWith('.tsbuildinfo') });
  copyFileSync(join(repoRoot, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(repoRoot, 'node_modules'), join(app, 'node_modules'), 'dir');
  appDist = join(app, 'dist');
  return appDist;
}

/** A compiled file, from the snapshot when there is one: appPath('client/cli.js'). */
export function appPath(rel: string): string {
  return join(appDist, rel);
}

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let handlersInstalled = false;

/** Kills every registered child with SIGKILL and removes registered dirs; synchronous, safe to call twice. */
export function cleanupNow(): void {
  for (const p of children) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        p.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  children.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

export function installCleanupHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.once('exit', cleanupNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping the cluster and removing its data\n`);
      cleanupNow();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

export function trackChild(p: ChildProcess): void {
  children.add(p);
  p.once('exit', () => children.delete(p));
}

export function trackDir(d: string): void {
  dirs.add(d);
}

export interface Daemon {
  name: string;
  proc: ChildProcess;
  url: string;
  id: string;
  log: string;
}

/** Runs gfs-master or gfs-chunkserver (args[0]: 'master' or 'chunkserver') itself, so that its PID is the daemon's. */
function startDaemon(name: string, args: string[], logDir: string, nodeArgs: string[] = []): Promise<Daemon> {
  const log = join(logDir, `${name}.log`);
  const logFd = openSync(log, 'a');
  const [program, ...flags] = args;
  const v8Flags = daemonV8Flags[program === 'master' ? 'master' : 'chunkserver'];
  const proc = spawn(process.execPath, [...v8Flags, ...nodeArgs, appPath(program === 'master' ? 'master/main.js' : 'chunkserver/main.js'), ...flags], {
    stdio: ['ignore', 'pipe', logFd],
    env: { ...process.env, GFS_LOG_LEVEL: process.env.GFS_LOG_LEVEL ?? 'warn' },
  });
  closeSync(logFd);
  trackChild(proc);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 30 s (log: ${log})`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      if (out.includes('\n')) return;
      out += d.toString();
      if (!out.includes('\n')) return;
      clearTimeout(timer);
      const parts = out.split('\n')[0]!.trim().split(' ');
      const url = parts[parts.length - 1]!;
      resolve({ name, proc, url, id: parts[0] === 'chunkserver' ? parts[1]! : 'master', log });
    });
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited during start-up (${sig ?? code}); log: ${log}`));
    });
  });
}

export interface MasterStatus {
  safeMode: boolean;
  files: number;
  chunkservers: { id: string; url: string; alive: boolean; chunks: number }[];
  oplog: { fsyncs: number; records: number; batches: number };
}

export class BenchCluster {
  master!: Daemon;
  chunkservers: Daemon[] = [];
  /** Unexpected daemon exits, in order ("cs2 exited (SIGKILL) at 12.3 s"); the benchmark restarts them between workloads. */
  readonly incidents: string[] = [];
  private readonly t0 = Date.now();
  private nodeArgs: string[] = [];
  private readonly args = new Map<string, string[]>();
  private readonly expectedExits = new Set<string>();
  constructor(readonly dir: string) {}

  /** One more chunkserver (rack of its own), e.g. as a target for re-replication. */
  async addChunkserver(): Promise<Daemon> {
    const i = this.chunkservers.length + 1;
    const d = await this.launch(`cs${i}`, ['chunkserver', '--master', this.master.url, '--dir', join(this.dir, `cs${i}`), '--port', '0', '--rack', `rack${i}`, '--id', `cs${i}`]);
    this.chunkservers.push(d);
    await this.waitReady(this.chunkservers.length);
    return d;
  }

  /** SIGKILLs a chunkserver on purpose (not an incident) and forgets it. */
  async killChunkserver(name: string): Promise<void> {
    const d = this.chunkservers.find((x) => x.name === name);
    if (!d) return;
    this.expectedExits.add(name);
    this.chunkservers = this.chunkservers.filter((x) => x !== d);
    if (d.proc.exitCode === null && d.proc.signalCode === null) {
      const gone = new Promise((r) => d.proc.once('exit', r));
      d.proc.kill('SIGKILL');
      await gone;
    }
  }

  get masterUrl(): string {
    return this.master.url;
  }

  status(): Promise<MasterStatus> {
    return rpcJson<MasterStatus>(this.masterUrl, '/api/status', undefined, { timeoutMs: 10_000 });
  }

  private get logDir(): string {
    return join(this.dir, 'logs');
  }

  private async launch(name: string, args: string[]): Promise<Daemon> {
    this.args.set(name, args);
    const d = await startDaemon(name, args, this.logDir, this.nodeArgs);
    d.proc.once('exit', (code, sig) => {
      if (this.stopping || this.expectedExits.has(name)) return;
      const what = `${name} exited (${sig ?? code}) at ${((Date.now() - this.t0) / 1000).toFixed(1)} s`;
      this.incidents.push(what);
      process.stderr.write(`bench: ${what}, unexpectedly; see ${d.log}\n${this.logTail(d)}\n`);
    });
    return d;
  }

  /** profileDir: run every daemon under `node --cpu-prof` writing there (written when it exits on SIGTERM). */
  async start(n: number, o: { chunkSizeBytes?: number; profileDir?: string } = {}): Promise<void> {
    this.nodeArgs = o.profileDir ? ['--cpu-prof', '--cpu-prof-dir', o.profileDir] : [];
    mkdirSync(this.logDir, { recursive: true });
    const margs = ['master', '--dir', join(this.dir, 'master'), '--port', '0', '--safe-mode-ms', '1000'];
    if (o.chunkSizeBytes) margs.push('--chunk-size', String(o.chunkSizeBytes));
    this.master = await this.launch('master', margs);
    // Later restarts keep the port, so URLs that clients cached stay right.
    this.args.set('master', margs.map((a, i) => (margs[i - 1] === '--port' ? String(new URL(this.master.url).port) : a)));
    this.chunkservers = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        this.launch(`cs${i + 1}`, ['chunkserver', '--master', this.master.url, '--dir', join(this.dir, `cs${i + 1}`), '--port', '0', '--rack', `rack${i + 1}`, '--id', `cs${i + 1}`]),
      ),
    );
    for (const d of this.chunkservers) {
      const a = this.args.get(d.name)!;
      this.args.set(d.name, a.map((x, i) => (a[i - 1] === '--port' ? String(new URL(d.url).port) : x)));
    }
    await this.waitReady(n);
  }

  private async waitReady(n: number): Promise<void> {
    const until = Date.now() + 30_000;
    for (;;) {
      const s = await this.status().catch(() => undefined);
      if (s && !s.safeMode && s.chunkservers.filter((c) => c.alive).length >= n) return;
      if (Date.now() > until) throw new Error(`cluster not ready after 30 s: ${JSON.stringify(s ?? null)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private static dead(d: Daemon | undefined): boolean {
    return !d || d.proc.exitCode !== null || d.proc.signalCode !== null;
  }

  /** Restarts any daemon that died (same dir, id and port) and waits until the cluster is whole again; returns the names restarted. */
  async ensureAlive(): Promise<string[]> {
    const restarted: string[] = [];
    if (BenchCluster.dead(this.master)) {
      this.master = await this.launch('master', this.args.get('master')!);
      restarted.push('master');
    }
    for (let i = 0; i < this.chunkservers.length; i++) {
      const d = this.chunkservers[i]!;
      if (!BenchCluster.dead(d)) continue;
      this.chunkservers[i] = await this.launch(d.name, this.args.get(d.name)!);
      restarted.push(d.name);
    }
    if (restarted.length) {
      await this.waitReady(this.chunkservers.length);
      process.stderr.write(`bench: restarted ${restarted.join(', ')}\n`);
    }
    return restarted;
  }

  private stopping = false;

  logTail(d: Daemon, lines = 20): string {
    try {
      return existsSync(d.log) ? readFileSync(d.log, 'utf8').split('\n').slice(-lines).join('\n') : '';
    } catch {
      return '';
    }
  }

  /**
   * CPU time (user + system, ms) used so far by each daemon and by this process
   * plus its reaped children (the append workers), from /proc; {} where /proc is missing.
   */
  cpuMs(): Record<string, number> {
    const out: Record<string, number> = {};
    const read = (pid: number | 'self', withChildren = false): number | undefined => {
      try {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        // fields after ") ": state=0 ... utime=11 stime=12 cutime=13 cstime=14, in clock ticks (100/s on Linux)
        const ticks = Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0);
        return ticks * 10;
      } catch {
        return undefined;
      }
    };
    for (const d of [this.master, ...this.chunkservers]) {
      const v = d?.proc.pid !== undefined ? read(d.proc.pid) : undefined;
      if (v !== undefined) out[d.name] = v;
    }
    const me = read('self', true);
    if (me !== undefined) out.client = me;
    return out;
  }

  /**
   * Time (ms) each daemon has spent in V8 garbage collection so far, from its /metrics
   * (nodejs_gc_duration_seconds_sum, every kind); a daemon that does not answer is left out.
   */
  async gcMs(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    await Promise.all(
      [this.master, ...this.chunkservers].map(async (d) => {
        try {
          const res = await rpcStream(d.url, '/metrics', undefined, { timeoutMs: 5_000 });
          const text = await res.body.text();
          let sum = 0;
          for (const m of text.matchAll(/^nodejs_gc_duration_seconds_sum\{[^}]*\} ([0-9.e+-]+)$/gm)) sum += Number(m[1]);
          out[d.name] = sum * 1000;
        } catch {
          /* no figure for this one */
        }
      }),
    );
    return out;
  }

  /** SIGTERM, then SIGKILL after 3 s; waits until every daemon is gone. */
  async stop(): Promise<void> {
    this.stopping = true;
    const all = [this.master, ...this.chunkservers].filter((d): d is Daemon => !!d);
    await Promise.all(
      all.map(async (d) => {
        const p = d.proc;
        if (p.exitCode !== null || p.signalCode !== null) return;
        const gone = new Promise<void>((r) => p.once('exit', () => r()));
        p.kill('SIGTERM');
        const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
        await gone;
        clearTimeout(t);
      }),
    );
  }
}
