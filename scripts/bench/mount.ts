import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GfsClient } from '../../client/client.js';
import { fuseUnavailable, mountedAt } from '../../client/mount.js';
import { appPath } from './cluster.js';
import { mountAppendBench } from './mount-append.js';
import { mountMetaBench } from './mount-meta.js';
import type { Result } from './report.js';

// The benchmark's mount workloads: `dd` write (conv=fsync) and read of one
// file through `gfs mount`, in the same run as the native client's figures,
// then the mount's metadata rates (scripts/bench/mount-meta.ts) and record
// appends from 8 processes through it (scripts/bench/mount-append.ts).
// The mount point lives outside the benchmark's data dir (so removing that
// dir never walks into a live mount) and is unmounted on every way out.

/** One figure, as scripts/bench/report.ts keeps it. */
export type BenchRecord = Result;

export interface MountDdContext {
  masterUrl: string;
  /** Size of the file dd writes and reads. */
  bytes: number;
  wanted: (workload: string) => boolean;
  /** Restarts dead daemons before a workload. */
  begin: () => Promise<void>;
  record: (r: BenchRecord) => void;
  progress: (line: string) => void;
  /** CPU ms so far of master, chunkservers and this process. */
  cpuMs: () => Record<string, number>;
  /** Files the mount's metadata workloads make (scripts/bench/mount-meta.ts). */
  metaFiles: number;
  /** The native client's figure for a workload of this run, if any. */
  native: (workload: string) => { value: number | null; limit: number | null } | undefined;
}

const MiB = 1024 * 1024;
const names = { write: 'mount-dd-write-1GiB', read: 'mount-dd-read-1GiB' } as const;

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * MiB }, (e, _out, stderr) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, stderr: String(stderr) }));
  });
}

/** utime + stime of a process in ms (Linux /proc). */
function procCpuMs(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks, 100 Hz on Linux
  } catch {
    return null;
  }
}

const sec = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const r2 = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 100) / 100);

export async function mountDdBench(ctx: MountDdContext): Promise<void> {
  const wantWrite = ctx.wanted(names.write);
  const wantRead = ctx.wanted(names.read);
  const skip = (note: string, which: ('write' | 'read')[] = ['write', 'read']) => {
    for (const w of which) ctx.record({ workload: names[w], value: null, unit: 'MB/s', limit: null, ratio: null, note });
  };
  const wantOthers = ['mount-create', 'mount-ls', 'mount-ls-l', 'mount-delete', 'append-mount-8proc'].some((w) => ctx.wanted(w));
  if (!wantWrite && !wantRead && !wantOthers) return skip('skipped (--only)');
  const why = fuseUnavailable();
  if (why) {
    for (const [w, unit] of [['mount-create', 'ops/s'], ['mount-ls', 'entries/s'], ['mount-ls-l', 'ops/s'], ['mount-delete', 'ops/s'], ['append-mount-8proc', 'records/s']] as const) ctx.record({ workload: w, value: null, unit, limit: null, ratio: null, note: `skipped: ${why}` });
    return skip(`skipped: ${why}`);
  }

  const client = new GfsClient({ masterUrl: ctx.masterUrl });
  await client.mkdir('/bench', { parents: true });
  const m = new Mount(mkdtempSync(join(tmpdir(), 'gfs-bench-mnt-')));
  process.on('exit', m.onExit);
  try {
    ctx.progress(`mount-dd: mounting /bench on ${m.dir}`);
    await m.start(ctx.masterUrl);
    const count = Math.ceil(ctx.bytes / MiB);
    const bytes = count * MiB;
    const file = join(m.dir, 'mount-dd.bin');
    if (wantWrite || wantRead) await writeFigure(ctx, m, client, file, count, bytes, wantWrite);
    if (!wantWrite) skip('skipped (--only)', ['write']);
    if (wantRead) await readFigure(ctx, m, file, bytes);
    else skip('skipped (--only)', ['read']);
    await mountMetaBench({ ...ctx, mountCpuMs: () => m.cpuMs() }, join(m.dir, 'meta'), ctx.metaFiles);
    await mountAppendBench({ ...ctx, mountCpuMs: () => m.cpuMs() }, join(m.dir, 'mount-append.log'), 8, ctx.metaFiles >= 5000 ? 500 : 200);
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    ctx.progress(`mount-dd: FAILED: ${msg}${m.log ? `; mount log: ${m.log.trim().slice(0, 300)}` : ''}`);
    ctx.record({ workload: names.write, value: null, unit: 'MB/s', limit: null, ratio: null, error: msg.slice(0, 300) });
    ctx.record({ workload: names.read, value: null, unit: 'MB/s', limit: null, ratio: null, error: msg.slice(0, 300) });
  } finally {
    await m.stop();
    process.removeListener('exit', m.onExit);
    await client.delete('/bench/mount-dd.bin', { now: true }).catch(() => undefined);
    await client.delete('/bench/mount-append.log', { now: true }).catch(() => undefined);
  }
}

/** A `gfs mount` of /bench on `dir`, with its output kept for error messages. */
class Mount {
  proc: ChildProcess | undefined;
  log = '';

  constructor(readonly dir: string) {}

  async start(masterUrl: string): Promise<void> {
    const proc = spawn(process.execPath, [appPath('client/cli.js'), 'mount', '/bench', this.dir, '--master', masterUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stdout!.on('data', (d: Buffer) => (this.log += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    const until = Date.now() + 30_000;
    while (!mountedAt(this.dir)) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`gfs mount exited (${proc.exitCode ?? proc.signalCode}): ${this.log.trim().split('\n')[0]}`);
      if (Date.now() > until) throw new Error('gfs mount did not come up within 30 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** CPU ms so far of the mount process. */
  cpuMs(): number | null {
    return procCpuMs(this.proc?.pid);
  }

  /** A clean unmount (gfs mount flushes and exits by itself once unmounted), then onExit for what is left. */
  async stop(): Promise<void> {
    if (mountedAt(this.dir)) {
      const u = await run(process.execPath, [appPath('client/cli.js'), 'umount', this.dir], 30_000);
      if (u.code !== 0) await run('fusermount', ['-u', '-z', this.dir], 30_000);
    }
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((r) => p.once('exit', r));
      await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    this.onExit();
  }

  /** Last resort on any exit (Ctrl-C included): detach the mount, stop its process. */
  readonly onExit = (): void => {
    try {
      if (mountedAt(this.dir)) execFileSync('fusermount', ['-u', '-z', this.dir], { stdio: 'ignore' });
    } catch {
      /* try umount below */
    }
    try {
      if (mountedAt(this.dir)) execFileSync('umount', ['-l', this.dir], { stdio: 'ignore' });
    } catch {
      /* nothing more to do */
    }
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    try {
      rmdirSync(this.dir);
    } catch {
      /* left behind: reported by the caller's output */
    }
  };
}

/** Runs one dd through the mount, timed, with the CPU per MB of every process (the mount's included). */
async function timedDd(ctx: MountDdContext, m: Mount, what: string, args: string[], bytes: number): Promise<{ seconds: number; cpu: Record<string, number> }> {
  const cpu0 = ctx.cpuMs();
  const m0 = m.cpuMs();
  const t0 = process.hrtime.bigint();
  const r = await run('dd', args, 600_000);
  const seconds = sec(t0);
  if (r.code !== 0) throw new Error(`dd ${what} failed (${r.code}): ${r.stderr.trim().split('\n')[0]}`);
  return { seconds, cpu: cpuPerMB(cpu0, ctx.cpuMs(), m0, m.cpuMs(), bytes) };
}

/** dd conv=fsync, so the time includes the flush to every replica's disk; recorded only when `want` (the read needs the file anyway). */
async function writeFigure(ctx: MountDdContext, m: Mount, client: GfsClient, file: string, count: number, bytes: number, want: boolean): Promise<void> {
  const native = ctx.native('seq-write-1GiB-r3');
  await ctx.begin();
  ctx.progress(`${names.write}: dd if=/dev/zero bs=1M count=${count} conv=fsync (replication 3)`);
  const dd = await timedDd(ctx, m, 'write', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${count}`, 'conv=fsync', 'status=none'], bytes);
  const st = await client.stat('/bench/mount-dd.bin');
  if (!want) return;
  ctx.record(
    figure(names.write, native, bytes, dd, { sizeOk: st.sizeBytes === bytes }, {
      replication: st.replication,
      durability: 'dd conv=fsync: fsync on the mount = client.sync, fsync on every replica (inside the timed region)',
      limitNote: 'same ceiling as seq-write-1GiB-r3 (raw write / 3); vsNative = mount / native client (seq-write-1GiB-r3) in this run',
      mount: 'FUSE direct_io, 128 KiB kernel requests, chunk-aligned pieces of up to 8 MiB, 4 in flight',
    }),
  );
}

/** dd to /dev/null, then (untimed) cmp against /dev/zero. */
async function readFigure(ctx: MountDdContext, m: Mount, file: string, bytes: number): Promise<void> {
  const native = ctx.native('seq-read-1GiB');
  await ctx.begin();
  ctx.progress(`${names.read}: dd of=/dev/null bs=1M`);
  const dd = await timedDd(ctx, m, 'read', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'status=none'], bytes);
  const verified = (await run('cmp', ['-n', String(bytes), '/dev/zero', file], 600_000)).code === 0;
  ctx.record(
    figure(names.read, native, bytes, dd, { verified }, {
      cache: 'no kernel page cache on the mount (direct_io); 8 MiB read-ahead windows in the mount process',
      limitNote: 'same ceiling as seq-read-1GiB (raw read); vsNative = mount / native client (seq-read-1GiB) in this run',
    }),
  );
}

/** One mount figure in MB/s, held against the native client's ceiling and figure; `check` and `notes` go in as they are. */
function figure(workload: string, native: ReturnType<MountDdContext['native']>, bytes: number, dd: { seconds: number; cpu: Record<string, number> }, check: Record<string, unknown>, notes: Record<string, unknown>): BenchRecord {
  const value = bytes / dd.seconds / 1e6;
  const limit = native?.limit ?? null;
  return {
    workload,
    value,
    unit: 'MB/s',
    limit,
    ratio: limit ? value / limit : null,
    bytes,
    ...check,
    seconds: r2(dd.seconds),
    nativeMBps: r2(native?.value),
    vsNative: native?.value ? r2(value / native.value) : null,
    ...notes,
    cpuMsPerMB: dd.cpu,
  };
}

function cpuPerMB(before: Record<string, number>, after: Record<string, number>, m0: number | null, m1: number | null, bytes: number): Record<string, number> {
  const mb = bytes / 1e6;
  const out: Record<string, number> = {};
  for (const k of Object.keys(after)) if (before[k] !== undefined) out[k] = Math.round(((after[k]! - before[k]!) / mb) * 1000) / 1000;
  if (m0 !== null && m1 !== null) out.mount = Math.round(((m1 - m0) / mb) * 1000) / 1000;
  return out;
}
