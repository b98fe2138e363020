import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { GfsClient } from '../../client/client.js';
import { rpcJson } from '../../shared/rpc.js';
import { freePort } from '../free-port.js';
import { appPath, trackChild } from './cluster.js';

// creates-64 with 0, 1 and 2 log replicas (issue 11), from the same run: a
// master alone, then a master whose every log batch must also be fsynced on
// each shadow master (master/replicas.ts) before a create is acknowledged.
// Metadata only, so no chunkservers. Each master and shadow gets a fresh
// directory on the same disk.

function start(name: string, args: string[], logDir: string): Promise<ChildProcess> {
  const fd = openSync(join(logDir, `${name}.log`), 'a');
  // Every process here is a master: gfs-master itself, so its PID is the daemon's.
  const p = spawn(process.execPath, [appPath('master/main.js'), ...args], { stdio: ['ignore', 'pipe', fd], env: { ...process.env, GFS_LOG_LEVEL: process.env.GFS_LOG_LEVEL ?? 'warn' } });
  closeSync(fd);
  trackChild(p);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name} did not start within 30 s`)), 30_000);
    p.stdout!.once('data', () => {
      clearTimeout(t);
      resolve(p);
    });
    p.once('exit', (code, sig) => {
      clearTimeout(t);
      reject(new Error(`${name} exited during start-up (${sig ?? code})`));
    });
  });
}

async function stopAll(ps: ChildProcess[]): Promise<void> {
  await Promise.all(
    ps.map(
      (p) =>
        new Promise<void>((r) => {
          if (p.exitCode !== null || p.signalCode !== null) return r();
          p.once('exit', () => r());
          p.kill('SIGKILL');
        }),
    ),
  );
}

export interface ReplicaCreatesResult {
  replicas: number;
  opsPerSec: number;
  seconds: number;
  fsyncs: number;
  files: number;
}

/** `total` creates from `clients` concurrent clients against a master with `replicas` log replicas. */
export async function createsWithLogReplicas(dir: string, replicas: number, total: number, clients: number): Promise<ReplicaCreatesResult> {
  const base = join(dir, `logrep-${replicas}`);
  mkdirSync(base, { recursive: true });
  const procs: ChildProcess[] = [];
  try {
    const masterPort = await freePort();
    const shadowPorts: number[] = [];
    for (let i = 0; i < replicas; i++) shadowPorts.push(await freePort());
    for (let i = 0; i < replicas; i++) {
      procs.push(await start(`shadow${i}`, ['--dir', join(base, `shadow${i}`), '--port', String(shadowPorts[i]), '--shadow-of', `http://127.0.0.1:${masterPort}`], base));
    }
    const margs = ['--dir', join(base, 'master'), '--port', String(masterPort)];
    if (replicas > 0) margs.push('--log-replicas', shadowPorts.map((p) => `http://127.0.0.1:${p}`).join(','));
    procs.push(await start('master', margs, base));
    const url = `http://127.0.0.1:${masterPort}`;
    // Wait until every log replica is in sync (until then mutations are refused).
    const until = Date.now() + 30_000;
    for (;;) {
      const st = await rpcJson<{ logReplicas?: { inSync: number } }>(url, '/api/status').catch(() => undefined);
      if (st && (replicas === 0 || st.logReplicas?.inSync === replicas)) break;
      if (Date.now() > until) throw new Error(`log replicas not in sync after 30 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const cs = Array.from({ length: clients }, () => new GfsClient({ masterUrl: url }));
    await cs[0]!.mkdir('/c', { parents: true });
    const before = await rpcJson<{ oplog: { fsyncs: number } }>(url, '/api/status');
    const per = Array.from({ length: clients }, (_, k) => Math.floor(total / clients) + (k < total % clients ? 1 : 0));
    const t0 = process.hrtime.bigint();
    await Promise.all(cs.map(async (c, k) => {
      for (let i = 0; i < per[k]!; i++) await c.create(`/c/f${k}-${i}`);
    }));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = await rpcJson<{ oplog: { fsyncs: number }; files: number }>(url, '/api/status');
    // Every create is on every shadow too (it was acknowledged only after that).
    for (const p of shadowPorts) {
      const s = await rpcJson<{ files: number }>(`http://127.0.0.1:${p}`, '/api/status');
      if (s.files !== after.files) throw new Error(`shadow on port ${p} has ${s.files} files, the master ${after.files}`);
    }
    return { replicas, opsPerSec: total / seconds, seconds, fsyncs: after.oplog.fsyncs - before.oplog.fsyncs, files: after.files };
  } finally {
    await stopAll(procs);
  }
}
