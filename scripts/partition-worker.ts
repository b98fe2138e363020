// A workload process for the partition suite (scripts/partition.ts): one
// gfs client doing, concurrently, writes at offsets to files it alone owns,
// record appends to files every process shares, creates, lazy deletes and
// undeletes, and reads of
// ranges that it or another process had acknowledged. It records a history
// (scripts/partition/history.ts) as JSON lines, one per operation, appended
// to --out as each completes, so a killed worker loses nothing acknowledged.
// Other workers' histories (--peers) are tailed to learn which ranges they
// acknowledged, so reads cross processes.
//
// Ranges never overlap: each write goes to a fresh range of the process's
// own file (never crossing a chunk boundary), so an acknowledged range holds
// exactly what was acknowledged, and the checker can compare byte for byte.
//
// A deleter makes files and directories under /part/d and lazily deletes
// (to the trash) and undeletes them in turn; after an operation with an
// unknown outcome it leaves that path alone (its state may be either) and
// starts a fresh one, so most paths keep a last acknowledged state to check.
//
//   node dist/scripts/partition-worker.js --master URL --proc N --out FILE --duration-ms MS --seed S --chunk-size BYTES [--peers F1,F2]
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GfsClient } from '../client/client.js';
import { GfsError } from '../shared/errors.js';
import { closeRpc } from '../shared/rpc.js';
import { opId, parseHistory, type HistoryEntry, type OpKind, type OpStatus } from './partition/history.js';
import { randInt, rng } from '../shared/rng.js';

const { values } = parseArgs({
  options: {
    master: { type: 'string' },
    proc: { type: 'string', default: '0' },
    out: { type: 'string' },
    'duration-ms': { type: 'string', default: '20000' },
    seed: { type: 'string', default: '1' },
    'chunk-size': { type: 'string', default: String(256 * 1024) },
    peers: { type: 'string', default: '' },
    /** Shared append files. */
    'append-files': { type: 'string', default: '2' },
    /** An operation not finished after this long is recorded as unknown and left behind. */
    'op-timeout-ms': { type: 'string', default: '15000' },
  },
});

const proc = Number(values.proc);
const out = values.out!;
const chunkSizeBytes = Number(values['chunk-size']);
const durationMs = Number(values['duration-ms']);
const opTimeoutMs = Number(values['op-timeout-ms']);
const rand = rng(Number(values.seed) * 1000 + proc);
const root = '/part';
const deleteDir = `${root}/d`;
const appendFiles = Array.from({ length: Number(values['append-files']) }, (_, i) => `${root}/a-${i}`);

/** Errors after which the operation certainly took no effect. */
const definite = new Set(['BAD_REQUEST', 'INVALID_PATH', 'NOT_FOUND', 'EXISTS', 'NOT_A_DIRECTORY', 'IS_A_DIRECTORY', 'RECORD_TOO_LARGE', 'OUT_OF_RANGE']);

let seq = 0;
const client = new GfsClient({ masterUrl: values.master!, clientId: `w${proc}`, retry: { deadlineMs: 8_000, attempts: 8 } });
/** Acknowledged mutations anyone made (own and peers'): what reads pick from. */
const targets: HistoryEntry[] = [];
const inFlight = new Map<number, { op: OpKind; path: string; invokeMs: number; offset?: number; sizeBytes?: number; sha?: string }>();

function record(e: Omit<HistoryEntry, 'proc'>): HistoryEntry {
  const full: HistoryEntry = { proc, ...e };
  appendFileSync(out, JSON.stringify(full) + '\n');
  return full;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function classify(e: unknown): { status: OpStatus; error: string } {
  const error = e instanceof GfsError ? `${e.code}: ${e.message}` : (e as Error).message ?? String(e);
  return { status: e instanceof GfsError && definite.has(e.code) ? 'fail' : 'unknown', error: error.slice(0, 300) };
}

class OpTimeout extends Error {}

/** Runs one operation and records it; an operation that outlives opTimeoutMs is recorded as unknown (it may still take effect later). */
async function run<T>(op: OpKind, path: string, fields: { offset?: number; sizeBytes?: number; sha?: string; target?: string }, fn: () => Promise<T>, done?: (v: T) => Partial<HistoryEntry>): Promise<{ entry: HistoryEntry; value?: T }> {
  const s = seq++;
  const invokeMs = Date.now();
  inFlight.set(s, { op, path, invokeMs, ...fields });
  let timer: NodeJS.Timeout | undefined;
  try {
    const value = await Promise.race([fn(), new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new OpTimeout(`no answer within ${opTimeoutMs} ms`)), opTimeoutMs)))]);
    const entry = record({ seq: s, op, invokeMs, completeMs: Date.now(), status: 'ok', path, ...fields, ...(done ? done(value) : {}) });
    return { entry, value };
  } catch (e) {
    const c = e instanceof OpTimeout ? { status: 'unknown' as const, error: e.message } : classify(e);
    // A read that failed had no effect either way.
    const status: OpStatus = op === 'read' ? 'fail' : c.status;
    return { entry: record({ seq: s, op, invokeMs, completeMs: Date.now(), status, path, ...fields, error: c.error }) };
  } finally {
    clearTimeout(timer);
    inFlight.delete(s);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function writer(deadline: number): Promise<void> {
  let k = 0;
  while (Date.now() < deadline) {
    const path = `${root}/w${proc}-${k++}`;
    const c = await run('create', path, {}, () => client.create(path));
    if (c.entry.status !== 'ok' && !c.entry.error?.startsWith('EXISTS')) {
      await sleep(200);
      continue;
    }
    // Up to four chunks per file, each write in a fresh range that stays inside one chunk.
    let cursor = 0;
    while (Date.now() < deadline && cursor < 4 * chunkSizeBytes) {
      let size = randInt(rand, 1, 24 * 1024);
      const inChunk = cursor % chunkSizeBytes;
      if (inChunk + size > chunkSizeBytes) {
        if (rand() < 0.5) size = chunkSizeBytes - inChunk;
        else {
          cursor += chunkSizeBytes - inChunk;
          continue;
        }
      }
      const data = randomBytes(size);
      const offset = cursor;
      cursor += size;
      // Now and then leave a hole: the next write starts past the end.
      if (rand() < 0.1) cursor += randInt(rand, 1, 4096);
      const r = await run('write', path, { offset, sizeBytes: size, sha: sha256(data) }, () => client.write(path, offset, data));
      if (r.entry.status === 'ok') targets.push(r.entry);
    }
  }
}

async function appender(deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    const path = appendFiles[randInt(rand, 0, appendFiles.length - 1)]!;
    // Mostly small records, so a chunk takes a while to fill and several clients share its primary for long.
    const size = rand() < 0.9 ? randInt(rand, 16, 2048) : randInt(rand, 2048, 16 * 1024);
    const data = randomBytes(size);
    const r = await run('append', path, { sizeBytes: size, sha: sha256(data) }, () => client.appendRaw(path, data), (offset) => ({ offset }));
    if (r.entry.status === 'ok') targets.push(r.entry);
  }
}

async function creator(deadline: number): Promise<void> {
  let n = 0;
  while (Date.now() < deadline) {
    const path = `${root}/m/w${proc}-${n++}`;
    await run('create', path, {}, () => client.create(path));
    await sleep(randInt(rand, 100, 400));
  }
}

/** How many delete/undelete turns one deleter path goes through before a fresh one is started. */
const maxTurnsPerPath = 6;

async function deleter(deadline: number): Promise<void> {
  let n = 0;
  while (Date.now() < deadline) {
    const path = `${deleteDir}/w${proc}-${n++}`;
    // Now and then a directory, deleted recursively: the whole subtree goes to the trash and comes back.
    const dir = rand() < 0.3;
    const c = dir ? await run('mkdir', path, {}, () => client.mkdir(path)) : await run('create', path, {}, () => client.create(path));
    if (c.entry.status !== 'ok') {
      await sleep(200);
      continue;
    }
    let present = true;
    const turns = randInt(rand, 1, maxTurnsPerPath);
    for (let k = 0; k < turns && Date.now() < deadline; k++) {
      await sleep(randInt(rand, 50, 250));
      const r = present ? await run('delete', path, {}, () => client.delete(path, { recursive: dir })) : await run('undelete', path, {}, () => client.undelete(path));
      // Refused or unknown: this path's state is no longer known for sure; the checker treats it so.
      if (r.entry.status !== 'ok') break;
      present = !present;
    }
  }
}

async function reader(deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    await sleep(randInt(rand, 20, 120));
    if (targets.length === 0) continue;
    // Favour recent acknowledgements: they are the ones a stale replica would lack.
    const i = rand() < 0.6 ? targets.length - 1 - randInt(rand, 0, Math.min(20, targets.length - 1)) : randInt(rand, 0, targets.length - 1);
    const t = targets[i]!;
    await run('read', t.path, { offset: t.offset, sizeBytes: t.sizeBytes, target: opId(t) }, () => client.read(t.path, t.offset!, t.sizeBytes!), (b) => ({ gotBytes: b.length, sha: sha256(b) }));
  }
}

/** Learns peers' acknowledged mutations from their history files. */
function tailPeers(): () => void {
  const files = values.peers!.split(',').filter(Boolean);
  const seen = new Map<string, number>();
  const tick = () => {
    for (const f of files) {
      if (!existsSync(f)) continue;
      let text: string;
      try {
        text = readFileSync(f, 'utf8');
      } catch {
        continue;
      }
      const from = seen.get(f) ?? 0;
      const end = text.lastIndexOf('\n') + 1;
      if (end <= from) continue;
      seen.set(f, end);
      for (const e of parseHistory(text.slice(from, end))) if (e.status === 'ok' && (e.op === 'write' || e.op === 'append')) targets.push(e);
    }
  };
  const timer = setInterval(tick, 1_000);
  return () => clearInterval(timer);
}

async function setup(): Promise<void> {
  // The shared directory and append files; every process tries (both are idempotent), and retries until the cluster answers.
  const until = Date.now() + 30_000;
  for (;;) {
    const m = await run('mkdir', `${root}/m`, {}, () => client.mkdir(`${root}/m`, { parents: true }));
    const d = await run('mkdir', deleteDir, {}, () => client.mkdir(deleteDir, { parents: true }));
    let ok = m.entry.status === 'ok' && d.entry.status === 'ok';
    for (const p of appendFiles) {
      const c = await run('create', p, {}, () => client.create(p, { exclusive: false }));
      ok &&= c.entry.status === 'ok';
    }
    if (ok || Date.now() > until) return;
    await sleep(300);
  }
}

async function main(): Promise<void> {
  if (!values.master || !out) throw new Error('--master and --out are required');
  const stopTail = tailPeers();
  await setup();
  // The workload's time counts from the end of set-up, as the nemesis's counts from the first operation.
  const deadline = Date.now() + durationMs;
  await Promise.all([writer(deadline), appender(deadline), appender(deadline), creator(deadline), deleter(deadline), reader(deadline), reader(deadline)]);
  stopTail();
}

let exiting = false;
function exitNow(code: number): void {
  if (exiting) return;
  exiting = true;
  // Operations still running are recorded as unknown: they may yet take effect.
  for (const [s, f] of inFlight) record({ seq: s, op: f.op, invokeMs: f.invokeMs, completeMs: Date.now(), status: f.op === 'read' ? 'fail' : 'unknown', path: f.path, offset: f.offset, sizeBytes: f.sizeBytes, sha: f.op === 'read' ? undefined : f.sha, error: 'still running at exit' });
  void closeRpc().catch(() => undefined);
  process.exit(code);
}
process.once('SIGTERM', () => exitNow(0));

main().then(
  () => exitNow(0),
  (e) => {
    process.stderr.write(`partition-worker: ${(e as Error).stack ?? e}\n`);
    exitNow(1);
  },
);
