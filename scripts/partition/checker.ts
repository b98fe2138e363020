import { createHash } from 'node:crypto';
import type { PrimaryActs } from '../../chunkserver/leases.js';
import type { GrantRecord } from '../../master/core/leases.js';
import { opId, type HistoryEntry, type OpKind, type OpStatus } from './history.js';

// The partition suite's checker: reads the workload's history, the
// chunkservers' own records of when they acted as primary, the master's
// lease grants, and the final state of every replica the master lists, and
// reports every violated invariant of docs/architecture.md with the
// operations involved:
//   1. never two primaries for one chunk at once: two servers acting as
//      primary of one chunk at overlapping times; an older version's primary
//      acting after a newer one began; two servers primary at one version; a
//      primary acting past the expiry it believed in, or past the master's
//      (with slack for the harness missing the last extension); the master
//      granting overlapping leases to different servers.
//   2. every acknowledged write or append is on every listed replica, byte for
//      byte, at its offset (and acknowledged ranges never overlap: the
//      workload writes each range once).
//   3. no stale data served: a read of an acknowledged range, invoked after the
//      acknowledgement, returns exactly the acknowledged bytes.
//   4. every acknowledged create or mkdir exists at the end (after a master
//      SIGKILL + restart, and across the promotion of a shadow master).
//   5. deletes and undeletes: a path's final state (on the final master) is
//      the one its last acknowledged create/mkdir, delete or undelete left,
//      unless an operation on it had an unknown outcome (it may yet have taken
//      effect: then either state is accepted and the path is not counted).
// A run also checks that it checked enough (minimums()): a run in which
// nothing was acknowledged proves nothing.
// Pure but for final.readChunk, so tests can hand it made-up states.

export interface ServerActs extends PrimaryActs {
  server: string;
}

export interface ChunkState {
  index: number;
  handle: string;
  version: number;
  /** The replicas the master lists (only those at its current version). */
  replicas: string[];
}

export interface FileState {
  exists: boolean;
  chunkSizeBytes: number;
  chunks: ChunkState[];
}

export interface FinalState {
  /** Every path the history names. */
  files: Record<string, FileState>;
  /**
   * The whole chunk as one replica holds it, read with the version the master gave. A replica that
   * cannot serve it is looked up again at the master: `unlisted` when the master no longer lists it
   * (healing dropped an excess or stale copy between the listing and the read, when replication had not settled).
   */
  readChunk(replica: string, handle: string, version: number): Promise<Buffer | { error: string; unlisted?: boolean }>;
}

export interface CheckInput {
  history: HistoryEntry[];
  primaryActs: ServerActs[];
  grants?: GrantRecord[];
  final: FinalState;
  /** Slack when comparing a primary's acts with the master's record of its lease expiry (the harness may have missed the last extension). */
  grantSlackMs?: number;
}

export interface Violation {
  invariant: 1 | 2 | 3 | 4 | 5;
  kind: string;
  message: string;
  /** Operations ("proc:seq") or primary records ("server handle@version") involved. */
  ops: string[];
}

export interface CheckResult {
  violations: Violation[];
  counts: Record<OpKind, Record<OpStatus, number>>;
  checked: {
    primaryRecords: number;
    grants: number;
    ackedMutations: number;
    replicaChunksRead: number;
    /** Listed replicas that could not serve their chunk and that the master no longer listed when asked again. */
    replicasDroppedMeanwhile: number;
    reads: number;
    constrainedReads: number;
    ackedMetadata: number;
    /** Paths whose final state was checked against their last acknowledged delete / undelete. */
    deletedPaths: number;
    undeletedPaths: number;
    /** Paths left unchecked because an operation on them had an unknown outcome. */
    eitherPaths: number;
  };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function actName(a: ServerActs): string {
  return `${a.server} ${a.handle}@${a.version}`;
}

function actDesc(a: ServerActs): string {
  return `${a.server} primary of ${a.handle} v${a.version} ${iso(a.firstActMs)}..${iso(a.lastActMs)} (${a.acts} mutations)`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().slice(11, 23);
}

/** Groups `items` by `key`, keeping their order within each group. */
function groupBy<T, K>(items: Iterable<T>, key: (x: T) => K): Map<K, T[]> {
  const out = new Map<K, T[]>();
  for (const x of items) {
    const k = key(x);
    let l = out.get(k);
    if (!l) out.set(k, (l = []));
    l.push(x);
  }
  return out;
}

/** Calls `fn` on every pair (x, y) of `list` with x before y, after sorting it by `order`. */
function forEachPair<T>(list: T[], order: (x: T, y: T) => number, fn: (x: T, y: T) => void): void {
  list.sort(order);
  for (let i = 0; i < list.length; i++) for (let j = i + 1; j < list.length; j++) fn(list[i]!, list[j]!);
}

function checkPrimaries(acts: ServerActs[], grants: GrantRecord[], slackMs: number, out: Violation[]): void {
  for (const [, list] of groupBy(acts, (a) => a.handle)) forEachPair(list, (x, y) => x.firstActMs - y.firstActMs, (x, y) => checkActPair(x, y, out));
  for (const a of acts) {
    if (a.lastActMs > a.believedExpiryMs) {
      out.push({ invariant: 1, kind: 'acted-past-own-lease', message: `${actDesc(a)}: acted ${a.lastActMs - a.believedExpiryMs} ms after the lease expiry it believed in`, ops: [actName(a)] });
    }
  }
  const grantOf = new Map<string, GrantRecord>();
  for (const g of grants) grantOf.set(`${g.handle}@${g.version}`, g);
  for (const a of acts) {
    const g = grantOf.get(`${a.handle}@${a.version}`);
    if (!g) continue;
    if (g.primary !== a.server) {
      out.push({ invariant: 1, kind: 'acted-without-grant', message: `${actDesc(a)}, but the master granted ${a.handle} v${a.version} to ${g.primary}`, ops: [actName(a)] });
    } else if (a.lastActMs > g.expiresAtMs + slackMs) {
      out.push({ invariant: 1, kind: 'acted-after-master-expiry', message: `${actDesc(a)}: acted ${a.lastActMs - g.expiresAtMs} ms after the master's record of the lease expired (${iso(g.expiresAtMs)})`, ops: [actName(a)] });
    }
  }
  for (const [, list] of groupBy(grants, (g) => g.handle)) forEachPair(list, (x, y) => x.grantedAtMs - y.grantedAtMs, (x, y) => checkGrantPair(x, y, out));
}

/** Two servers' records of acting as primary of one chunk (x began first). */
function checkActPair(x: ServerActs, y: ServerActs, out: Violation[]): void {
  if (x.server === y.server) return;
  const overlap = x.firstActMs <= y.lastActMs && y.firstActMs <= x.lastActMs;
  if (overlap) {
    out.push({ invariant: 1, kind: 'overlapping-primaries', message: `two primaries at once: ${actDesc(x)} and ${actDesc(y)}`, ops: [actName(x), actName(y)] });
    return;
  }
  if (x.version === y.version) {
    out.push({ invariant: 1, kind: 'two-primaries-one-version', message: `two servers primary at one version: ${actDesc(x)} and ${actDesc(y)}`, ops: [actName(x), actName(y)] });
    return;
  }
  const [older, newer] = x.version < y.version ? [x, y] : [y, x];
  if (older.lastActMs >= newer.firstActMs) {
    out.push({ invariant: 1, kind: 'old-primary-after-new', message: `a primary of an older version acted after a newer one had begun: ${actDesc(older)} after ${actDesc(newer)}`, ops: [actName(older), actName(newer)] });
  }
}

/** Two of the master's lease grants for one chunk (x granted first). */
function checkGrantPair(x: GrantRecord, y: GrantRecord, out: Violation[]): void {
  if (x.primary === y.primary || y.grantedAtMs >= x.expiresAtMs) return;
  out.push({
    invariant: 1,
    kind: 'overlapping-grants',
    message: `the master granted ${y.handle} v${y.version} to ${y.primary} at ${iso(y.grantedAtMs)} while v${x.version} held by ${x.primary} ran until ${iso(x.expiresAtMs)}`,
    ops: [`master ${x.handle}@${x.version}`, `master ${y.handle}@${y.version}`],
  });
}

function isMutation(e: HistoryEntry): boolean {
  return (e.op === 'write' || e.op === 'append') && typeof e.offset === 'number' && typeof e.sizeBytes === 'number' && typeof e.sha === 'string';
}

type Checked = CheckResult['checked'];

export async function check(input: CheckInput): Promise<CheckResult> {
  const violations: Violation[] = [];
  const kinds: OpKind[] = ['mkdir', 'create', 'write', 'append', 'read', 'delete', 'undelete'];
  const counts = Object.fromEntries(kinds.map((k) => [k, { ok: 0, fail: 0, unknown: 0 }])) as CheckResult['counts'];
  for (const e of input.history) if (counts[e.op]) counts[e.op][e.status]++;
  const checked: Checked = { primaryRecords: input.primaryActs.length, grants: input.grants?.length ?? 0, ackedMutations: 0, replicaChunksRead: 0, replicasDroppedMeanwhile: 0, reads: 0, constrainedReads: 0, ackedMetadata: 0, deletedPaths: 0, undeletedPaths: 0, eitherPaths: 0 };

  // 1. primaries
  checkPrimaries(input.primaryActs, input.grants ?? [], input.grantSlackMs ?? 0, violations);

  // 5. deletes and undeletes; their paths are checked there, not by 4
  const deleted = checkDeletes(input.history, input.final, checked, violations);

  // 4. acknowledged metadata
  for (const e of input.history) {
    if ((e.op !== 'create' && e.op !== 'mkdir') || e.status !== 'ok' || deleted.has(e.path)) continue;
    checked.ackedMetadata++;
    if (!input.final.files[e.path]?.exists) violations.push({ invariant: 4, kind: 'metadata-lost', message: `acknowledged ${e.op} of ${e.path} (op ${opId(e)}, acked ${iso(e.completeMs)}) is gone`, ops: [opId(e)] });
  }

  // 2. acknowledged data: ranges never overlap, and every listed replica holds every byte
  const acked = input.history.filter((e) => e.status === 'ok' && isMutation(e));
  checked.ackedMutations = acked.length;
  for (const [path, list] of groupBy(acked, (e) => e.path)) await checkFileData(path, list, input.final, checked, violations);

  // 3. reads of acknowledged ranges return the acknowledged bytes
  checkReads(input.history, acked, checked, violations);
  return { violations, counts, checked };
}

/** Invariant 2 for one file: its acknowledged ranges never overlap, and every listed replica holds them. */
async function checkFileData(path: string, list: HistoryEntry[], final: FinalState, checked: Checked, out: Violation[]): Promise<void> {
  list.sort((x, y) => x.offset! - y.offset!);
  for (let i = 1; i < list.length; i++) {
    const prev = list[i - 1]!;
    const cur = list[i]!;
    if (cur.offset! < prev.offset! + prev.sizeBytes!) {
      out.push({ invariant: 2, kind: 'overlapping-acks', message: `two acknowledged mutations of ${path} overlap: ${prev.op} ${opId(prev)} [${prev.offset}, +${prev.sizeBytes}) and ${cur.op} ${opId(cur)} [${cur.offset}, +${cur.sizeBytes})`, ops: [opId(prev), opId(cur)] });
    }
  }
  const f = final.files[path];
  if (!f || !f.exists) {
    out.push({ invariant: 2, kind: 'file-lost', message: `${path} holds ${list.length} acknowledged mutations but no longer exists`, ops: list.slice(0, 5).map(opId) });
    return;
  }
  for (const [index, ops] of groupBy(list, (e) => Math.floor(e.offset! / f.chunkSizeBytes))) {
    const c = f.chunks.find((x) => x.index === index);
    if (!c || c.replicas.length === 0) {
      out.push({ invariant: 2, kind: 'no-listed-replica', message: `chunk ${index} of ${path} ${c ? `(${c.handle} v${c.version}) ` : ''}has no listed replica, yet holds ${ops.length} acknowledged mutations`, ops: ops.slice(0, 5).map(opId) });
      continue;
    }
    for (const replica of c.replicas) await checkReplica(replica, `chunk ${index} of ${path}`, c, index * f.chunkSizeBytes, ops, final, checked, out);
  }
}

/** Invariant 2 for one listed replica of a chunk (starting at file offset `chunkStart`) and the acknowledged mutations in it. */
async function checkReplica(replica: string, what: string, c: ChunkState, chunkStart: number, ops: HistoryEntry[], final: FinalState, checked: Checked, out: Violation[]): Promise<void> {
  const data = await final.readChunk(replica, c.handle, c.version);
  checked.replicaChunksRead++;
  if (!Buffer.isBuffer(data) && data.unlisted) {
    checked.replicasDroppedMeanwhile++;
    return;
  }
  if (!Buffer.isBuffer(data)) {
    out.push({ invariant: 2, kind: 'listed-replica-unreadable', message: `${replica}, listed for ${what} (${c.handle} v${c.version}), cannot serve it: ${data.error}`, ops: ops.slice(0, 5).map(opId) });
    return;
  }
  const bad: HistoryEntry[] = [];
  for (const e of ops) {
    const at = e.offset! - chunkStart;
    const got = data.subarray(at, at + e.sizeBytes!);
    if (got.length !== e.sizeBytes || sha256(got) !== e.sha) bad.push(e);
  }
  if (bad.length === 0) return;
  const first = bad[0]!;
  out.push({
    invariant: 2,
    kind: 'acked-data-missing',
    message: `${replica}, listed for ${what} (${c.handle} v${c.version}, ${data.length} bytes), lacks ${bad.length} acknowledged mutations, e.g. ${first.op} ${opId(first)} at ${first.offset} (+${first.sizeBytes}) acked ${iso(first.completeMs)}`,
    ops: bad.slice(0, 10).map(opId),
  });
}

/** Invariant 3: a read of an acknowledged range, invoked after the acknowledgement, returns its bytes. */
function checkReads(history: HistoryEntry[], acked: HistoryEntry[], checked: Checked, out: Violation[]): void {
  const ackedAt = groupBy(acked, (e) => `${e.path}|${e.offset}|${e.sizeBytes}`);
  for (const r of history) {
    if (r.op !== 'read' || r.status !== 'ok') continue;
    checked.reads++;
    const ms = (ackedAt.get(`${r.path}|${r.offset}|${r.sizeBytes}`) ?? []).filter((m) => m.completeMs < r.invokeMs);
    if (ms.length === 0) continue;
    checked.constrainedReads++;
    const m = ms.find((m) => r.gotBytes !== m.sizeBytes || r.sha !== m.sha);
    if (!m) continue;
    const short = r.gotBytes !== m.sizeBytes;
    out.push({
      invariant: 3,
      kind: short ? 'short-read' : 'stale-read',
      message: `read ${opId(r)} of ${r.path} at ${r.offset} (+${r.sizeBytes}) invoked ${iso(r.invokeMs)} returned ${short ? `only ${r.gotBytes} bytes of` : `${r.gotBytes} bytes that differ from`} ${m.op} ${opId(m)} acknowledged ${iso(m.completeMs)}`,
      ops: [opId(r), opId(m)],
    });
  }
}

const effect: Partial<Record<OpKind, boolean>> = { create: true, mkdir: true, undelete: true, delete: false };

/**
 * Invariant 5. Each path's operations come from one workload process, one at a time, so its
 * sequence numbers order them. Returns the paths any delete or undelete touched.
 */
function checkDeletes(history: HistoryEntry[], final: FinalState, checked: CheckResult['checked'], out: Violation[]): Set<string> {
  const touched = new Set(history.filter((e) => e.op === 'delete' || e.op === 'undelete').map((e) => e.path));
  const byPath = groupBy(history.filter((e) => touched.has(e.path) && effect[e.op] !== undefined), (e) => e.path);
  for (const [path, ops] of byPath) {
    ops.sort((x, y) => x.proc - y.proc || x.seq - y.seq);
    // An unknown outcome may take effect at any later time (its retries run on): either state is possible.
    if (ops.some((e) => e.status === 'unknown')) {
      checked.eitherPaths++;
      continue;
    }
    const last = ops.filter((e) => e.status === 'ok').pop();
    if (!last) continue;
    const want = effect[last.op]!;
    if (last.op === 'delete') checked.deletedPaths++;
    if (last.op === 'undelete') checked.undeletedPaths++;
    const exists = final.files[path]?.exists ?? false;
    if (exists !== want) {
      out.push({
        invariant: 5,
        kind: want ? 'undone-create-or-undelete' : 'undone-delete',
        message: `${path} ${exists ? 'exists' : 'is gone'} at the end, but its last acknowledged operation was ${last.op} ${opId(last)} (acked ${iso(last.completeMs)})`,
        ops: ops.filter((e) => e.status === 'ok').slice(-5).map(opId),
      });
    }
  }
  return touched;
}

/** The least a run must have acknowledged and checked to count (0: no minimum). */
export interface Minimums {
  writes: number;
  appends: number;
  creates: number;
  deletes: number;
  undeletes: number;
  reads: number;
}

/**
 * Defaults scaled to the workload's duration: a small fraction of what three workload processes do even
 * on a loaded two-core machine with the master down for a while, so a run falls short only when the
 * cluster was unavailable most of the time (or the workload did not run).
 */
export function defaultMinimums(durationMs: number): Minimums {
  const s = durationMs / 1000;
  const at = (perSecond: number) => Math.max(1, Math.floor(perSecond * s));
  return { writes: at(0.1), appends: at(0.1), creates: at(0.1), deletes: at(0.03), undeletes: at(0.02), reads: at(0.05) };
}

export function formatMinimums(m: Minimums): string {
  return `at least ${m.writes} writes, ${m.appends} appends, ${m.creates} creates/mkdirs, ${m.deletes} deleted and ${m.undeletes} undeleted paths, ${m.reads} reads of acknowledged data checked`;
}

/** What falls short of the minimums ([] when enough was checked). */
export function shortfalls(r: CheckResult, history: HistoryEntry[], m: Minimums): string[] {
  // Every acknowledged write and append is checked on every listed replica (invariant 2).
  const acked = (op: OpKind) => history.filter((e) => e.op === op && e.status === 'ok' && isMutation(e)).length;
  const got: Record<keyof Minimums, number> = {
    writes: acked('write'),
    appends: acked('append'),
    creates: r.checked.ackedMetadata,
    deletes: r.checked.deletedPaths,
    undeletes: r.checked.undeletedPaths,
    reads: r.checked.constrainedReads,
  };
  return (Object.keys(m) as (keyof Minimums)[]).filter((k) => got[k] < m[k]).map((k) => `${got[k]} ${k} < ${m[k]}`);
}

/** One line per violation kind with its count, then up to `limit` violations in full. */
export function formatViolations(vs: Violation[], limit = 20): string {
  if (vs.length === 0) return 'no violations';
  const byKind = new Map<string, number>();
  for (const v of vs) byKind.set(`invariant ${v.invariant} ${v.kind}`, (byKind.get(`invariant ${v.invariant} ${v.kind}`) ?? 0) + 1);
  const lines = [...byKind].map(([k, n]) => `  ${k}: ${n}`);
  for (const v of vs.slice(0, limit)) lines.push(`  - [${v.invariant} ${v.kind}] ${v.message} {${v.ops.join(', ')}}`);
  if (vs.length > limit) lines.push(`  ... and ${vs.length - limit} more`);
  return lines.join('\n');
}
