// The lease and partition suite: a real cluster, concurrent client processes
// recording a history, a seeded nemesis, and a checker of the invariants of
// docs/architecture.md (see scripts/partition/*.ts).
//
//   npm run test:partition -- --seed N --duration S [--mode layer|netns] [--nemesis partition,kill,pause,clock,bump,promote]
//                             [--unsafe master-no-lease-wait|primary-ignores-lease] [--seeds N] [--keep]
//                             [--min-writes N] [--min-appends N] [--min-creates N] [--min-deletes N] [--min-undeletes N] [--min-reads N]
//
// Prints the schedule, what the nemesis did, the counts of operations and
// the verdict; exits 1 on any violation, or when too little was checked
// (replication did not settle, or fewer operations of a kind than the
// minimums, which default to figures scaled to the duration; 0 turns one
// off), 2 on a harness error. --seeds N
// runs seeds N, N+1, ... one after the other and prints a summary. The
// netns mode needs root (and `ip`, `nft`); elsewhere it is skipped with a
// message and exit code 0.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { closeRpc } from '../shared/rpc.js';
import { unsafeOptions } from '../shared/unsafe.js';
import { defaultMinimums, type Minimums } from './partition/checker.js';
import { nemesisKinds, type NemesisKind } from './partition/nemesis.js';
import { defaultRunOptions, layerNetwork, runPartition, type Network } from './partition/run.js';
import { netnsUnavailable, runInNetns, innerNetwork } from './partition/netns.js';

const usage = `usage: npm run test:partition -- --seed N --duration S [--seeds K] [--mode layer|netns]
       [--nemesis ${nemesisKinds.join(',')}] [--unsafe ${unsafeOptions.join('|')}]
       [--chunkservers 5] [--workers 3] [--lease-ms 3000] [--keep]
       [--min-writes N] [--min-appends N] [--min-creates N] [--min-deletes N] [--min-undeletes N] [--min-reads N]
Runs seeds N..N+K-1 (K=1 by default) for S seconds of workload each; prints the schedule,
what the nemesis did, the operation counts and the verdict; exit 1 on any violation or when
too little was checked (replication unsettled, or fewer acknowledged and checked operations of
a kind than its minimum: defaults scale with S, 0 turns one off).`;

const minimumKeys = ['writes', 'appends', 'creates', 'deletes', 'undeletes', 'reads'] as const;

function parse() {
  return parseArgs({
    options: {
      seed: { type: 'string', default: '1' },
      seeds: { type: 'string', default: '1' },
      duration: { type: 'string', default: '30' },
      mode: { type: 'string', default: 'layer' },
      nemesis: { type: 'string', default: nemesisKinds.join(',') },
      unsafe: { type: 'string', default: process.env.GFS_UNSAFE ?? '' },
      chunkservers: { type: 'string', default: String(defaultRunOptions.chunkservers) },
      workers: { type: 'string', default: String(defaultRunOptions.workers) },
      'lease-ms': { type: 'string', default: String(defaultRunOptions.leaseMs) },
      keep: { type: 'boolean', default: false },
      'min-writes': { type: 'string' },
      'min-appends': { type: 'string' },
      'min-creates': { type: 'string' },
      'min-deletes': { type: 'string' },
      'min-undeletes': { type: 'string' },
      'min-reads': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      /** Internal: set when this process was re-run inside the suite's control namespace. */
      'netns-inner': { type: 'string' },
    },
  });
}

let values: ReturnType<typeof parse>['values'];
try {
  values = parse().values;
} catch (e) {
  process.stderr.write(`test:partition: ${(e as Error).message}\n${usage}\n`);
  process.exit(2);
}

// The suite's cluster is authenticated like a real one (shared/auth.ts): a random secret in the
// environment, which this process's RPCs read and every daemon and worker (and the netns re-run) inherit.
if (!process.env.GFS_SECRET && !process.env.GFS_SECRET_FILE) process.env.GFS_SECRET = randomBytes(32).toString('hex');

// Interrupted: exit through process.exit, so the exit handlers kill every process this run started (by PID).
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

function fail(msg: string): never {
  process.stderr.write(`test:partition: ${msg}\n`);
  process.exit(2);
}

async function main(): Promise<number> {
  if (values.help) {
    process.stdout.write(usage + '\n');
    return 0;
  }
  const a = parsed();
  if (a.mode === 'netns' && values['netns-inner'] === undefined) {
    const why = netnsUnavailable();
    if (why) {
      process.stdout.write(`netns mode skipped: ${why}\n`);
      return 0;
    }
    // Sets up the namespaces, re-runs this command inside the control namespace, removes everything.
    return runInNetns(process.argv.slice(2), { chunkservers: a.chunkservers, workers: a.workers, log: (l) => process.stdout.write(l + '\n') });
  }
  const network = a.mode === 'netns' ? innerNetwork(values['netns-inner']!) : layerNetwork;
  const minimums = parseMinimums(a.durationMs);
  // The network namespaces are made for the master and chunkservers only: no room for a log replica there.
  if (a.mode === 'netns' && a.nemeses.includes('promote')) {
    a.nemeses.splice(a.nemeses.indexOf('promote'), 1);
    process.stdout.write('netns mode: the promote nemesis needs a log replica, which this mode does not set up; left out\n');
  }

  const summary: string[] = [];
  let failed = 0;
  for (let s = a.seed; s < a.seed + a.seeds; s++) {
    const r = await runSeed(s, a, network, minimums);
    summary.push(r.line);
    if (!r.ok) failed++;
  }
  process.stdout.write(`\n${summary.join('\n')}\n${failed === 0 ? `all ${a.seeds} seeds passed` : `${failed} of ${a.seeds} seeds failed`}\n`);
  return failed === 0 ? 0 : 1;
}

/** The options, checked (fail() on a bad one). */
function parsed() {
  const seed = Number(values.seed);
  const seeds = Number(values.seeds);
  const durationMs = Math.round(Number(values.duration) * 1000);
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(seeds) || seeds < 1 || seeds > 1000) fail('--seed and --seeds must be integers (1 <= seeds <= 1000)');
  if (!(durationMs >= 3_000 && durationMs <= 3_600_000)) fail('--duration must be between 3 and 3600 seconds');
  const nemeses = values.nemesis!.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of nemeses) if (!(nemesisKinds as readonly string[]).includes(n)) fail(`unknown nemesis ${n} (known: ${nemesisKinds.join(', ')})`);
  const unsafe = values.unsafe!.trim();
  for (const u of unsafe.split(',').filter(Boolean)) if (!(unsafeOptions as readonly string[]).includes(u)) fail(`unknown --unsafe option ${u} (known: ${unsafeOptions.join(', ')})`);
  const mode = values.mode;
  if (mode !== 'layer' && mode !== 'netns') fail('--mode must be layer or netns');
  const chunkservers = Number(values.chunkservers);
  const workers = Number(values.workers);
  if (!(chunkservers >= 3 && chunkservers <= 16) || !(workers >= 1 && workers <= 16)) fail('--chunkservers must be 3..16 and --workers 1..16');
  return { seed, seeds, durationMs, nemeses: nemeses as NemesisKind[], unsafe, mode, chunkservers, workers };
}

type Args = ReturnType<typeof parsed>;

/** The minimums scaled to the duration, with any --min-* given. */
function parseMinimums(durationMs: number): Minimums {
  const minimums: Minimums = defaultMinimums(durationMs);
  for (const k of minimumKeys) {
    const v = values[`min-${k}`];
    if (v === undefined) continue;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) fail(`--min-${k} must be a whole number >= 0`);
    minimums[k] = n;
  }
  return minimums;
}

/** One seed's run; its summary line. */
async function runSeed(s: number, a: Args, network: Network, minimums: Minimums): Promise<{ ok: boolean; line: string }> {
  const t0 = Date.now();
  process.stdout.write(`\n=== seed ${s}, ${a.durationMs / 1000}s, mode ${a.mode}, nemesis ${a.nemeses.join(',') || '(none)'}${a.unsafe ? `, GFS_UNSAFE=${a.unsafe}` : ''} ===\n`);
  try {
    const r = await runPartition({
      ...defaultRunOptions,
      seed: s,
      durationMs: a.durationMs,
      nemeses: a.nemeses,
      unsafe: a.unsafe,
      chunkservers: a.chunkservers,
      workers: a.workers,
      leaseMs: Number(values['lease-ms']),
      network,
      keep: values.keep!,
      minimums,
      log: (l) => process.stdout.write(l + '\n'),
    });
    const c = r.result.counts;
    const k = r.result.checked;
    const why = [
      ...(r.result.violations.length > 0 ? [`${r.result.violations.length} violations: ${[...new Set(r.result.violations.map((v) => v.kind))].join(', ')}`] : []),
      ...(r.tooLittle.length > 0 ? [`too little checked: ${r.tooLittle.join(', ')}`] : []),
    ];
    const verdict = r.ok ? 'PASS' : `FAIL (${why.join('; ')})`;
    const line = `seed ${s}: ${verdict}, ${r.schedule.faults.length} faults, acked ${c.write.ok} writes ${c.append.ok} appends ${c.create.ok + c.mkdir.ok} creates ${c.delete.ok} deletes ${c.undelete.ok} undeletes, checked ${k.deletedPaths} deleted ${k.undeletedPaths} undeleted paths ${k.constrainedReads} reads, ${((Date.now() - t0) / 1000).toFixed(0)}s`;
    return { ok: r.ok, line };
  } catch (e) {
    process.stdout.write(`harness error: ${(e as Error).stack ?? e}\n`);
    return { ok: false, line: `seed ${s}: ERROR ${(e as Error).message}` };
  }
}

main().then(
  async (code) => {
    await closeRpc().catch(() => undefined);
    process.exit(code);
  },
  (e) => {
    process.stderr.write(`test:partition: ${(e as Error).stack ?? e}\n`);
    process.exit(2);
  },
);
