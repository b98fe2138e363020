// Bench record appends: 1/4/16 worker processes appending 1 KiB records to one file one at a time, and one
// process with a batching appender (append-batched); every acknowledged record read back at its offset.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
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
  /** CPU the worker spent after "go" (ms), from its last line. */
  cpuMs: number;
}

interface Worker {
  ready: Promise<void>;
  go(): void;
  done: Promise<WorkerResult>;
}

/** An append worker started with --ready: it sets up (node start-up, first lookup), says so, and appends on go(). */
function startWorker(args: string[]): Worker {
  const p = spawn(process.execPath, [appPath('scripts/append-worker.js'), '--ready', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  trackChild(p);
  let out = '';
  let err = '';
  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  p.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('{"ready":true}')) readyResolve();
  });
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<WorkerResult>((resolve) => {
    p.once('close', (code) => {
      readyResolve(); // a worker that died before it was ready must not hold up the others
      let ok = 0;
      let failed = 0;
      let cpuMs = 0;
      const errors: string[] = [];
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const j = JSON.parse(line) as { done?: boolean; ok?: number; failed?: number; error?: string; cpuMs?: number };
          if (j.error && errors.length < 3) errors.push(j.error);
          if (j.done) {
            ok = j.ok ?? 0;
            failed = j.failed ?? 0;
            cpuMs = j.cpuMs ?? 0;
          }
        } catch {
          /* ignore */
        }
      }
      resolve({ ok, failed, code, stderr: err.trim(), errors, cpuMs });
    });
  });
  return { ready, go: () => p.stdin.end('go\n'), done };
}

interface AckedLine {
  offset: number;
  sizeBytes: number;
  sha: string;
}

/** Every acknowledged record (from the workers' --acked files) must be read back whole, at its offset. */
async function verifyAcked(client: GfsClient, path: string, files: string[]): Promise<{ distinct: number; badSize: number; missing: number; read: number }> {
  const got = new Map<number, string>();
  let read = 0;
  let badSize = 0;
  for await (const r of readRecords(client, path)) {
    read++;
    if (r.payload.length !== 1024) badSize++;
    got.set(r.offset, createHash('sha256').update(r.payload).digest('hex'));
  }
  let missing = 0;
  let acked = 0;
  for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      if (!line) continue;
      const a = JSON.parse(line) as AckedLine;
      acked++;
      if (got.get(a.offset) !== a.sha) missing++;
    }
  }
  return { distinct: got.size, badSize, missing, read: acked };
}

async function appendBench(ctx: BenchContext, name: string, procs: number, countEach: number, limit: number, batchedInFlight?: number): Promise<void> {
  const { cluster, masterUrl } = ctx;
  const path = `/bench/${name}`;
  const client = new GfsClient({ masterUrl });
  await client.create(path);
  const ackedFiles = Array.from({ length: procs }, (_, k) => join(ctx.dir, `${name}-acked-${k}.jsonl`));
  const ts = process.hrtime.bigint();
  const workers = Array.from({ length: procs }, (_, k) =>
    startWorker([
      '--master', masterUrl, '--path', path, '--count', String(countEach), '--min-bytes', '1024', '--max-bytes', '1024', '--seed', String(k + 1), '--acked', ackedFiles[k]!,
      ...(batchedInFlight ? ['--batched', String(batchedInFlight)] : []),
      ...(ctx.verboseWorkers ? [] : ['--quiet']),
    ]),
  );
  await Promise.all(workers.map((w) => w.ready));
  const startupSeconds = secondsSince(ts);
  // Timed from "go" (every worker started and set up) to the last worker's answer.
  const cpu0 = cluster.cpuMs();
  const t0 = process.hrtime.bigint();
  for (const w of workers) w.go();
  const rs = await Promise.all(workers.map((w) => w.done));
  const seconds = secondsSince(t0);
  const cpu1 = cluster.cpuMs();
  const acked = rs.reduce((s, r) => s + r.ok, 0);
  // Daemons from /proc; the client side is what the workers spent after "go" (their node start-up left out).
  const cpu = cpuPer({ ...cpu0, client: 0 }, { ...cpu1, client: rs.reduce((s, r) => s + r.cpuMs, 0) }, acked);
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
  // Verify: every acknowledged record readable, whole, at its acknowledged offset.
  const v = await verifyAcked(client, path, ackedFiles.filter((f) => existsSync(f)));
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
    ...(batchedInFlight ? { batchesInFlight: batchedInFlight } : {}),
    acknowledged: acked,
    failed,
    workerErrors: crashed.length,
    distinctRecords: v.distinct,
    ackedReadBack: v.read - v.missing,
    allWhole: acked === 0 ? null : v.read === acked && v.missing === 0 && v.badSize === 0 && crashed.length === 0,
    fileBytes: st.sizeBytes,
    seconds: round(seconds, 2),
    processStartSeconds: round(startupSeconds, 2),
    timing: 'from "go" (every worker process started and set up) to the last acknowledgement; node start-up in processStartSeconds',
    durability: 'acknowledged when applied on every replica (no fsync per record)',
    limitNote: 'ext4 O_APPEND 1 KiB writes, one process, no fsync',
    cpuMsPerRecord: cpu,
    ...(error ? { error: error.slice(0, 300) } : {}),
    cpuNote: batchedInFlight ? 'client = the appending process after "go"' : 'client = the append workers after "go" (each appends one record at a time and waits for it)',
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
    progress(`${name}: ${n} processes x ${ctx.sizes.appends[n]} records of 1 KiB, one at a time`);
    await appendBench(ctx, name, n, ctx.sizes.appends[n]!, ar.opsPerSec);
  }
  const name = 'append-batched';
  if (!ctx.wanted(name)) {
    skipped(name, 'records/s');
    return;
  }
  await ctx.begin();
  const count = ctx.quick ? 20_000 : 200_000;
  progress(`${name}: 1 process, an appender with ${batchedInFlight} batches in flight, ${count} records of 1 KiB`);
  await appendBench(ctx, name, 1, count, ar.opsPerSec, batchedInFlight);
}

/** Batches in flight at once in append-batched. */
const batchedInFlight = 4;
