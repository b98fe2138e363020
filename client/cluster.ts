import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { newSecret, reloadSecret } from '../shared/auth.js';
import { exitWhenFlushed } from '../shared/exit.js';
import { spawnDaemon } from '../shared/programs.js';
import { rpcJson } from '../shared/rpc.js';
import { listenScheme, makeLocalCertificates } from '../shared/tls.js';
import { webToken } from '../shared/webauth.js';

// `gfs cluster up`: one master and N chunkservers as separate processes on
// 127.0.0.1 (the gfs-master and gfs-chunkserver programs), data and logs
// under DIR, stopped together on Ctrl-C; they also stop on their own if this
// process is killed outright (shared/programs.ts). Requests
// are authenticated with a random cluster secret kept in DIR/secret (made
// the first time, mode 0600) unless --secret-file names another.

export interface ClusterOptions {
  dir: string;
  port: number;
  chunkservers: number;
  chunkSizeBytes?: number;
  leaseMs?: number;
  heartbeatMs?: number;
  racks: number;
  /** HTTPS everywhere with a private CA made in DIR/tls (shared/tls.ts), unless GFS_TLS_CERT already names a certificate. */
  tls?: boolean;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, deadlineMs: number): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export async function clusterUp(o: ClusterOptions): Promise<void> {
  const dir = resolve(o.dir);
  mkdirSync(join(dir, 'logs'), { recursive: true });
  let secretFile = process.env.GFS_SECRET_FILE;
  if (!secretFile && !process.env.GFS_SECRET) {
    secretFile = join(dir, 'secret');
    if (!existsSync(secretFile)) writeFileSync(secretFile, newSecret() + '\n', { mode: 0o600, flag: 'wx' });
    process.env.GFS_SECRET_FILE = secretFile;
    reloadSecret();
  }
  if (o.tls && !process.env.GFS_TLS_CERT) {
    const certs = makeLocalCertificates(join(dir, 'tls'));
    // Children inherit these; this process trusts the CA for its own calls (the RPC pool is made on first use).
    Object.assign(process.env, { GFS_TLS_CERT: certs.certFile, GFS_TLS_KEY: certs.keyFile, GFS_TLS_CA: certs.caFile });
  }
  // Settings meant for a daemon run by hand would make every local daemon bind or advertise the same address.
  const childEnv = { ...process.env };
  for (const k of ['GFS_CONFIG', 'GFS_HOST', 'GFS_ADVERTISE', 'GFS_DIR', 'GFS_ID']) delete childEnv[k];
  const children: { name: string; proc: ChildProcess }[] = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGTERM');
    const deadline = Date.now() + 5_000;
    while (children.some((c) => c.proc.exitCode === null && c.proc.signalCode === null) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await exitWhenFlushed(code);
  };
  process.once('SIGINT', () => void stopAll(0));
  process.once('SIGTERM', () => void stopAll(0));

  const start = (name: string, program: 'master' | 'chunkserver', args: string[]) => {
    const log = openSync(join(dir, 'logs', `${name}.log`), 'a');
    const proc = spawnDaemon(program, args, { stdio: ['ignore', 'ignore', log], env: childEnv });
    closeSync(log);
    children.push({ name, proc });
    proc.once('exit', (code, signal) => {
      if (stopping) return;
      // Chunkservers may die (the cluster heals around them); without a master there is no cluster.
      if (name !== 'master') {
        process.stderr.write(`gfs: ${name} exited (${signal ?? code}); see ${join(dir, 'logs', name + '.log')}\n`);
        return;
      }
      process.stderr.write(`gfs: master exited (${signal ?? code}); stopping the cluster (see ${join(dir, 'logs', 'master.log')})\n`);
      void stopAll(1);
    });
  };

  const masterUrl = `${listenScheme()}://127.0.0.1:${o.port}`;
  // Children inherit GFS_SECRET from the environment; a file is passed explicitly.
  const secretArgs = secretFile ? ['--secret-file', secretFile] : [];
  const masterArgs = [...secretArgs, '--dir', join(dir, 'master'), '--port', String(o.port)];
  if (o.chunkSizeBytes) masterArgs.push('--chunk-size', String(o.chunkSizeBytes));
  if (o.leaseMs) masterArgs.push('--lease-ms', String(o.leaseMs));
  if (o.heartbeatMs) masterArgs.push('--heartbeat-ms', String(o.heartbeatMs));
  start('master', 'master', masterArgs);
  await waitFor('the master', async () => (await rpcJson(masterUrl, '/healthz', undefined, { timeoutMs: 1_000 })) as unknown, 15_000);
  process.stdout.write(`master ${masterUrl}\n`);
  for (let i = 0; i < o.chunkservers; i++) {
    start(`chunkserver-${i + 1}`, 'chunkserver', [
      ...secretArgs,
      '--master', masterUrl,
      '--dir', join(dir, `cs${i + 1}`),
      '--port', String(o.port + 1 + i),
      '--rack', `rack${(i % o.racks) + 1}`,
      '--id', `cs${i + 1}`,
    ]);
  }
  const servers = await waitFor(
    `${o.chunkservers} chunkservers to register`,
    async () => {
      const s = await rpcJson<{ chunkservers: { id: string; url: string; alive: boolean }[] }>(masterUrl, '/api/status', undefined, { timeoutMs: 2_000 });
      const alive = s.chunkservers.filter((c) => c.alive);
      return alive.length >= o.chunkservers ? alive : undefined;
    },
    30_000,
  );
  for (const s of servers.sort((a, b) => (a.id < b.id ? -1 : 1))) process.stdout.write(`chunkserver ${s.id} ${s.url}\n`);
  process.stdout.write(`cluster up: data in ${dir}, logs in ${join(dir, 'logs')}; Ctrl-C stops it\n`);
  const token = webToken();
  process.stdout.write(`status page: ${masterUrl}/status${token ? `?token=${token}` : ''}  (metrics: ${masterUrl}/metrics${token ? ', with Authorization: Bearer <the token>' : ''})\n`);
  const caEnv = process.env.GFS_TLS_CA ? ` GFS_TLS_CA=${process.env.GFS_TLS_CA}` : '';
  if (secretFile) process.stdout.write(`clients: export GFS_MASTER=${masterUrl} GFS_SECRET_FILE=${secretFile}${caEnv}  (or pass --secret-file ${secretFile})\n`);
  else process.stdout.write(`clients: export GFS_MASTER=${masterUrl}${caEnv}; they need the same GFS_SECRET\n`);
}
