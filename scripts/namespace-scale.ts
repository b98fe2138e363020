// How big a namespace the master holds, measured on its core alone (no
// processes, no disk): builds a namespace of --files files in --dirs
// directories with --chunks chunks each by applying the same records the
// master logs, then reports heap bytes per file, and the time and size of a
// checkpoint (snapshot + JSON) and of loading it back (parse + fromSnapshot).
// The master process adds its fixed cost (the empty master) to these.
//
//   node --expose-gc dist/scripts/namespace-scale.js [--files 1000000] [--dirs 1000] [--chunks 2]
import { parseArgs } from 'node:util';
import { Namespace, type Op } from '../master/core/namespace.js';

const { values: opts } = parseArgs({
  options: { files: { type: 'string', default: '1000000' }, dirs: { type: 'string', default: '1000' }, chunks: { type: 'string', default: '2' } },
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

const s0 = process.hrtime.bigint();
const snap = ns.snapshot();
const snapshotS = seconds(s0);
const j0 = process.hrtime.bigint();
let json: string | undefined;
let jsonError: string | undefined;
try {
  json = JSON.stringify(snap);
} catch (e) {
  jsonError = (e as Error).message;
}
const stringifyS = seconds(j0);
let parseS = NaN;
let loadS = NaN;
if (json !== undefined) {
  const p0 = process.hrtime.bigint();
  const parsed = JSON.parse(json) as ReturnType<Namespace['snapshot']>;
  parseS = seconds(p0);
  const l0 = process.hrtime.bigint();
  const back = Namespace.fromSnapshot(parsed);
  loadS = seconds(l0);
  if (back.nodes.size !== ns.nodes.size || back.chunks.size !== ns.chunks.size) throw new Error('the checkpoint did not load back whole');
}

const result = {
  files,
  dirs,
  chunksPerFile,
  chunks: ns.chunks.size,
  buildSeconds: +buildS.toFixed(2),
  heapBytesPerFile: Math.round(perFile),
  heapMiB: +((after - before) / MiB).toFixed(1),
  snapshotSeconds: +snapshotS.toFixed(2),
  stringifySeconds: +stringifyS.toFixed(2),
  checkpointMiB: json === undefined ? null : +(Buffer.byteLength(json) / MiB).toFixed(1),
  checkpointError: jsonError ?? null,
  parseSeconds: +parseS.toFixed(2),
  loadSeconds: +loadS.toFixed(2),
};
console.log(JSON.stringify(result));
