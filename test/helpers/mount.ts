import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { GfsClient } from '../../client/client.js';
import { mountedAt } from '../../client/mount.js';
import { cliPath, startCluster, type TestCluster } from './cluster.js';
import { waitFor } from './wait.js';

// A real FUSE mount of a real cluster for the tests that use the mount
// (mount.test, mount-posix.test): shell commands run in it, and what every
// such suite leaves behind — the mount, the mount process, the cluster, the
// temp dir — is removed after it, even on failure.

const MiB = 1024 * 1024;

/** Runs cmd with sh -c; never throws: the exit code (-1 for a signal or timeout) and the output. */
export function sh(cmd: string, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', cmd], { timeout: timeoutMs, maxBuffer: 64 * MiB }, (e, stdout, stderr) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Runs cmd and fails the test unless it exits 0; its stdout. */
export async function ok(cmd: string, timeoutMs?: number): Promise<string> {
  const r = await sh(cmd, timeoutMs);
  assert.equal(r.code, 0, `${cmd} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** s quoted for sh. */
export const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export interface MountedCluster {
  cluster: TestCluster;
  client: GfsClient;
  /** The suite's temp dir; the mount point is `mnt` inside it. */
  dir: string;
  mnt: string;
  proc: ChildProcess;
  /** Everything the mount process printed so far. */
  log(): string;
  /** Resolves with the mount process's exit code. */
  exited: Promise<number | null>;
}

export interface MountOptions {
  chunkSizeBytes: number;
  /** Temp dir name prefix. */
  prefix: string;
  /** `gfs mount --allow-other`: other users reach the mount (the temp dir is then made 0755 for them). */
  allowOther?: boolean;
}

/** For the enclosing describe block: a cluster and `gfs mount / MNT` as a child process, up before the tests and gone after them. */
export function mountPerSuite(o: MountOptions): () => MountedCluster {
  let m: MountedCluster | undefined;
  let dir: string | undefined;
  let mnt: string | undefined;
  let proc: ChildProcess | undefined;
  let cluster: TestCluster | undefined;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), o.prefix));
    if (o.allowOther) chmodSync(dir, 0o755);
    mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    cluster = await startCluster({ chunkSizeBytes: o.chunkSizeBytes });
    const args = [cliPath, 'mount', '/', mnt, '--master', cluster.masterUrl, ...(o.allowOther ? ['--allow-other'] : [])];
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GFS_LOG_LEVEL: 'warn' } });
    proc = p;
    let log = '';
    p.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    const at = mnt;
    await waitFor(
      'the mount in /proc/mounts',
      () => {
        if (p.exitCode !== null) throw new Error(`gfs mount exited ${p.exitCode}: ${log}`);
        return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === at);
      },
      20_000,
    );
    m = { cluster, client: cluster.client(), dir, mnt, proc: p, log: () => log, exited };
  });
  after(async () => {
    // Whatever happened: nothing stays mounted, no process stays behind.
    if (mnt && mountedAt(mnt)) {
      await sh(`fusermount -u -z ${q(mnt)}`);
      if (mountedAt(mnt)) await sh(`umount -l ${q(mnt)}`);
    }
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    assert.ok(m, 'the mount is not up (its before hook failed)');
    return m;
  };
}
