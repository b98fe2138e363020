// Bench data path: sequential write (replication 3 and 1) and read of one large file through the client, against raw disk.
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { GfsClient } from '../../client/client.js';
import { progress, secondsSince, type BenchContext } from './context.js';
import { MiB, rawRead, rawWrite, type PieceSource } from './disk.js';
import { authEnabled } from '../../shared/auth.js';
import { cpuPer, gcShare, ratio, record, round, skipped } from './report.js';

/** create + writePiece (pieceBytes, `concurrency` in flight) + sync; returns seconds for the whole, and for the sync alone. */
export async function gfsWrite(client: GfsClient, path: string, replication: number, totalBytes: number, source: PieceSource): Promise<{ seconds: number; syncSeconds: number; chunks: number }> {
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
  // The size from a replica of the last chunk (the master's comes from heartbeats and may lag a write just made).
  const { chunkSizeBytes: cs, sizeBytes } = await client.extent(path, Number.MAX_SAFE_INTEGER);
  await client.locate(path, 0, 10_000);
  const jobs: { index: number; inChunk: number; len: number }[] = [];
  for (let at = 0; at < sizeBytes; ) {
    const len = Math.min(client.pieceBytes, cs - (at % cs), sizeBytes - at);
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

/** seq-write-1GiB-r3/-r1, then seq-read-1GiB of the r3 file (sha256 checked); the r1 file is deleted after. */
export async function seqBench(ctx: BenchContext): Promise<void> {
  const rawPath = join(ctx.dir, 'raw-seq.bin');
  for (const rep of [3, 1]) {
    const name = `seq-write-1GiB-r${rep}`;
    if (ctx.wanted(name)) await seqWrite(ctx, name, rep, rawPath);
    else skipped(name, 'MB/s');
  }
  if (ctx.wanted('seq-read-1GiB') && ctx.wanted('seq-write-1GiB-r3')) await seqRead(ctx, rawPath);
  else skipped('seq-read-1GiB', 'MB/s');
  rmSync(rawPath, { force: true });
  await ctx.client.delete('/bench/seq-r1').catch(() => undefined);
}

const gcNote = 'GC pause time (wall clock, from /metrics) over CPU time, per process: the GC share of CPU on a quiet machine, inflated when the machine is loaded';

/** Runs `fn` with the cluster's CPU per MB (of `mb(result)`) and GC share over it. */
async function measured<T>(ctx: BenchContext, fn: () => Promise<T>, mb: (r: T) => number): Promise<{ r: T; cpu: Record<string, number>; gc: Record<string, number> }> {
  const gc0 = await ctx.cluster.gcMs();
  const cpu0 = ctx.cluster.cpuMs();
  const r = await fn();
  const cpu1 = ctx.cluster.cpuMs();
  const cpu = cpuPer(cpu0, cpu1, mb(r));
  const gc = gcShare(cpu0, cpu1, gc0, await ctx.cluster.gcMs());
  return { r, cpu, gc };
}

async function seqWrite(ctx: BenchContext, name: string, rep: number, rawPath: string): Promise<void> {
  const { client, source } = ctx;
  const seqBytes = ctx.sizes.seqBytes;
  await ctx.begin();
  // The ceiling is measured right before each write, so both see the same machine.
  progress(`raw write of ${seqBytes / MiB} MiB + fdatasync`);
  const rawWriteBps = rawWrite(rawPath, seqBytes, client.pieceBytes, source).bytesPerSec;
  progress(`raw write ${(rawWriteBps / 1e6).toFixed(1)} MB/s; ${name}: writing ${seqBytes / MiB} MiB with replication ${rep}`);
  const { r, cpu, gc } = await measured(ctx, () => gfsWrite(client, `/bench/seq-r${rep}`, rep, seqBytes, source), () => seqBytes / 1e6);
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
    gcPausePerCpu: gc,
    gcNote,
    auth: authEnabled() ? 'on' : 'off',
  });
}

async function seqRead(ctx: BenchContext, rawPath: string): Promise<void> {
  const { client, chunkSizeBytes } = ctx;
  const seqBytes = ctx.sizes.seqBytes;
  await ctx.begin();
  progress('seq-read-1GiB: computing the expected sha256 (untimed)');
  const sha3 = expectedSha(seqBytes, Math.min(client.pieceBytes, chunkSizeBytes), chunkSizeBytes, ctx.source);
  const rr = rawRead(rawPath, client.pieceBytes);
  progress(`raw read ${(rr.bytesPerSec / 1e6).toFixed(1)} MB/s; reading /bench/seq-r3`);
  const { r, cpu, gc } = await measured(ctx, () => gfsRead(client, '/bench/seq-r3'), (r) => r.bytes / 1e6);
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
    gcPausePerCpu: gc,
    gcNote,
    auth: authEnabled() ? 'on' : 'off',
  });
  if (r.sha !== sha3) progress(`seq-read-1GiB: SHA256 MISMATCH (read ${r.sha}, wrote ${sha3})`);
}
