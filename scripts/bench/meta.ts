// Bench metadata: creates from 1/8/64 clients, stat and delete one at a time, creates with 0-2 log replicas.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { GfsClient } from '../../client/client.js';
import { progress, secondsSince, type BenchContext } from './context.js';
import { fsyncRate } from './disk.js';
import { createsWithLogReplicas } from './logreplicas.js';
import { cpuPer, ratio, record, round, skipped } from './report.js';

type Creates1 = { paths: string[]; value: number };

/** A metadata figure in ops/s against the disk's one-op-per-fsync rate measured in this run. */
function recordAgainstFsync(workload: string, value: number, fr: { opsPerSec: number }, fields: Record<string, unknown>): void {
  record({ workload, value, unit: 'ops/s', limit: fr.opsPerSec, ratio: ratio(value, fr.opsPerSec), ...fields });
}

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

/** creates-1/8/64 against one append+fdatasync at a time, then stat-1 and delete-1 over the creates-1 files. */
export async function metaBench(ctx: BenchContext): Promise<void> {
  const { client, dir } = ctx;
  const fsyncPath = join(dir, 'fsync-probe.bin');
  const fr = fsyncRate(fsyncPath, 1_000);
  rmSync(fsyncPath, { force: true });
  progress(`disk single-op append+fdatasync: ${fr.opsPerSec.toFixed(0)}/s (${fr.meanMs.toFixed(3)} ms each)`);
  let creates1: Creates1 | undefined;
  for (const n of [1, 8, 64]) {
    const name = `creates-${n}`;
    if (!ctx.wanted(name) && !(n === 1 && (ctx.wanted('stat-1') || ctx.wanted('delete-1')))) {
      skipped(name, 'ops/s');
      continue;
    }
    await ctx.begin();
    const total = ctx.sizes.creates[n]!;
    const cdir = `/bench/c${n}`;
    await client.mkdir(cdir, { parents: true });
    progress(`${name}: ${total} empty files, ${n} concurrent clients`);
    const before = (await client.status()) as unknown as { oplog: { fsyncs: number; records: number } };
    const cpu0 = ctx.cluster.cpuMs();
    const r = await createMany(ctx.masterUrl, cdir, total, n);
    const cpu = cpuPer(cpu0, ctx.cluster.cpuMs(), total);
    const after = (await client.status()) as unknown as { oplog: { fsyncs: number; records: number } };
    const value = total / r.seconds;
    const fsyncs = after.oplog.fsyncs - before.oplog.fsyncs;
    recordAgainstFsync(name, value, fr, {
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
  await statDeleteBench(ctx, creates1, fr);
  await batchedBench(ctx, fr);
}

/** One client, namespace batches of 1,000 (POST /api/batch): creates, then deletes of the same files. */
async function batchedBench(ctx: BenchContext, fr: { opsPerSec: number }): Promise<void> {
  const total = ctx.quick ? 4_000 : 20_000;
  const perBatch = 1_000;
  const paths = Array.from({ length: total }, (_, i) => `/bench/batched/f${i}`);
  for (const [name, op] of [['creates-batched', 'create'], ['delete-batched', 'delete']] as const) {
    if (!ctx.wanted(name) && !(op === 'delete' && ctx.wanted('creates-batched'))) {
      skipped(name, 'ops/s');
      continue;
    }
    await ctx.begin();
    if (op === 'create') await ctx.client.mkdir('/bench/batched', { parents: true });
    progress(`${name}: ${total} files, one client, ${perBatch} per batch`);
    const before = (await ctx.client.status()) as unknown as { oplog: { fsyncs: number } };
    const cpu0 = ctx.cluster.cpuMs();
    const t0 = process.hrtime.bigint();
    let refused = 0;
    for (let i = 0; i < total; i += perBatch) {
      const results = await ctx.client.batch(paths.slice(i, i + perBatch).map((path) => ({ op, path })));
      refused += results.filter((r) => !r.ok).length;
    }
    const seconds = secondsSince(t0);
    const cpu = cpuPer(cpu0, ctx.cluster.cpuMs(), total);
    const after = (await ctx.client.status()) as unknown as { oplog: { fsyncs: number } };
    const fsyncs = after.oplog.fsyncs - before.oplog.fsyncs;
    const value = (total - refused) / seconds;
    recordAgainstFsync(name, value, fr, {
      files: total,
      refused,
      perBatch,
      fsyncs,
      opsPerFsync: round(fsyncs > 0 ? total / fsyncs : null, 2),
      seconds: round(seconds, 2),
      durability: 'each operation acknowledged after the master\'s oplog fsync',
      limitNote: 'one 100-byte append + fdatasync at a time on the same disk (one op per fsync)',
      cpuMsPerOp: cpu,
    });
  }
}

async function statDeleteBench(ctx: BenchContext, creates1: Creates1 | undefined, fr: { opsPerSec: number }): Promise<void> {
  const { client } = ctx;
  if (creates1 && ctx.wanted('stat-1')) {
    await ctx.begin();
    progress(`stat-1: ${creates1.paths.length} files, one at a time`);
    const cpu0 = ctx.cluster.cpuMs();
    const t0 = process.hrtime.bigint();
    for (const p of creates1.paths) await client.stat(p);
    const s = secondsSince(t0);
    const cpu = cpuPer(cpu0, ctx.cluster.cpuMs(), creates1.paths.length);
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
  if (creates1 && ctx.wanted('delete-1')) {
    await ctx.begin();
    progress(`delete-1: ${creates1.paths.length} files, one at a time`);
    const before = (await client.status()) as unknown as { oplog: { fsyncs: number } };
    const cpu0 = ctx.cluster.cpuMs();
    const t0 = process.hrtime.bigint();
    for (const p of creates1.paths) await client.delete(p);
    const s = secondsSince(t0);
    const cpu = cpuPer(cpu0, ctx.cluster.cpuMs(), creates1.paths.length);
    const after = (await client.status()) as unknown as { oplog: { fsyncs: number } };
    const value = creates1.paths.length / s;
    const fsyncs = after.oplog.fsyncs - before.oplog.fsyncs;
    recordAgainstFsync('delete-1', value, fr, {
      files: creates1.paths.length,
      fsyncs,
      opsPerFsync: round(fsyncs > 0 ? creates1.paths.length / fsyncs : null, 2),
      seconds: round(s, 2),
      limitNote: 'one 100-byte append + fdatasync at a time on the same disk',
      cpuMsPerOp: cpu,
    });
  } else skipped('delete-1', 'ops/s');
}

/** creates-64 with a master that has 0, 1 or 2 log replicas (master/replicas.ts), each its own cluster in this run. */
export async function logReplicaCreatesBench(ctx: BenchContext): Promise<void> {
  const logRepTotal = ctx.quick ? 1200 : 5000;
  let noReplicas: number | undefined;
  for (const k of [0, 1, 2]) {
    const name = `creates-64-logreplicas-${k}`;
    if (!ctx.wanted(name)) {
      skipped(name, 'ops/s');
      continue;
    }
    await ctx.begin();
    progress(`${name}: ${logRepTotal} empty files, 64 clients, master with ${k} log replica(s)`);
    const r = await createsWithLogReplicas(ctx.dir, k, logRepTotal, 64);
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
}
