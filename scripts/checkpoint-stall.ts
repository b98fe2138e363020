// What a checkpoint costs a master holding a large namespace, measured on the real op log and the
// real checkpoint builder (master/checkpoint-replay.ts) without the rest of the master: builds
// --files files (in --dirs directories, --chunks chunks each) by logging the records the master
// logs, then takes two checkpoints while a probe logs one small mutation every few milliseconds.
// Reports how long each checkpoint took to build (in its worker thread) and the probe's latency
// during them against before: the stall mutations see.
//
//   node dist/scripts/checkpoint-stall.js [--files 1000000] [--dirs 1000] [--chunks 2]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildCheckpointInWorker } from '../master/checkpoint-replay.js';
import { Namespace, type Op } from '../master/core/namespace.js';
import { OpLog } from '../master/oplog.js';

const { values: opts } = parseArgs({
  options: { files: { type: 'string', default: '1000000' }, dirs: { type: 'string', default: '1000' }, chunks: { type: 'string', default: '2' } },
});
const files = Number(opts.files);
const dirs = Number(opts.dirs);
const chunksPerFile = Number(opts.chunks);
/** Records appended before waiting for them: the op log's group commit takes them in a few batches. */
const appendWindow = 20_000;
const probeEveryMs = 5;

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

/** Logs the namespace's records through the op log, `appendWindow` in flight at a time. */
async function build(ns: Namespace, oplog: OpLog): Promise<void> {
  let t = 1_700_000_000_000;
  let pending: Promise<unknown>[] = [];
  const log = async (op: Op | undefined) => {
    if (op === undefined) return;
    pending.push(oplog.append(op));
    if (pending.length >= appendWindow) {
      await Promise.all(pending);
      pending = [];
    }
  };
  // Each record is checked against the state its predecessors left, so the window waits before a check that needs them.
  for (let d = 0; d < dirs; d++) {
    await Promise.all(pending);
    pending = [];
    await log(ns.checkMkdir(`/data/d${d}`, true, t++));
  }
  await Promise.all(pending);
  pending = [];
  for (let i = 0; i < files; i += appendWindow / 2) {
    const n = Math.min(files - i, appendWindow / 2);
    const paths = Array.from({ length: n }, (_, k) => `/data/d${(i + k) % dirs}/part-${String(i + k).padStart(8, '0')}`);
    await Promise.all(paths.map((p) => oplog.append(ns.checkCreate(p, 3, t++))));
    if (chunksPerFile > 0) await Promise.all(paths.map((p) => oplog.append(ns.checkAllocate(p, chunksPerFile - 1, t++)!)));
  }
}

/** Logs one small mutation every probeEveryMs until stopped; the latency of each, in ms. */
let probeSeq = 0;
function probe(ns: Namespace, oplog: OpLog): { stop: () => Promise<number[]> } {
  const latenciesMs: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = process.hrtime.bigint();
      await oplog.append(ns.checkCreate(`/probe/p${probeSeq++}`, 3, Date.now()));
      latenciesMs.push(seconds(t0) * 1e3);
      await new Promise((r) => setTimeout(r, probeEveryMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return latenciesMs;
    },
  };
}

function summary(ms: number[]): { probes: number; p50Ms: number; maxMs: number } {
  const s = [...ms].sort((a, b) => a - b);
  return { probes: s.length, p50Ms: +(s[Math.floor(s.length / 2)] ?? NaN).toFixed(2), maxMs: +(s[s.length - 1] ?? NaN).toFixed(2) };
}

/** One checkpoint with the probe running: its build time and what the probe saw. */
async function timedCheckpoint(ns: Namespace, oplog: OpLog): Promise<Record<string, unknown>> {
  const p = probe(ns, oplog);
  await new Promise((r) => setTimeout(r, 200));
  const t0 = process.hrtime.bigint();
  let built: Record<string, unknown> = {};
  await oplog.checkpoint({
    fromFiles: async (job) => {
      const r = await buildCheckpointInWorker(job);
      built = { records: r.records, stateMiB: +(r.stateBytes / 2 ** 20).toFixed(1) };
      return r;
    },
  });
  const checkpointSeconds = +seconds(t0).toFixed(2);
  return { checkpointSeconds, ...built, probeDuring: summary(await p.stop()) };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gfs-ckstall-'));
  try {
    const ns = new Namespace();
    const { oplog } = await OpLog.open({ dir, checkpointLogBytes: 2 ** 40, apply: (r) => ns.apply(r as Op) });
    const b0 = process.hrtime.bigint();
    await build(ns, oplog);
    const buildSeconds = +seconds(b0).toFixed(2);
    await oplog.append(ns.checkMkdir('/probe', false, Date.now())!);
    const quiet = probe(ns, oplog);
    await new Promise((r) => setTimeout(r, 1_000));
    const probeQuiet = summary(await quiet.stop());
    // The first checkpoint replays every log from the start; the second loads the first and replays what came after.
    const first = await timedCheckpoint(ns, oplog);
    const second = await timedCheckpoint(ns, oplog);
    await oplog.close();
    console.log(JSON.stringify({ files, dirs, chunksPerFile, records: ns.appliedIndex, buildSeconds, probeQuiet, first, second }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
