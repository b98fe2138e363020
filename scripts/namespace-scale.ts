// How big a namespace the master holds, measured on its core alone (no
// processes, no disk): builds a namespace of --files files in --dirs
// directories with --chunks chunks each by applying the same records the
// master logs, then reports heap bytes per file, and the time, size and memory
// of a checkpoint written as the master writes it (lines, streamed to a file)
// and of loading it back as a restart does; --json adds the former one-JSON-text
// form for comparison.
// The master process adds its fixed cost (the empty master) to these.
//
//   node --expose-gc dist/scripts/namespace-scale.js [--files 1000000] [--dirs 1000] [--chunks 2] [--json]
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadLinesCheckpoint } from '../master/checkpoint-stream.js';
import { Namespace, type Op } from '../master/core/namespace.js';
import { namespaceLines } from '../master/core/namespace-lines.js';
import { writeCheckpointLines } from '../master/oplog-lines.js';

const { values: opts } = parseArgs({
  options: { files: { type: 'string', default: '1000000' }, dirs: { type: 'string', default: '1000' }, chunks: { type: 'string', default: '2' }, json: { type: 'boolean', default: false } },
});
const files = Number(opts.files);
const dirs = Number(opts.dirs);
const chunksPerFile = Number(opts.chunks);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heapBytes(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const MiB = 1024 * 1024;

const before = heapBytes();
const ns = new Namespace();
const apply = (op: Op | undefined) => op && ns.apply(op);
let t = 1_700_000_000_000;
const t0 = process.hrtime.bigint();
for (let d = 0; d < dirs; d++) apply(ns.checkMkdir(`/data/d${d}`, true, t++));
for (let i = 0; i < files; i++) {
  const path = `/data/d${i % dirs}/part-${String(i).padStart(8, '0')}`;
  apply(ns.checkCreate(path, 3, t++));
  if (chunksPerFile > 0) apply(ns.checkAllocate(path, chunksPerFile - 1, t++));
}
const buildS = seconds(t0);
const after = heapBytes();
const perFile = (after - before) / files;

// The checkpoint as the master writes it (lines, master/oplog-lines.ts) and reads it at a restart.
const dir = mkdtempSync(join(tmpdir(), 'gfs-ns-scale-'));
const file = join(dir, 'checkpoint.json');
let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
const rss0 = process.memoryUsage().rss;
const w0 = process.hrtime.bigint();
const written = await writeCheckpointLines(file, 1, t, namespaceLines(ns));
const writeS = seconds(w0);
const writePeakRssMiB = (peakRss - rss0) / MiB;
const heapWithOne = heapBytes();
peakRss = 0;
const l0 = process.hrtime.bigint();
const back = await loadLinesCheckpoint(file);
const loadS = seconds(l0);
clearInterval(sampler);
if (back.nodes.size !== ns.nodes.size || back.chunks.size !== ns.chunks.size) throw new Error('the checkpoint did not load back whole');
const loadedHeapMiB = (heapBytes() - heapWithOne) / MiB;
rmSync(dir, { recursive: true, force: true });

// The former form, one JSON text, for comparison (--json).
let json: { snapshotSeconds: number; stringifySeconds: number; jsonMiB: number; parseSeconds: number; fromSnapshotSeconds: number } | string | null = null;
if (opts.json) {
  try {
    const s0 = process.hrtime.bigint();
    const snap = ns.snapshot();
    const snapshotSeconds = seconds(s0);
    const j0 = process.hrtime.bigint();
    const text = JSON.stringify(snap);
    const stringifySeconds = seconds(j0);
    const p0 = process.hrtime.bigint();
    const parsed = JSON.parse(text) as ReturnType<Namespace['snapshot']>;
    const parseSeconds = seconds(p0);
    const f0 = process.hrtime.bigint();
    Namespace.fromSnapshot(parsed);
    json = { snapshotSeconds, stringifySeconds, jsonMiB: +(Buffer.byteLength(text) / MiB).toFixed(1), parseSeconds, fromSnapshotSeconds: seconds(f0) };
  } catch (e) {
    json = (e as Error).message;
  }
}

const result = {
  files,
  dirs,
  chunksPerFile,
  chunks: ns.chunks.size,
  buildSeconds: +buildS.toFixed(2),
  heapBytesPerFile: Math.round(perFile),
  heapMiB: +((after - before) / MiB).toFixed(1),
  checkpointMiB: +(written.bytes / MiB).toFixed(1),
  checkpointWriteSeconds: +writeS.toFixed(2),
  checkpointWritePeakRssMiB: +writePeakRssMiB.toFixed(1),
  checkpointLoadSeconds: +loadS.toFixed(2),
  loadedHeapMiB: +loadedHeapMiB.toFixed(1),
  json,
};
console.log(JSON.stringify(result));
