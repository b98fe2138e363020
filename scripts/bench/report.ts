// Bench output: each figure as it is taken (stderr), then a table for people and one JSON object per line for scripts (stdout).
import { cpus, loadavg } from 'node:os';
import { MiB } from './disk.js';

export interface Result {
  workload: string;
  value: number | null;
  unit: string;
  limit: number | null;
  ratio: number | null;
  [extra: string]: unknown;
}
export const results: Result[] = [];
let incidentMark = 0;
let incidentSource: (() => string[]) | undefined;

/** Where record() learns of daemon incidents (restarts) to attach to the next figure. */
export function watchIncidents(source: () => string[]): void {
  incidentSource = source;
}

/** MooseFS 3.0 figures from ../shared/BENCH.md (medians, same kind of machine), and what gfs aims for. */
interface Peer {
  value: number | null;
  text: string;
  aim: string;
}
const noPeer: Peer = { value: null, text: '-', aim: '' };
/** MooseFS's append figure is one test (8 processes); each append workload is held against it. */
const mooseAppend = (aim: string): Peer => ({ value: 2320, text: '2320 rec/s (8 procs)', aim });
const seqWriteR3: Peer = { value: 75, text: '75 MB/s (74-121)', aim: '>= 90 MB/s' };
const seqRead: Peer = { value: 303, text: '303 MB/s (170-343)', aim: '>= 364 MB/s' };
const peer: Record<string, Peer> = {
  'seq-write-1GiB-r3': seqWriteR3,
  'seq-write-1GiB-r1': { value: 350, text: '350 MB/s', aim: '>= 420 MB/s' },
  'seq-read-1GiB': seqRead,
  'creates-1': { value: 589, text: '589 ops/s (478-1080)', aim: '>= 1178/s fsynced' },
  'creates-8': noPeer,
  'creates-64': { ...noPeer, aim: '>= 15000/s' },
  'stat-1': { value: 1287, text: '1287 ops/s', aim: '>= 3861/s' },
  'delete-1': { value: 679, text: '679 ops/s', aim: '>= 1358/s' },
  'append-1proc': mooseAppend('>= 4640/s, whole'),
  'append-4proc': mooseAppend('>= 4640/s, whole'),
  'append-16proc': mooseAppend('>= 4640/s, whole'),
  'append-batched': mooseAppend('>= 50000/s, whole'),
  // The mount workloads aim at what the native client does; MooseFS's figures are through FUSE too.
  'mount-dd-write-1GiB': { ...seqWriteR3, text: '75 MB/s (FUSE)' },
  'mount-dd-read-1GiB': { ...seqRead, text: '303 MB/s (FUSE)' },
  // MooseFS's mount runs the same python3 phases (peer-moosefs.sh, small-file part): compare in one sitting.
  'append-mount-8proc': mooseAppend('>= 4640/s, whole'),
  'mount-create': noPeer,
  'mount-ls': noPeer,
  'mount-ls-l': noPeer,
  'mount-delete': noPeer,
  'snapshot-1MiB': noPeer,
  'snapshot-1GiB': noPeer,
  'rereplicate-MBps': noPeer,
};

export const round = (x: number | null, digits = 1): number | null => (x === null || !Number.isFinite(x) ? null : Math.round(x * 10 ** digits) / 10 ** digits);
/** Ratios: 3 decimals, or 3 significant digits when small. */
const roundRatio = (x: number | null): number | null => (x === null || !Number.isFinite(x) ? null : Math.abs(x) >= 0.1 ? round(x, 3) : Number(x.toPrecision(3)));

/** Keeps one figure for the table and the JSON lines, and shows it on stderr at once. */
export function record(r: Result): void {
  const p = peer[r.workload];
  const out: Result = { ...r, value: round(r.value), limit: round(r.limit), ratio: roundRatio(r.ratio) };
  if (p && p.value !== null) out.peerMooseFS = p.value;
  if (r.value !== null) out.load1 = round(loadavg()[0]!, 2);
  const incidents = incidentSource?.() ?? [];
  if (incidents.length > incidentMark) {
    out.incidents = incidents.slice(incidentMark);
    incidentMark = incidents.length;
  }
  results.push(out);
  process.stderr.write(`bench: ${JSON.stringify(out)}\n`);
}

export function notImplemented(workload: string, unit: string, why = 'not implemented yet'): void {
  record({ workload, value: null, unit, limit: null, ratio: null, note: why });
}

export function skipped(workload: string, unit: string): void {
  record({ workload, value: null, unit, limit: null, ratio: null, note: 'skipped (--only)' });
}

export function ratio(value: number | null, limit: number | null): number | null {
  return value === null || limit === null || limit <= 0 ? null : value / limit;
}

/** CPU per unit of work between two cpuMs() snapshots: {master, cs1, cs2, cs3, client}. */
export function cpuPer(before: Record<string, number>, after: Record<string, number>, units: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(after)) if (before[k] !== undefined && units > 0) out[k] = Math.round(((after[k]! - before[k]!) / units) * 1000) / 1000;
  return out;
}

/** Per process: GC pause time (gcMs, wall clock) over CPU time (cpuMs), over the same interval: the GC share of CPU on a quiet machine; a loaded one stretches pauses, so it reads high there. */
export function gcShare(cpu0: Record<string, number>, cpu1: Record<string, number>, gc0: Record<string, number>, gc1: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(gc1)) {
    const cpu = (cpu1[k] ?? NaN) - (cpu0[k] ?? NaN);
    const gc = gc1[k]! - (gc0[k] ?? NaN);
    if (cpu > 0 && gc >= 0) out[k] = Math.round((gc / cpu) * 1000) / 1000;
  }
  return out;
}

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

/** The table, then every figure as one JSON line. */
export function printResults(): void {
  printTable();
  for (const r of results) process.stdout.write(JSON.stringify(r) + '\n');
}
