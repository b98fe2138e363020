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
// processes appending 1 KiB records to one file, one at a time each, timed from
// "go" once every worker has started; limit = ext4 O_APPEND 1 KiB writes) and
// append-batched (one worker with a batching appender, many records in flight);
// every acknowledged record is then read back at its offset with readRecords,
// mount-dd-*, snapshot-1MiB/1GiB (measured when POST /api/snapshot exists),
// rereplicate-MBps. Each figure carries the CPU its processes spent per unit and
// the load average, since the machine may be shared.
//
// Options: --quick, --keep (leave the temp dir for inspection), --only a,b
// (workload name prefixes to run; the others print as "skipped"), --profile DIR
// (run master and chunkservers under `node --cpu-prof`, profiles land in DIR),
// --no-auth (run without a cluster secret; by default the bench makes a random
// one, as `gfs cluster up` does, so requests are signed and bodies MACed),
// --verbose-workers (append workers without --quiet: their first errors are shown).
//
// This file parses the options and runs the families in order; each lives in
// scripts/bench/: data.ts (seq write/read), meta.ts (creates, stat, delete,
// log replicas), append.ts, mount.ts (dd), snapshot.ts, rereplicate.ts, with
// report.ts for the output, cluster.ts and disk.ts underneath.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GfsClient } from '../client/client.js';
import { GfsError } from '../shared/errors.js';
import { appendsBench } from './bench/append.js';
import { BenchCluster, cleanupNow, installCleanupHandlers, snapshotDist, trackDir } from './bench/cluster.js';
import { progress, type BenchContext } from './bench/context.js';
import { gfsWrite, seqBench } from './bench/data.js';
import { MiB, PieceSource } from './bench/disk.js';
import { logReplicaCreatesBench, metaBench } from './bench/meta.js';
import { mountDdBench } from './bench/mount.js';
import { rereplicateBench } from './bench/rereplicate.js';
import { printResults, record, results, skipped, watchIncidents } from './bench/report.js';
import { snapshotBench } from './bench/snapshot.js';

const usage =
  'usage: node dist/scripts/bench.js [--quick] [--only a,b] [--profile DIR] [--keep] [--no-auth] [--verbose-workers]\n' +
  '  (npm run bench -- ARGS builds first; the header of scripts/bench.ts says what each workload measures)';

/** The options, or one line on stderr and exit 2 for bad ones (--help prints the usage and exits 0). */
function options() {
  try {
    const { values } = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        keep: { type: 'boolean', default: false },
        only: { type: 'string' },
        profile: { type: 'string' },
        'verbose-workers': { type: 'boolean', default: false },
        'no-auth': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(usage + '\n');
      process.exit(0);
    }
    return values;
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message} (--help lists the options)\n`);
    process.exit(2);
  }
}
const opts = options();
// Signed requests, as a deployment runs (`gfs cluster up` makes a secret); the daemons inherit it.
if (!opts['no-auth'] && !process.env.GFS_SECRET && !process.env.GFS_SECRET_FILE) process.env.GFS_SECRET = randomBytes(32).toString('hex');
const quick = !!opts.quick;
const only = opts.only ? opts.only.split(',').map((s) => s.trim()).filter(Boolean) : undefined;

const sizes = quick
  ? { seqBytes: 256 * MiB, creates: { 1: 400, 8: 600, 64: 1200 } as Record<number, number>, appends: { 1: 150, 4: 50, 16: 10 } as Record<number, number> }
  : { seqBytes: 1024 * MiB, creates: { 1: 5000, 8: 5000, 64: 5000 } as Record<number, number>, appends: { 1: 2000, 4: 1000, 16: 300 } as Record<number, number> };

let cluster: BenchCluster | undefined;

/** Before each workload: restart any daemon that died (killed from outside, crashed), so one loss does not sink every later figure. */
async function begin(): Promise<void> {
  await cluster?.ensureAlive();
}

function wanted(name: string): boolean {
  return !only || only.some((p) => name.startsWith(p));
}

/** Every family in order, on one cluster; the log replica creates start their own masters. */
async function runAll(ctx: BenchContext, snapSrcWrittenAt: number, leaseMs: number | null): Promise<void> {
  await seqBench(ctx);
  await metaBench(ctx);
  await appendsBench(ctx);
  // -- dd write and read through `gfs mount` (scripts/bench/mount.ts) --
  await mountDdBench({ masterUrl: ctx.masterUrl, bytes: ctx.sizes.seqBytes, metaFiles: quick ? 500 : 5000, wanted, begin, record, progress, cpuMs: () => ctx.cluster.cpuMs(), native: (w) => results.find((r) => r.workload === w) });
  await snapshotBench(ctx, snapSrcWrittenAt, leaseMs);
  if (wanted('rereplicate')) await rereplicateBench(ctx, quick ? 256 * MiB : 1024 * MiB);
  else skipped('rereplicate-MBps', 'MB/s');
  await logReplicaCreatesBench(ctx);
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const dir = mkdtempSync(join(tmpdir(), 'gfs-bench-'));
  if (!opts.keep) trackDir(dir);
  progress(`${quick ? 'quick' : 'full'} run; data in ${dir}; ${cpus().length} cpus, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, node ${process.version}, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  cluster = new BenchCluster(dir);
  const c = cluster;
  watchIncidents(() => c.incidents);
  try {
    snapshotDist(dir);
    await cluster.start(3, { profileDir: opts.profile });
    const masterUrl = cluster.masterUrl;
    progress(`cluster up: master ${masterUrl}, chunkservers ${cluster.chunkservers.map((c) => c.url).join(' ')}`);
    const client = new GfsClient({ masterUrl });
    await client.mkdir('/bench', { parents: true });
    const st0 = await client.status();
    const chunkSizeBytes = Number(st0.chunkSizeBytes);
    const source = new PieceSource();
    const leaseMs = Number(st0.leaseMs) || null;
    // The 1 MiB snapshot source is written first, so by the time it is
    // snapshotted (the last workload) its chunk's lease has usually run out.
    let snapSrcWrittenAt = 0;
    if (wanted('snapshot')) {
      await gfsWrite(client, '/bench/snap-src-1MiB', 3, MiB, source);
      snapSrcWrittenAt = Date.now();
    }
    const ctx: BenchContext = { cluster, client, masterUrl, dir, quick, verboseWorkers: !!opts['verbose-workers'], sizes, chunkSizeBytes, source, wanted, begin };
    await runAll(ctx, snapSrcWrittenAt, leaseMs);
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
  printResults();
}

main().then(
  () => process.exit(0),
  () => {
    if (results.length) printResults();
    process.exit(1);
  },
);
