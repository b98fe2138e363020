import { spawn, type ChildProcess } from 'node:child_process';
import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GfsClient } from '../../client/client.js';
import { programPath, spawnDaemon } from '../../shared/programs.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { FaultRule } from '../../shared/fault.js';
import { waitFor } from './wait.js';
import { freePort } from '../../scripts/free-port.js';

// Real clusters for tests: a master and chunkservers as separate OS
// processes on 127.0.0.1, on ports they pick themselves, data in a temp dir.
// Everything is stopped by PID and removed in stop(), which tests call from
// after()/finally; a process exit handler kills leftovers if a test crashes,
// and a daemon stops on its own when the test process dies outright (its IPC
// channel closes, shared/programs.ts). Daemons are their own programs
// (master/main.js, chunkserver/main.js), not `gfs master`, so a signal sent to
// a Proc's PID reaches the daemon itself.

export const cliPath = programPath('gfs');

// Test clusters are authenticated (shared/auth.ts), so every test exercises
// the signing path: a random secret per test process, in the environment
// that this process's RPCs read and that every child (daemons, CLI runs,
// workers, mounts) inherits. Set GFS_SECRET='' in ClusterOptions.env to run
// a daemon without authentication.
if (!process.env.GFS_SECRET && !process.env.GFS_SECRET_FILE) process.env.GFS_SECRET = randomBytes(32).toString('hex');

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

export interface Proc {
  name: string;
  proc: ChildProcess;
  url: string;
  id: string;
  dir: string;
  port: number;
  args: string[];
}

export interface ClusterOptions {
  chunkservers?: number;
  chunkSizeBytes?: number;
  leaseMs?: number;
  heartbeatMs?: number;
  deadMs?: number;
  safeModeMs?: number;
  checkpointBytes?: number;
  racks?: number;
  trashGraceMs?: number;
  /** Master's rebalancing threshold (default: off in tests). */
  rebalanceImbalance?: number;
  /** Chunkserver background scrub interval (default: off in tests unless set). */
  scrubMs?: number;
  /** Chunkserver scrub idle time: chunks mutated more recently are not scrubbed yet (default: the chunkserver's, 30 s). */
  scrubIdleMs?: number;
  env?: Record<string, string>;
  /** Shadow masters (log replicas of the master, master/replicas.ts); chunkservers report to them too. */
  shadows?: number;
  /** More arguments for the master (and shadows), e.g. --allow-fewer-log-replicas. */
  masterArgs?: string[];
  /** More arguments for every chunkserver, e.g. push limits. */
  chunkserverArgs?: string[];
}

/** Moved to scripts/free-port.ts (the bench and the partition suite need it too); re-exported for the tests. */
export { freePort };

/** Moved to ./wait.ts; re-exported so that tests importing it from here still build. */
export { waitFor };

function startProc(name: string, program: 'master' | 'chunkserver', args: string[], dir: string, env: Record<string, string>, logDir: string): Promise<Proc> {
  const logFd = openSync(join(logDir, `${name}.log`), 'a');
  const proc = spawnDaemon(program, args, {
    stdio: ['ignore', 'pipe', logFd],
    env: { ...process.env, GFS_LOG_LEVEL: process.env.GFS_LOG_LEVEL ?? 'warn', ...env },
  });
  closeSync(logFd);
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return new Promise((resolve, reject) => {
    let out = '';
    // A hang guard, generous for a loaded machine; a daemon that did not start is killed, or it would keep this process alive.
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${name} did not start within 60 s (log: ${join(logDir, name + '.log')})`));
    }, 60_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0]!;
      if (!out.includes('\n')) return;
      clearTimeout(timer);
      const parts = line.trim().split(' ');
      const url = parts[parts.length - 1]!;
      const id = program === 'chunkserver' ? parts[1]! : 'master';
      resolve({ name, proc, url, id, dir, port: Number(new URL(url).port), args });
    });
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited during start-up (${sig ?? code}); log: ${join(logDir, name + '.log')}`));
    });
  });
}

export class TestCluster {
  master!: Proc;
  chunkservers: (Proc | undefined)[] = [];
  shadows: (Proc | undefined)[] = [];
  /** Ports fixed before start when shadows are used (they and the master name each other). */
  masterPort = 0;
  shadowPorts: number[] = [];
  private readonly clients: GfsClient[] = [];

  constructor(
    readonly dir: string,
    readonly o: ClusterOptions,
  ) {}

  get masterUrl(): string {
    return this.master.url;
  }

  /** Daemons serve HTTPS when given a certificate (shared/tls.ts). */
  get scheme(): 'http' | 'https' {
    return (this.o.env?.GFS_TLS_CERT ?? process.env.GFS_TLS_CERT) ? 'https' : 'http';
  }

  /** Every master URL (the master first, then the shadows), as chunkservers and clients are given them. */
  get masterUrls(): string {
    return [`${this.scheme}://127.0.0.1:${this.masterPort || this.master.port}`, ...this.shadowPorts.map((p) => `${this.scheme}://127.0.0.1:${p}`)].join(',');
  }

  private timingArgs(): string[] {
    const args: string[] = [];
    if (this.o.chunkSizeBytes) args.push('--chunk-size', String(this.o.chunkSizeBytes));
    if (this.o.leaseMs) args.push('--lease-ms', String(this.o.leaseMs));
    args.push('--heartbeat-ms', String(this.o.heartbeatMs ?? 200));
    args.push('--dead-ms', String(this.o.deadMs ?? 2_000));
    args.push('--safe-mode-ms', String(this.o.safeModeMs ?? 2_000));
    args.push('--rebalance-imbalance', String(this.o.rebalanceImbalance ?? 1_000_000));
    return [...args, ...(this.o.masterArgs ?? [])];
  }

  /** Shadow i: a read-only follower of the master's log, on its fixed port. */
  async startShadow(i: number): Promise<Proc> {
    const dir = join(this.dir, `shadow${i}`);
    const args = ['--dir', dir, '--port', String(this.shadowPorts[i]!), '--shadow-of', `${this.scheme}://127.0.0.1:${this.masterPort}`, ...this.timingArgs()];
    const p = await startProc(`shadow${i}`, 'master', args, dir, this.o.env ?? {}, this.dir);
    this.shadows[i] = p;
    return p;
  }

  async startMaster(port = 0): Promise<Proc> {
    if (this.masterPort) port = this.masterPort;
    const args = ['--dir', join(this.dir, 'master'), '--port', String(port)];
    if (this.shadowPorts.length > 0) args.push('--log-replicas', this.shadowPorts.map((p) => `${this.scheme}://127.0.0.1:${p}`).join(','));
    args.push(...(this.o.masterArgs ?? []));
    if (this.o.chunkSizeBytes) args.push('--chunk-size', String(this.o.chunkSizeBytes));
    if (this.o.leaseMs) args.push('--lease-ms', String(this.o.leaseMs));
    args.push('--heartbeat-ms', String(this.o.heartbeatMs ?? 200));
    args.push('--dead-ms', String(this.o.deadMs ?? 2_000));
    args.push('--safe-mode-ms', String(this.o.safeModeMs ?? 2_000));
    if (this.o.checkpointBytes) args.push('--checkpoint-bytes', String(this.o.checkpointBytes));
    if (this.o.trashGraceMs !== undefined) args.push('--trash-grace-ms', String(this.o.trashGraceMs));
    // Rebalancing moves replicas around on its own; tests that count replicas opt in.
    args.push('--rebalance-imbalance', String(this.o.rebalanceImbalance ?? 1_000_000));
    this.master = await startProc('master', 'master', args, join(this.dir, 'master'), this.o.env ?? {}, this.dir);
    return this.master;
  }

  async restartMaster(): Promise<Proc> {
    await this.kill(this.master, 'SIGKILL');
    return this.startMaster(this.master.port);
  }

  async startChunkserver(i: number): Promise<Proc> {
    const dir = join(this.dir, `cs${i}`);
    const prev = this.chunkservers[i];
    const args = ['--master', this.shadowPorts.length > 0 ? this.masterUrls : this.masterUrl, '--dir', dir, '--port', String(prev?.port ?? 0), '--rack', `rack${(i % (this.o.racks ?? 3)) + 1}`, '--id', `cs${i}`, '--scrub-ms', String(this.o.scrubMs ?? 0)];
    if (this.o.scrubIdleMs !== undefined) args.push('--scrub-idle-ms', String(this.o.scrubIdleMs));
    args.push(...(this.o.chunkserverArgs ?? []));
    const p = await startProc(`cs${i}`, 'chunkserver', args, dir, this.o.env ?? {}, this.dir);
    this.chunkservers[i] = p;
    return p;
  }

  /** Sends sig and waits for the process to be gone. */
  async kill(p: Proc | undefined, sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!p || p.proc.exitCode !== null || p.proc.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.proc.once('exit', () => r()));
    p.proc.kill(sig);
    await gone;
  }

  client(o: Partial<ConstructorParameters<typeof GfsClient>[0]> = {}): GfsClient {
    const c = new GfsClient({ masterUrl: this.masterUrl, ...o });
    this.clients.push(c);
    return c;
  }

  status(): Promise<{ safeMode: boolean; chunkservers: { id: string; url: string; alive: boolean; chunks: number }[]; chunks: Record<string, number> }> {
    return rpcJson(this.masterUrl, '/api/status');
  }

  async waitForChunkservers(n: number, deadlineMs = 20_000): Promise<void> {
    await waitFor(`${n} live chunkservers`, async () => (await this.status()).chunkservers.filter((c) => c.alive).length >= n, deadlineMs);
  }

  /** Runs the gfs CLI against this cluster. */
  cli(args: string[], input?: Buffer | string, env: Record<string, string> = {}): Promise<{ code: number; stdout: Buffer; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [cliPath, '--master', this.masterUrl, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      const out: Buffer[] = [];
      let err = '';
      p.stdout.on('data', (d: Buffer) => out.push(d));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.stdin.end(input ?? '');
      p.once('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }));
    });
  }

  /** Installs fault rules on every live process (master and chunkservers). */
  async setFaults(rules: FaultRule[]): Promise<void> {
    const procs = [this.master, ...this.chunkservers].filter((p): p is Proc => !!p && p.proc.exitCode === null && p.proc.signalCode === null);
    await Promise.all(procs.map((p) => rpcJson(p.url, '/admin/faults', { rules }, { timeoutMs: 5_000 }).catch(() => undefined)));
  }

  async stop(): Promise<void> {
    await Promise.all([this.master, ...this.shadows, ...this.chunkservers].map((p) => this.kill(p, 'SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startCluster(o: ClusterOptions = {}): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'gfs-test-'));
  const c = new TestCluster(dir, o);
  try {
    if (o.shadows) {
      c.masterPort = await freePort();
      for (let i = 0; i < o.shadows; i++) c.shadowPorts.push(await freePort());
      for (let i = 0; i < o.shadows; i++) await c.startShadow(i);
    }
    await c.startMaster();
    const n = o.chunkservers ?? 3;
    await Promise.all(Array.from({ length: n }, (_, i) => c.startChunkserver(i)));
    await c.waitForChunkservers(n);
    await waitFor('the master to leave safe mode', async () => !(await c.status()).safeMode);
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

/**
 * A cluster for the enclosing describe block: started in its before hook, stopped (and this process's
 * RPC connections closed) in its after hook. Returns the running cluster; call it inside the tests.
 */
export function clusterPerSuite(o: ClusterOptions = {}): () => TestCluster {
  let cluster: TestCluster | undefined;
  before(async () => {
    cluster = await startCluster(o);
  });
  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });
  return () => {
    if (!cluster) throw new Error('the cluster for this suite did not start');
    return cluster;
  };
}
