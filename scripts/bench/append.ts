// Bench record appends: 1/4/16 worker processes appending 1 KiB records to one file, every acknowledged record read back.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { GfsClient, appendRecord, readRecords } from '../../client/client.js';
import { GfsError } from '../../shared/errors.js';
import { appPath, trackChild } from './cluster.js';
import { progress, secondsSince, type BenchContext } from './context.js';
import { appendRate } from './disk.js';
import { cpuPer, ratio, record, round, skipped } from './report.js';

interface WorkerResult {
  ok: number;
  failed: number;
  code: number | null;
  stderr: string;
  errors: string[];
}

function runWorker(args: string[]): Promise<WorkerResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [appPath('scripts/append-worker.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(p);
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('close', (code) => {
      let ok = 0;
      let failed = 0;
      const errors: string[] = [];
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const j = JSON.parse(line) as { done?: boolean; ok?: number; failed?: number; error?: string };
          if (j.error && errors.length < 3) errors.push(j.error);
          if (j.done) {
            ok = j.ok ?? 0;
            failed = j.failed ?? 0;
          }
        } catch {
          /* ignore */
        }
      }
      resolve({ ok, failed, code, stderr: err.trim(), errors });
    });
  });
}

async function appendBench(ctx: BenchContext, procs: number, countEach: number, limit: number): Promise<void> {
  const { cluster, masterUrl, quick } = ctx;
  const name = `append-${procs}proc`;
  const path = `/bench/appends-${procs}`;
  const client = new GfsClient({ masterUrl });
  await client.create(path);
  // The cost of starting N node processes alone (--count 0: no requests), for reference (full mode only).
  let startupSeconds: number | null = null;
  if (!quick) {
    const ts = process.hrtime.bigint();
    await Promise.all(Array.from({ length: procs }, (_, k) => runWorker(['--master', masterUrl, '--path', path, '--count', '0', '--seed', String(k + 1), '--quiet'])));
    startupSeconds = secondsSince(ts);
  }
  const cpu0 = cluster.cpuMs();
  const t0 = process.hrtime.bigint();
  const rs = await Promise.all(
    Array.from({ length: procs }, (_, k) =>
      runWorker(['--master', masterUrl, '--path', path, '--count', String(countEach), '--min-bytes', '1024', '--max-bytes', '1024', '--seed', String(k + 1), ...(ctx.verboseWorkers ? [] : ['--quiet'])]),
    ),
  );
  const seconds = secondsSince(t0);
  const acked = rs.reduce((s, r) => s + r.ok, 0);
  const cpu = cpuPer(cpu0, cluster.cpuMs(), acked);
  const failed = rs.reduce((s, r) => s + r.failed, 0);
  const crashed = rs.filter((r) => r.code !== 0);
  for (const r of crashed) progress(`${name}: a worker exited ${r.code}: ${r.stderr.slice(0, 300)}`);
  const workerErrors = rs.flatMap((r) => r.errors).slice(0, 3);
  for (const e of workerErrors) progress(`${name}: worker error: ${e}`);
  // Workers are --quiet, so they report counts only: when some failed, reproduce one append here to say why.
  let error: string | undefined;
  if (failed > 0 || crashed.length > 0) {
    error = await appendRecord(client, path, Buffer.alloc(1024, 7)).then(
      () => 'a retry from the bench process succeeded',
      (e: unknown) => `${e instanceof GfsError ? e.code + ': ' : ''}${(e as Error).message}`,
    );
    progress(`${name}: ${failed} appends failed; one more from here: ${error}`);
  }
  // Verify: every acknowledged record readable, whole, once.
  let distinct = 0;
  let badSize = 0;
  for await (const r of readRecords(client, path)) {
    distinct++;
    if (r.payload.length !== 1024) badSize++;
  }
  const st = await client.stat(path);
  const value = acked / seconds;
  record({
    workload: name,
    value,
    unit: 'records/s',
    limit,
    ratio: ratio(value, limit),
    MBps: round((acked * 1024) / seconds / 1e6, 2),
    processes: procs,
    recordsPerProcess: countEach,
    acknowledged: acked,
    failed,
    workerErrors: crashed.length,
    distinctRecords: distinct,
    allWhole: acked === 0 ? null : distinct >= acked && badSize === 0 && crashed.length === 0,
    fileBytes: st.sizeBytes,
    seconds: round(seconds, 2),
    processStartSeconds: round(startupSeconds, 2),
    recordsPerSecExclStart: startupSeconds === null ? null : round(acked / Math.max(0.001, seconds - startupSeconds)),
    timing: 'from spawning the first worker to the exit of the last (includes node start-up)',
    durability: 'acknowledged when applied on every replica (no fsync per record)',
    limitNote: 'ext4 O_APPEND 1 KiB writes, one process, no fsync',
    cpuMsPerRecord: cpu,
    ...(error ? { error: error.slice(0, 300) } : {}),
    cpuNote: 'client = the bench process plus the append workers (their node start-up included)',
  });
}

/** append-1/4/16proc against ext4 O_APPEND 1 KiB writes. */
export async function appendsBench(ctx: BenchContext): Promise<void> {
  const appendPath = join(ctx.dir, 'append-probe.bin');
  const ar = appendRate(appendPath, 1_000, 1024);
  rmSync(appendPath, { force: true });
  progress(`ext4 O_APPEND 1 KiB: ${ar.opsPerSec.toFixed(0)}/s`);
  for (const n of [1, 4, 16]) {
    const name = `append-${n}proc`;
    if (!ctx.wanted(name)) {
      skipped(name, 'records/s');
      continue;
    }
    await ctx.begin();
    progress(`${name}: ${n} processes x ${ctx.sizes.appends[n]} records of 1 KiB`);
    await appendBench(ctx, n, ctx.sizes.appends[n]!, ar.opsPerSec);
  }
}
