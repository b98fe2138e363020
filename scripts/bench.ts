// `npm run bench` (= build + node dist/scripts/bench.js): starts its own
// cluster (one master, three chunkservers, separate processes on 127.0.0.1,
// free ports, data in a temp dir under os.tmpdir(), default 64 MiB chunks),
// runs each workload, prints a table for people and LAST one JSON object per
// line for scripts: {"workload","value","unit","limit","ratio",...extra}.
// `limit` is this machine's own ceiling measured in the same run; ratio =
// value / limit. MB/s is 10^6 bytes per second. `--quick` runs a reduced set
// (same names, with a "bytes"/"files"/"records" field saying how much).
//
// Workloads, in this order: seq-write-1GiB-r3/-r1 (GfsClient.writePiece, pieceBytes
// with `concurrency` in flight, then sync: durable on every replica's disk; limit =
// raw write + fdatasync of the same bytes just before, / replication), seq-read-1GiB
// (readPiece, sha256 checked; limit = raw read of the raw file), creates-1/8/64
// (empty files from 1/8/64 concurrent clients; fsyncs from the master's oplog;
// limit = one 100-byte append + fdatasync at a time, so ratio > 1 means group
// commit), stat-1 and delete-1 over the creates-1 files (stat has no disk ceiling:
// limit/ratio null, vsCreates1 instead), append-1/4/16proc (scripts/append-worker.js
// processes appending 1 KiB records to one file; limit = ext4 O_APPEND 1 KiB
// writes; every acknowledged record is then read back with readRecords),
// mount-dd-*, snapshot-1MiB/1GiB (measured when POST /api/snapshot exists),
// rereplicate-MBps. Each figure carries the CPU its processes spent per unit and
// the load average, since the machine may be shared.
//
// Options: --quick, --keep (leave the temp dir for inspection), --only a,b
// (workload name prefixes to run; the others print as "skipped"), --profile DIR
// (run master and chunkservers under `node --cpu-prof`, profiles land in DIR),
// --verbose-workers (append workers without --quiet: their first errors are shown).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GfsClient, appendRecord, readRecords } from '../client/client.js';
import { sha256Hex, signRequest } from '../shared/auth.js';
import { GfsError } from '../shared/errors.js';
import { rpcJson } from '../shared/rpc.js';
import { BenchCluster, appPath, cleanupNow, installCleanupHandlers, snapshotDist, trackChild, trackDir } from './bench/cluster.js';
import { MiB, PieceSource, appendRate, fsyncRate, rawRead, rawWrite } from './bench/disk.js';
import { mountDdBench } from './bench/mount.js';
import { createsWithLogReplicas } from './bench/logreplicas.js';

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    only: { type: 'string' },
    profile: { type: 'string' },
    'verbose-workers': { type: 'boolean', default: false },
  },
});
const quick = !!opts.quick;
const only = opts.only ? opts.only.split(',').map((s) => s.trim()).filter(Boolean) : undefined;

const sizes = quick
  ? { seqBytes: 256 * MiB, creates: { 1: 400, 8: 600, 64: 1200 } as Record<number, number>, appends: { 1: 150, 4: 50, 16: 10 } as Record<number, number> }
  : { seqBytes: 1024 * MiB, creates: { 1: 5000, 8: 5000, 64: 5000 } as Record<number, number>, appends: { 1: 2000, 4: 1000, 16: 300 } as Record<number, number> };


// ---- results ----
interface Result {
  workload: string;
  value: number | null;
  unit: string;
  limit: number | null;
  ratio: number | null;
  [extra: string]: unknown;
}
const results: Result[] = [];
let cluster: BenchCluster | undefined;
let incidentMark = 0;

/** Before each workload: restart any daemon that died (killed from outside, crashed), so one loss does not sink every later figure. */
async function begin(): Promise<void> {
  await cluster?.ensureAlive();
}

/** MooseFS 3.0 figures from ../shared/BENCH.md (medians, same kind of machine), and what gfs aims for. */
const peer: Record<string, { value: number | null; text: string; aim: string }> = {
  'seq-write-1GiB-r3': { value: 75, text: '75 MB/s (74-121)', aim: '>= 90 MB/s' },
  'seq-write-1GiB-r1': { value: 350, text: '350 MB/s', aim: '>= 420 MB/s' },
  'seq-read-1GiB': { value: 303, text: '303 MB/s (170-343)', aim: '>= 364 MB/s' },
  'creates-1': { value: 589, text: '589 ops/s (478-1080)', aim: '>= 1178/s fsynced' },
  'creates-8': { value: null, text: '-', aim: '' },
  'creates-64': { value: null, text: '-', aim: '>= 15000/s' },
  'stat-1': { value: 1287, text: '1287 ops/s', aim: '>= 3861/s' },
  'delete-1': { value: 679, text: '679 ops/s', aim: '>= 1358/s' },
  'append-1proc': { value: 2320, text: '2320 rec/s (8 procs)', aim: '>= 4640/s, whole' },
  'append-4proc': { value: 2320, text: '2320 rec/s (8 procs)', aim: '>= 4640/s, whole' },
  'append-16proc': { value: 2320, text: '2320 rec/s (8 procs)', aim: '>= 4640/s, whole' },
  'mount-dd-write-1GiB': { value: 75, text: '75 MB/s (FUSE)', aim: '>= 90 MB/s' },
  'mount-dd-read-1GiB': { value: 303, text: '303 MB/s (FUSE)', aim: '>= 364 MB/s' },
  'snapshot-1MiB': { value: null, text: '-', aim: '' },
  'snapshot-1GiB': { value: null, text: '-', aim: '' },
  'rereplicate-MBps': { value: null, text: '-', aim: '' },
};

const round = (x: number | null, digits = 1): number | null => (x === null || !Number.isFinite(x) ? null : Math.round(x * 10 ** digits) / 10 ** digits);
/** Ratios: 3 decimals, or 3 significant digits when small. */
const roundRatio = (x: number | null): number | null => (x === null || !Number.isFinite(x) ? null : Math.abs(x) >= 0.1 ? round(x, 3) : Number(x.toPrecision(3)));

function record(r: Result): void {
  const p = peer[r.workload];
  const out: Result = { ...r, value: round(r.value), limit: round(r.limit), ratio: roundRatio(r.ratio) };
  if (p && p.value !== null) out.peerMooseFS = p.value;
  if (r.value !== null) out.load1 = round(loadavg()[0]!, 2);
  if (cluster && cluster.incidents.length > incidentMark) {
    out.incidents = cluster.incidents.slice(incidentMark);
    incidentMark = cluster.incidents.length;
  }
  results.push(out);
  process.stderr.write(`bench: ${JSON.stringify(out)}\n`);
}

function notImplemented(workload: string, unit: string, why = 'not implemented yet'): void {
  record({ workload, value: null, unit, limit: null, ratio: null, note: why });
}

function wanted(name: string): boolean {
  return !only || only.some((p) => name.startsWith(p));
}

function skipped(workload: string, unit: string): void {
  record({ workload, value: null, unit, limit: null, ratio: null, note: 'skipped (--only)' });
}

function ratio(value: number | null, limit: number | null): number | null {
  return value === null || limit === null || limit <= 0 ? null : value / limit;
}

/** CPU per unit of work between two cpuMs() snapshots: {master, cs1, cs2, cs3, client}. */
function cpuPer(before: Record<string, number>, after: Record<string, number>, units: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(after)) if (before[k] !== undefined && units > 0) out[k] = Math.round(((after[k]! - before[k]!) / units) * 1000) / 1000;
  return out;
}

const secondsSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;
const progress = (s: string): void => void process.stderr.write(`bench: ${s}\n`);

// ---- data path ----

/** create + writePiece (pieceBytes, `concurrency` in flight) + sync; returns seconds for the whole, and for the sync alone. */
async function gfsWrite(client: GfsClient, path: string, replication: number, totalBytes: number, source: PieceSource): Promise<{ seconds: number; syncSeconds: number; chunks: number }> {
  const t0 = process.hrtime.bigint();
  await client.create(path, { replication });
  const f = await client.locate(path, 0, 1, true);
  const cs = f.chunkSizeBytes;
  const pieceBytes = Math.min(client.pieceBytes, cs);
  const pool: Buffer[] = [];
  const inFlight = new Set<Promise<void>>();
  let failed: unknown;
  for (let i = 0, at = 0; at < totalBytes && failed === undefined; i++) {
    const len = Math.min(pieceBytes, totalBytes - at, cs - (at % cs));
    const buf = pool.pop() ?? Buffer.allocUnsafe(pieceBytes);
    const data = source.fill(buf, i, len);
    const off = at;
    const p: Promise<void> = client
      .writePiece(path, Math.floor(off / cs), off % cs, data)
      .then(() => void pool.push(buf))
      .catch((e) => {
        failed ??= e;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    at += len;
    while (inFlight.size >= client.concurrency) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failed !== undefined) throw failed;
  const ts = process.hrtime.bigint();
  await client.sync(path);
  const syncSeconds = secondsSince(ts);
  return { seconds: secondsSince(t0), syncSeconds, chunks: Math.ceil(totalBytes / cs) };
}

/** The sha256 of what gfsWrite wrote (computed outside any timed region). */
function expectedSha(totalBytes: number, pieceBytes: number, chunkSizeBytes: number, source: PieceSource): string {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(pieceBytes);
  for (let i = 0, at = 0; at < totalBytes; i++) {
    const len = Math.min(pieceBytes, totalBytes - at, chunkSizeBytes - (at % chunkSizeBytes));
    h.update(source.fill(buf, i, len));
    at += len;
  }
  return h.digest('hex');
}

/** Reads the whole file with readPiece, `concurrency` pieces ahead, hashing in file order (inside the timed region). */
async function gfsRead(client: GfsClient, path: string): Promise<{ seconds: number; bytes: number; sha: string; hashSeconds: number }> {
  const t0 = process.hrtime.bigint();
  const f = await client.locate(path, 0, 10_000, true);
  const cs = f.chunkSizeBytes;
  const jobs: { index: number; inChunk: number; len: number }[] = [];
  for (let at = 0; at < f.sizeBytes; ) {
    const len = Math.min(client.pieceBytes, cs - (at % cs), f.sizeBytes - at);
    jobs.push({ index: Math.floor(at / cs), inChunk: at % cs, len });
    at += len;
  }
  const h = createHash('sha256');
  let hashNs = 0n;
  const pending = new Map<number, Promise<Buffer>>();
  let launched = 0;
  let bytes = 0;
  for (let next = 0; next < jobs.length; next++) {
    while (launched < jobs.length && launched - next < client.concurrency) {
      const j = jobs[launched]!;
      const p = client.readPiece(path, j.index, j.inChunk, j.len);
      p.catch(() => undefined);
      pending.set(launched++, p);
    }
    const b = await pending.get(next)!;
    pending.delete(next);
    const j = jobs[next]!;
    if (b.length !== j.len) throw new Error(`short piece ${next}: ${b.length} of ${j.len} bytes`);
    const th = process.hrtime.bigint();
    h.update(b);
    hashNs += process.hrtime.bigint() - th;
    bytes += b.length;
  }
  return { seconds: secondsSince(t0), bytes, sha: h.digest('hex'), hashSeconds: Number(hashNs) / 1e9 };
}

// ---- metadata ----

/** `clients` concurrent loops (one GfsClient each) creating `total` empty files between them. */
async function createMany(masterUrl: string, dir: string, total: number, clients: number): Promise<{ seconds: number; paths: string[] }> {
  const cs = Array.from({ length: clients }, () => new GfsClient({ masterUrl }));
  const paths: string[] = [];
  const per = Array.from({ length: clients }, (_, k) => Math.floor(total / clients) + (k < total % clients ? 1 : 0));
  const t0 = process.hrtime.bigint();
  await Promise.all(
    cs.map(async (c, k) => {
      for (let i = 0; i < per[k]!; i++) {
        const p = `${dir}/f${k}-${i}`;
        await c.create(p);
        paths.push(p);
      }
    }),
  );
  return { seconds: secondsSince(t0), paths };
}

// ---- appends ----

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

async function appendBench(cluster: BenchCluster, procs: number, countEach: number, limit: number): Promise<void> {
  const masterUrl = cluster.masterUrl;
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
      runWorker(['--master', masterUrl, '--path', path, '--count', String(countEach), '--min-bytes', '1024', '--max-bytes', '1024', '--seed', String(k + 1), ...(opts['verbose-workers'] ? [] : ['--quiet'])]),
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

// ---- snapshot ----

async function snapshotProbe(masterUrl: string, src: string, dst: string): Promise<{ implemented: boolean; seconds?: number; error?: string; revokeWaitMs?: number }> {
  // The master's snapshot counters (when it has them) tell how much of the time went to waiting out leases on the source.
  const revokeWait = async (): Promise<number | undefined> => {
    const st = await rpcJson<{ snapshots?: { revokeWaitMs?: number } }>(masterUrl, '/api/status').catch(() => undefined);
    return st?.snapshots?.revokeWaitMs;
  };
  const w0 = await revokeWait();
  const t0 = process.hrtime.bigint();
  const snapBody = JSON.stringify({ src, dst });
  // A raw fetch (to time the request alone) signs itself like shared/rpc.ts does.
  const auth = signRequest({ method: 'POST', target: '/api/snapshot', bodySha256: sha256Hex(snapBody), from: 'bench' });
  const res = await fetch(`${masterUrl}/api/snapshot`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-gfs-from': 'bench', ...auth }, body: snapBody });
  const seconds = secondsSince(t0);
  const text = await res.text();
  if (res.status === 404 && /no such endpoint|Cannot POST/i.test(text)) return { implemented: false };
  if (res.status === 404) return { implemented: false, error: text.slice(0, 200) };
  if (res.status < 200 || res.status >= 300) return { implemented: true, error: `HTTP ${res.status} ${text.slice(0, 200)}` };
  const w1 = await revokeWait();
  return { implemented: true, seconds, ...(w0 !== undefined && w1 !== undefined ? { revokeWaitMs: w1 - w0 } : {}) };
}

/**
 * Records one snapshot: its latency (POST /api/snapshot round trip: lease
 * revocation, oplog fsync, metadata copy), then the first 1 MiB write to the
 * source (copy-on-write of its first chunk on every replica), then checks that
 * the snapshot still reads the old bytes.
 */
async function recordSnapshot(
  client: GfsClient,
  workload: string,
  src: string,
  dst: string,
  bytes: number,
  probe: Awaited<ReturnType<typeof snapshotProbe>>,
  source: PieceSource,
  more: Record<string, unknown> = {},
): Promise<void> {
  const extra: Record<string, unknown> = { ...more };
  if (probe.revokeWaitMs !== undefined) extra.leaseWaitMs = probe.revokeWaitMs;
  if (probe.error === undefined && probe.seconds !== undefined) {
    try {
      const t0 = process.hrtime.bigint();
      await client.writePiece(src, 0, 0, Buffer.alloc(MiB, 0x5a));
      extra.cowFirstWriteMs = round(secondsSince(t0) * 1000);
      const old = source.fill(Buffer.allocUnsafe(MiB), 0, MiB);
      const snap = await client.read(dst, 0, MiB);
      const now = await client.read(src, 0, MiB);
      extra.snapshotIntact = snap.equals(old) && now.equals(Buffer.alloc(MiB, 0x5a));
    } catch (e) {
      extra.cowError = `${e instanceof GfsError ? e.code + ': ' : ''}${(e as Error).message}`.slice(0, 300);
    }
  }
  record({
    workload,
    value: probe.seconds !== undefined && probe.error === undefined ? probe.seconds * 1000 : null,
    unit: 'ms',
    limit: null,
    ratio: null,
    bytes,
    ...(probe.error ? { error: probe.error } : {}),
    ...extra,
    limitNote: 'latency, lower is better; no machine ceiling defined, so limit and ratio are null',
  });
}

// ---- table ----

function fmt(x: unknown): string {
  if (x === null || x === undefined) return '-';
  if (typeof x === 'number' && x !== 0 && Math.abs(x) < 0.01) return x.toPrecision(2);
  if (typeof x === 'number') return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(x < 1 ? 3 : 2);
  return String(x);
}

function printTable(): void {
  const rows = results.map((r) => {
    const p = peer[r.workload];
    const notes: string[] = [];
    if (r.note) notes.push(String(r.note));
    if (r.bytes !== undefined && r.bytes !== 1024 * MiB) notes.push(`${Math.round(Number(r.bytes) / MiB)} MiB`);
    if (r.files !== undefined) notes.push(`${r.files} files`);
    if (r.fsyncs !== undefined) notes.push(r.opsPerFsync !== undefined ? `${r.fsyncs} fsyncs, ${fmt(r.opsPerFsync)} ops/fsync` : `${r.fsyncs} chunk fsyncs`);
    if (r.acknowledged !== undefined) notes.push(`${r.acknowledged} acked, ${r.distinctRecords} read, allWhole=${r.allWhole}, ${fmt(r.MBps)} MB/s`);
    if (r.verified !== undefined) notes.push(`${r.sha256 !== undefined ? 'sha256' : 'content'} ${r.verified ? 'ok' : 'MISMATCH'}`);
    if (r.syncSeconds !== undefined) notes.push(`sync ${fmt(r.syncSeconds)} s`);
    if (r.vsCreates1 !== undefined) notes.push(`${fmt(r.vsCreates1)}x creates-1`);
    const cpu = (r.cpuMsPerMB ?? r.cpuMsPerOp ?? r.cpuMsPerRecord) as Record<string, number> | undefined;
    if (cpu && Object.keys(cpu).length) {
      const per = r.cpuMsPerMB ? 'MB' : r.cpuMsPerOp ? 'op' : 'rec';
      const cs = Object.keys(cpu).filter((k) => k.startsWith('cs')).sort().map((k) => fmt(cpu[k]));
      notes.push(`cpu ms/${per} m ${fmt(cpu.master)} cs ${cs.join('/')} cl ${fmt(cpu.client)}`);
    }
    if (typeof r.leaseWaitMs === 'number' && r.leaseWaitMs > 0) notes.push(`${fmt(r.leaseWaitMs)} ms of it waiting out leases`);
    if (typeof r.hotSnapshotMs === 'number') notes.push(`right after a write: ${fmt(r.hotSnapshotMs)} ms (lease ${fmt(r.leaseMs)} ms)`);
    if (r.cowFirstWriteMs !== undefined) notes.push(`first 1 MiB write after it ${fmt(r.cowFirstWriteMs)} ms (copy-on-write), snapshot intact=${r.snapshotIntact}`);
    if (r.error !== undefined) notes.push(`error: ${String(r.error).slice(0, 80)}`);
    if (r.incidents !== undefined) notes.push(`INCIDENT: ${(r.incidents as string[]).join(', ')}`);
    if (r.load1 !== undefined) notes.push(`load ${fmt(r.load1)}`);
    return [r.workload, fmt(r.value), r.unit, fmt(r.limit), fmt(r.ratio), p?.text ?? '-', p?.aim ?? '', notes.join('; ')];
  });
  const head = ['workload', 'gfs', 'unit', 'limit', 'ratio', 'MooseFS 3.0', 'aim', 'notes'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 1 || i === 3 || i === 4 ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  process.stdout.write('\n' + line(head) + '\n' + line(w.map((n) => '-'.repeat(n))) + '\n');
  for (const r of rows) process.stdout.write(line(r) + '\n');
  process.stdout.write(
    '\nMB/s = 10^6 bytes/s. limit = this machine\'s ceiling measured in this run (raw disk / replication for writes, raw read for reads,\n' +
      'one append+fdatasync at a time for creates and deletes, ext4 O_APPEND for appends); ratio = gfs / limit.\n' +
      'stat has no disk ceiling: limit and ratio are null, "vsCreates1" gives stat-1 / creates-1. MooseFS figures are medians from BENCH.md.\n' +
      'Writes are timed including client.sync (fsync on every replica). Page cache is not dropped between write and read.\n' +
      'cpu ms/unit = CPU time (user+sys) of master (m), each chunkserver (cs) and the client side (cl: bench process + append workers) per MB, op or record.\n' +
      `load1 = 1-minute load average when each figure was taken (now ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cpus): other work on the machine skews absolute figures.\n\n`,
  );
}

// ---- main ----

/**
 * rereplicate-MBps: a fourth chunkserver joins, a file is written at
 * replication 3, then one of its holders is SIGKILLed. Timed from the kill
 * until fsck reports every chunk back at its goal; the figure is the bytes
 * cloned (master counter) per second of the clone phase (after the master
 * declared the server dead), and also over the whole time from the kill.
 * Limit: raw write + fdatasync of the same bytes on the same disk.
 */
async function rereplicateBench(cluster: BenchCluster, client: GfsClient, totalBytes: number, source: PieceSource): Promise<void> {
  await begin();
  await cluster.addChunkserver();
  const path = '/bench/rerep';
  await gfsWrite(client, path, 3, totalBytes, source);
  const chunks = await client.locate(path, 0, 10_000, true);
  const counts = new Map<string, number>();
  for (const c of chunks.chunks.values()) for (const r of c.replicas) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
  const [victim, held] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]!;
  const rawPath = join(cluster.dir, 'raw-rerep.bin');
  const limitMBps = rawWrite(rawPath, Math.min(totalBytes, 256 * MiB), client.pieceBytes, source).bytesPerSec / 1e6;
  rmSync(rawPath, { force: true });
  const before = (await cluster.status()) as unknown as { counters: { clonedBytes: number } };
  const t0 = Date.now();
  await cluster.killChunkserver(victim);
  let deadAt = 0;
  for (;;) {
    const s = (await cluster.status()) as unknown as { chunkservers: { id: string; alive: boolean }[]; chunks: { underReplicated: number; missing: number }; counters: { clonedBytes: number } };
    if (!deadAt && s.chunkservers.find((c) => c.id === victim)?.alive === false) deadAt = Date.now();
    if (deadAt && s.chunks.underReplicated === 0 && s.chunks.missing === 0) {
      const end = Date.now();
      const bytes = s.counters.clonedBytes - before.counters.clonedBytes;
      const cloneSeconds = Math.max(0.001, (end - deadAt) / 1000);
      const value = round(bytes / 1e6 / cloneSeconds);
      record({
        workload: 'rereplicate-MBps',
        value,
        unit: 'MB/s',
        limit: round(limitMBps),
        ratio: ratio(value, limitMBps),
        chunksOnVictim: held,
        clonedBytes: bytes,
        detectSeconds: round((deadAt - t0) / 1000),
        cloneSeconds: round(cloneSeconds),
        totalSeconds: round((end - t0) / 1000),
        MBpsIncludingDetection: round(bytes / 1e6 / ((end - t0) / 1000)),
        note: 'clone phase: from the master marking the server dead to every chunk back at its goal',
      });
      return;
    }
    if (Date.now() - t0 > 600_000) throw new Error('re-replication did not finish within 10 minutes');
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const dir = mkdtempSync(join(tmpdir(), 'gfs-bench-'));
  if (!opts.keep) trackDir(dir);
  progress(`${quick ? 'quick' : 'full'} run; data in ${dir}; ${cpus().length} cpus, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, node ${process.version}, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  cluster = new BenchCluster(dir);
  try {
    snapshotDist(dir);
    await cluster.start(3, { profileDir: opts.profile });
    const masterUrl = cluster.masterUrl;
    progress(`cluster up: master ${masterUrl}, chunkservers ${cluster.chunkservers.map((c) => c.url).join(' ')}`);
    const client = new GfsClient({ masterUrl });
    await client.mkdir('/bench', { parents: true });
    const st0 = await client.status();
    const chunkSizeBytes = Number(st0.chunkSizeBytes);
    const seqBytes = sizes.seqBytes;
    const source = new PieceSource();
    const leaseMs = Number(st0.leaseMs) || null;
    // The 1 MiB snapshot source is written first, so by the time it is
    // snapshotted (the last workload) its chunk's lease has usually run out.
    let snapSrcWrittenAt = 0;
    if (wanted('snapshot')) {
      await gfsWrite(client, '/bench/snap-src-1MiB', 3, MiB, source);
      snapSrcWrittenAt = Date.now();
    }
    const rawPath = join(dir, 'raw-seq.bin');

    // -- sequential write / read --
    let sha3: string | undefined;
    const wantSeq = wanted('seq-write-1GiB-r3');
    for (const rep of [3, 1]) {
      const name = `seq-write-1GiB-r${rep}`;
      if (!wanted(name)) {
        skipped(name, 'MB/s');
        continue;
      }
      await begin();
      // The ceiling is measured right before each write, so both see the same machine.
      progress(`raw write of ${seqBytes / MiB} MiB + fdatasync`);
      const rawWriteBps = rawWrite(rawPath, seqBytes, client.pieceBytes, source).bytesPerSec;
      progress(`raw write ${(rawWriteBps / 1e6).toFixed(1)} MB/s; ${name}: writing ${seqBytes / MiB} MiB with replication ${rep}`);
      const cpu0 = cluster.cpuMs();
      const r = await gfsWrite(client, `/bench/seq-r${rep}`, rep, seqBytes, source);
      const cpu = cpuPer(cpu0, cluster.cpuMs(), seqBytes / 1e6);
      const value = seqBytes / r.seconds / 1e6;
      const limit = rawWriteBps / 1e6 / rep;
      record({
        workload: name,
        value,
        unit: 'MB/s',
        limit,
        ratio: ratio(value, limit),
        bytes: seqBytes,
        replication: rep,
        seconds: round(r.seconds, 2),
        syncSeconds: round(r.syncSeconds, 2),
        durability: 'fsync on every replica (client.sync inside the timed region)',
        fsyncs: r.chunks * rep,
        fsyncNote: 'chunk sync calls (one per chunk per replica)',
        rawWriteMBps: round(rawWriteBps / 1e6),
        limitNote: `raw sequential write of the same bytes (8 MiB writes, one fdatasync) on the same disk, measured just before, / ${rep}`,
        pieceBytes: client.pieceBytes,
        concurrency: client.concurrency,
        cpuMsPerMB: cpu,
      });
    }
    if (wanted('seq-read-1GiB') && wanted('seq-write-1GiB-r3')) {
      await begin();
      progress('seq-read-1GiB: computing the expected sha256 (untimed)');
      sha3 = expectedSha(seqBytes, Math.min(client.pieceBytes, chunkSizeBytes), chunkSizeBytes, source);
      const rr = rawRead(rawPath, client.pieceBytes);
      progress(`raw read ${(rr.bytesPerSec / 1e6).toFixed(1)} MB/s; reading /bench/seq-r3`);
      const cpu0 = cluster.cpuMs();
      const r = await gfsRead(client, '/bench/seq-r3');
      const cpu = cpuPer(cpu0, cluster.cpuMs(), r.bytes / 1e6);
      const value = r.bytes / r.seconds / 1e6;
      const limit = rr.bytesPerSec / 1e6;
      record({
        workload: 'seq-read-1GiB',
        value,
        unit: 'MB/s',
        limit,
        ratio: ratio(value, limit),
        bytes: r.bytes,
        verified: r.sha === sha3 && r.bytes === seqBytes,
        sha256: r.sha,
        seconds: round(r.seconds, 2),
        hashSeconds: round(r.hashSeconds, 2),
        hashNote: 'sha256 computed inline, in file order, inside the timed region',
        cache: 'page cache warm (not dropped), for gfs and the raw read alike',
        concurrency: client.concurrency,
        cpuMsPerMB: cpu,
      });
      if (r.sha !== sha3) progress(`seq-read-1GiB: SHA256 MISMATCH (read ${r.sha}, wrote ${sha3})`);
    } else skipped('seq-read-1GiB', 'MB/s');
    rmSync(rawPath, { force: true });
    await client.delete('/bench/seq-r1').catch(() => undefined);

    // -- metadata: creates, stat, delete --
    const fsyncPath = join(dir, 'fsync-probe.bin');
    const fr = fsyncRate(fsyncPath, 1_000);
    rmSync(fsyncPath, { force: true });
    progress(`disk single-op append+fdatasync: ${fr.opsPerSec.toFixed(0)}/s (${fr.meanMs.toFixed(3)} ms each)`);
    let creates1: { paths: string[]; value: number } | undefined;
    for (const n of [1, 8, 64]) {
      const name = `creates-${n}`;
      if (!wanted(name) && !(n === 1 && (wanted('stat-1') || wanted('delete-1')))) {
        skipped(name, 'ops/s');
        continue;
      }
      await begin();
      const total = sizes.creates[n]!;
      const cdir = `/bench/c${n}`;
      await client.mkdir(cdir, { parents: true });
      progress(`${name}: ${total} empty files, ${n} concurrent clients`);
      const before = (await client.status()) as unknown as { oplog: { fsyncs: number; records: number } };
      const cpu0 = cluster.cpuMs();
      const r = await createMany(masterUrl, cdir, total, n);
      const cpu = cpuPer(cpu0, cluster.cpuMs(), total);
      const after = (await client.status()) as unknown as { oplog: { fsyncs: number; records: number } };
      const value = total / r.seconds;
      const fsyncs = after.oplog.fsyncs - before.oplog.fsyncs;
      record({
        workload: name,
        value,
        unit: 'ops/s',
        limit: fr.opsPerSec,
        ratio: ratio(value, fr.opsPerSec),
        files: total,
        clients: n,
        fsyncs,
        opsPerFsync: round(fsyncs > 0 ? total / fsyncs : null, 2),
        oplogRecords: after.oplog.records - before.oplog.records,
        seconds: round(r.seconds, 2),
        durability: 'each create acknowledged after the master\'s oplog fsync',
        limitNote: 'one 100-byte append + fdatasync at a time on the same disk',
        fsyncMeanMs: round(fr.meanMs, 3),
        cpuMsPerOp: cpu,
      });
      if (n === 1) creates1 = { paths: r.paths, value };
    }
    if (creates1 && wanted('stat-1')) {
      await begin();
      progress(`stat-1: ${creates1.paths.length} files, one at a time`);
      const cpu0 = cluster.cpuMs();
      const t0 = process.hrtime.bigint();
      for (const p of creates1.paths) await client.stat(p);
      const s = secondsSince(t0);
      const cpu = cpuPer(cpu0, cluster.cpuMs(), creates1.paths.length);
      const value = creates1.paths.length / s;
      record({
        workload: 'stat-1',
        value,
        unit: 'ops/s',
        limit: null,
        ratio: null,
        files: creates1.paths.length,
        vsCreates1: round(value / creates1.value, 2),
        limitNote: 'no disk ceiling for an in-memory lookup; limit/ratio null, vsCreates1 = stat-1 / creates-1',
        seconds: round(s, 2),
        cpuMsPerOp: cpu,
      });
    } else skipped('stat-1', 'ops/s');
    if (creates1 && wanted('delete-1')) {
      await begin();
      progress(`delete-1: ${creates1.paths.length} files, one at a time`);
      const before = (await client.status()) as unknown as { oplog: { fsyncs: number } };
      const cpu0 = cluster.cpuMs();
      const t0 = process.hrtime.bigint();
      for (const p of creates1.paths) await client.delete(p);
      const s = secondsSince(t0);
      const cpu = cpuPer(cpu0, cluster.cpuMs(), creates1.paths.length);
      const after = (await client.status()) as unknown as { oplog: { fsyncs: number } };
      const value = creates1.paths.length / s;
      const fsyncs = after.oplog.fsyncs - before.oplog.fsyncs;
      record({
        workload: 'delete-1',
        value,
        unit: 'ops/s',
        limit: fr.opsPerSec,
        ratio: ratio(value, fr.opsPerSec),
        files: creates1.paths.length,
        fsyncs,
        opsPerFsync: round(fsyncs > 0 ? creates1.paths.length / fsyncs : null, 2),
        seconds: round(s, 2),
        limitNote: 'one 100-byte append + fdatasync at a time on the same disk',
        cpuMsPerOp: cpu,
      });
    } else skipped('delete-1', 'ops/s');

    // -- record appends from separate processes --
    const appendPath = join(dir, 'append-probe.bin');
    const ar = appendRate(appendPath, 1_000, 1024);
    rmSync(appendPath, { force: true });
    progress(`ext4 O_APPEND 1 KiB: ${ar.opsPerSec.toFixed(0)}/s`);
    for (const n of [1, 4, 16]) {
      const name = `append-${n}proc`;
      if (!wanted(name)) {
        skipped(name, 'records/s');
        continue;
      }
      await begin();
      progress(`${name}: ${n} processes x ${sizes.appends[n]} records of 1 KiB`);
      await appendBench(cluster, n, sizes.appends[n]!, ar.opsPerSec);
    }

    // -- dd write and read through `gfs mount` (scripts/bench/mount.ts) --
    await mountDdBench({ masterUrl, bytes: seqBytes, wanted, begin, record, progress, cpuMs: () => cluster!.cpuMs(), native: (w) => results.find((r) => r.workload === w) });

    if (wanted('snapshot')) {
      await begin();
      // snapshot-1MiB: a fresh 1 MiB file; snapshot-1GiB: the r3 file above (quick mode: its size is in "bytes").
      const srcAgeS = round((Date.now() - snapSrcWrittenAt) / 1000);
      const probe = await snapshotProbe(masterUrl, '/bench/snap-src-1MiB', '/bench/snap-dst-1MiB');
      if (!probe.implemented) {
        notImplemented('snapshot-1MiB', 'ms');
        notImplemented('snapshot-1GiB', 'ms');
      } else {
        // A snapshot right after a write (the source chunk's lease still running), in full mode only: it may wait out the lease.
        let hot: Record<string, unknown> = { hotSnapshotMs: null, hotNote: 'snapshot right after a write: full mode only (may wait out a whole lease)' };
        if (!quick) {
          await gfsWrite(client, '/bench/snap-hot-1MiB', 3, MiB, source);
          const h = await snapshotProbe(masterUrl, '/bench/snap-hot-1MiB', '/bench/snap-hot-dst');
          hot = {
            hotSnapshotMs: h.seconds !== undefined && !h.error ? round(h.seconds * 1000) : null,
            ...(h.revokeWaitMs !== undefined ? { hotLeaseWaitMs: h.revokeWaitMs } : {}),
            hotNote: 'snapshot of a 1 MiB file written just before (its lease still running)',
            ...(h.error ? { hotError: h.error } : {}),
          };
        }
        await recordSnapshot(client, 'snapshot-1MiB', '/bench/snap-src-1MiB', '/bench/snap-dst-1MiB', MiB, probe, source, { sourceWrittenSecondsAgo: srcAgeS, leaseMs, ...hot });
        if (wantSeq) {
          await begin();
          const big = await snapshotProbe(masterUrl, '/bench/seq-r3', '/bench/snap-dst-1GiB');
          await recordSnapshot(client, 'snapshot-1GiB', '/bench/seq-r3', '/bench/snap-dst-1GiB', seqBytes, big, source, { leaseMs });
        } else record({ workload: 'snapshot-1GiB', value: null, unit: 'ms', limit: null, ratio: null, note: 'skipped: no seq-r3 file (--only)' });
      }
    } else {
      skipped('snapshot-1MiB', 'ms');
      skipped('snapshot-1GiB', 'ms');
    }
    if (wanted('rereplicate')) await rereplicateBench(cluster, client, quick ? 256 * MiB : 1024 * MiB, source);
    else skipped('rereplicate-MBps', 'MB/s');

    // -- creates-64 with 0, 1, 2 log replicas (master/replicas.ts), same run, own masters --
    const logRepTotal = quick ? 1200 : 5000;
    let noReplicas: number | undefined;
    for (const k of [0, 1, 2]) {
      const name = `creates-64-logreplicas-${k}`;
      if (!wanted(name)) {
        skipped(name, 'ops/s');
        continue;
      }
      await begin();
      progress(`${name}: ${logRepTotal} empty files, 64 clients, master with ${k} log replica(s)`);
      const r = await createsWithLogReplicas(dir, k, logRepTotal, 64);
      if (k === 0) noReplicas = r.opsPerSec;
      record({
        workload: name,
        value: r.opsPerSec,
        unit: 'ops/s',
        limit: noReplicas ?? null,
        ratio: ratio(r.opsPerSec, noReplicas ?? null),
        files: logRepTotal,
        clients: 64,
        logReplicas: k,
        masterFsyncs: r.fsyncs,
        seconds: round(r.seconds, 2),
        durability: k === 0 ? "each create acknowledged after the master's oplog fsync" : `each create acknowledged after the batch is fsynced on the master and on all ${k} shadow(s)`,
        limitNote: 'limit = the same workload with 0 log replicas, in this run',
      });
    }
  } catch (e) {
    progress(`FAILED: ${(e as Error).stack ?? String(e)}`);
    if (e instanceof GfsError) progress(`code ${e.code}`);
    for (const d of [cluster.master, ...cluster.chunkservers].filter(Boolean)) progress(`--- ${d.name} log tail ---\n${cluster!.logTail(d)}`);
    throw e;
  } finally {
    await cluster.stop().catch(() => undefined);
    if (!opts.keep) cleanupNow();
    else progress(`kept ${dir}`);
  }
  printTable();
  for (const r of results) process.stdout.write(JSON.stringify(r) + '\n');
}

main().then(
  () => process.exit(0),
  () => {
    if (results.length) {
      printTable();
      for (const r of results) process.stdout.write(JSON.stringify(r) + '\n');
    }
    process.exit(1);
  },
);
