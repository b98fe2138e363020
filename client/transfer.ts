import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { GfsError, isGfsError } from '../shared/errors.js';
import { appendRecord, readRecords, type GfsClient, type ReplicationReport } from './client.js';
import { followRecords } from './records.js';

// The CLI's data commands over the client library: put, get, cat, append,
// records. Large transfers move in pieces with a bounded number in flight,
// never a whole file in memory.

interface Progress {
  update(doneBytes: number): void;
  stop(): void;
}

async function progressBar(totalBytes: number, enabled: boolean, label: string): Promise<Progress> {
  if (!enabled || totalBytes < 8 * 1024 * 1024) return { update() {}, stop() {} };
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} MiB | {speed} MB/s`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  const start = Date.now();
  bar.start(Math.ceil(totalBytes / 2 ** 20), 0, { speed: '0' });
  return {
    update(done) {
      const s = (Date.now() - start) / 1000;
      bar.update(Math.floor(done / 2 ** 20), { speed: s > 0 ? (done / 1e6 / s).toFixed(1) : '0' });
    },
    stop() {
      bar.stop();
    },
  };
}

/** Reads a local file in pieces of exactly `pieceBytes` (the last may be shorter), each read straight into its own buffer. */
async function* filePieces(path: string, pieceBytes: number): AsyncGenerator<Buffer> {
  const fh = await open(path, 'r');
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(pieceBytes);
      let n = 0;
      while (n < pieceBytes) {
        const { bytesRead } = await fh.read(buf, n, pieceBytes - n, null);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      if (n > 0) yield n === pieceBytes ? buf : buf.subarray(0, n);
      if (n < pieceBytes) return;
    }
  } finally {
    await fh.close();
  }
}

/** Reads a stream (stdin) into pieces of exactly `pieceBytes` (the last may be shorter). */
async function* pieces(stream: AsyncIterable<Buffer>, pieceBytes: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const c of stream) {
    let chunk = c;
    while (chunk.length > 0) {
      const take = Math.min(chunk.length, pieceBytes - have);
      parts.push(chunk.subarray(0, take));
      have += take;
      chunk = chunk.subarray(take);
      if (have === pieceBytes) {
        yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
        parts = [];
        have = 0;
      }
    }
  }
  if (have > 0) yield Buffer.concat(parts, have);
}

/** How long a put waits, at most, for the master to repair a chunk short of its goal while a chunkserver with room lacks it. */
const repairWaitMs = 5_000;

/** Whether some live chunkserver with room lacks one of the under-replicated chunks (the master's healer would copy it there). */
async function repairPossible(c: GfsClient, r: ReplicationReport): Promise<boolean> {
  const s = (await c.status()) as { chunkservers?: { id: string; alive: boolean; full?: boolean }[] };
  const room = (s.chunkservers ?? []).filter((x) => x.alive && !x.full).map((x) => x.id);
  return r.underReplicated.some((ch) => room.some((id) => !ch.replicas.includes(id)));
}

/**
 * The replicas of every chunk of a file just written, as the master sees them (and `gfs fsck`
 * reports). A chunk dropped from a full server mid-write is copied elsewhere by the master's healer
 * when a server has room: that is waited for, a few seconds at most, before the answer.
 */
export async function settledReplication(c: GfsClient, remote: string, waitMs = repairWaitMs): Promise<ReplicationReport> {
  const until = Date.now() + waitMs;
  let r = await c.replication(remote);
  while (r.underReplicated.length > 0 && Date.now() < until && (await repairPossible(c, r))) {
    await new Promise((res) => setTimeout(res, 250));
    r = await c.replication(remote);
  }
  return r;
}

/** One line naming what an under-replicated file has, for a warning. */
export function underReplicatedLine(remote: string, r: ReplicationReport): string {
  const shown = r.underReplicated.slice(0, 4).map((ch) => `chunk ${ch.index} on ${ch.replicas.length > 0 ? ch.replicas.join(', ') : 'no chunkserver'}`);
  const more = r.underReplicated.length > shown.length ? `, and ${r.underReplicated.length - shown.length} more` : '';
  return `${remote} has fewer replicas than its goal of ${r.goal} in ${r.underReplicated.length} of ${r.chunks.length} chunks (${shown.join('; ')}${more}): no other chunkserver had room; the master adds replicas when one does`;
}

/** What a put did: the bytes written and where every chunk ended up (ReplicationReport). */
export interface PutResult extends ReplicationReport {
  sizeBytes: number;
}

export async function putFile(c: GfsClient, local: string, remote: string, o: { replication?: number; force?: boolean; progress?: boolean }): Promise<PutResult> {
  let totalBytes = 0;
  if (local !== '-') {
    const st = await stat(local).catch(() => {
      throw new GfsError('NOT_FOUND', `no such local file: ${local}`);
    });
    if (!st.isFile()) throw new GfsError('BAD_REQUEST', `not a regular file: ${local}`);
    totalBytes = st.size;
  }
  try {
    await c.create(remote, { replication: o.replication });
  } catch (e) {
    if (!(o.force && isGfsError(e, 'EXISTS'))) throw e;
    await c.delete(remote, { now: true }); // an overwrite bypasses the trash, as `hdfs dfs -put -f` does
    await c.create(remote, { replication: o.replication });
  }
  const bar = await progressBar(totalBytes, !!o.progress, 'put');
  const f = await c.locate(remote, 0, 1, true);
  // Pieces never straddle a chunk boundary.
  const pieceBytes = Math.min(c.pieceBytes, f.chunkSizeBytes);
  let offset = 0;
  let done = 0;
  const inFlight = new Set<Promise<void>>();
  let failed: unknown;
  const source = local === '-' ? pieces(process.stdin as AsyncIterable<Buffer>, pieceBytes) : filePieces(local, pieceBytes);
  for await (const piece of source) {
    if (failed) break;
    const at = offset;
    offset += piece.length;
    const p: Promise<void> = c
      .writePiece(remote, Math.floor(at / f.chunkSizeBytes), at % f.chunkSizeBytes, piece)
      .then(() => {
        done += piece.length;
        bar.update(done);
      })
      .catch((e) => {
        failed ??= e;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    // Bounded memory: at most `concurrency` pieces in flight.
    while (inFlight.size >= c.concurrency) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  bar.stop();
  if (failed) throw failed;
  // Close after a put: durable on every replica's disk before we return.
  await c.sync(remote);
  return { sizeBytes: offset, ...(await settledReplication(c, remote)) };
}

export async function getFile(c: GfsClient, remote: string, local: string, o: { progress?: boolean }): Promise<number> {
  if (local === '-') return catFile(c, remote, process.stdout, {});
  const { chunkSizeBytes, sizeBytes } = await c.extent(remote, Number.MAX_SAFE_INTEGER);
  const fh = await open(local, 'w');
  try {
    const bar = await progressBar(sizeBytes, !!o.progress, 'get');
    const jobs: { at: number; len: number }[] = [];
    for (let at = 0; at < sizeBytes; ) {
      const len = Math.min(c.pieceBytes, chunkSizeBytes - (at % chunkSizeBytes), sizeBytes - at);
      jobs.push({ at, len });
      at += len;
    }
    let done = 0;
    // readPiece answers whole pieces except in the last chunk, where the replicas may hold less than the size said: the file ends there.
    let dataEnd = sizeBytes;
    await c.runLimited(jobs, async (j) => {
      const b = await c.readPiece(remote, Math.floor(j.at / chunkSizeBytes), j.at % chunkSizeBytes, j.len);
      if (b.length < j.len) dataEnd = Math.min(dataEnd, j.at + b.length);
      await fh.write(b, 0, b.length, j.at);
      done += b.length;
      bar.update(done);
    });
    bar.stop();
    await fh.truncate(dataEnd);
    return dataEnd;
  } finally {
    await fh.close();
  }
}

export async function catFile(c: GfsClient, remote: string, out: Writable, o: { replica?: string; offset?: number; length?: number }): Promise<number> {
  const f = await c.extent(remote, Number.MAX_SAFE_INTEGER);
  const located = o.replica ? await c.locate(remote, 0, 10_000) : f;
  const start = o.offset ?? 0;
  const end = Math.min(f.sizeBytes, o.length !== undefined ? start + o.length : f.sizeBytes);
  const jobs: { at: number; index: number; inChunk: number; len: number }[] = [];
  for (let at = start; at < end; ) {
    const index = Math.floor(at / f.chunkSizeBytes);
    const inChunk = at % f.chunkSizeBytes;
    const len = Math.min(c.pieceBytes, f.chunkSizeBytes - inChunk, end - at);
    jobs.push({ at, index, inChunk, len });
    at += len;
  }
  const readJob = async (j: (typeof jobs)[number]): Promise<Buffer> => {
    if (!o.replica) return c.readPiece(remote, j.index, j.inChunk, j.len);
    const loc = located.chunks.get(j.index);
    const r = loc?.replicas.find((x) => x.id === o.replica);
    if (!loc || !r) throw new GfsError('NOT_FOUND', `chunkserver ${o.replica} holds no current replica of chunk ${j.index} of ${remote}`);
    const b = await c.readReplica(r, loc.handle, loc.version, j.inChunk, j.len);
    // This replica lacks bytes the file has: say so rather than show zeros or stop as if the file ended.
    if (b.length < j.len && j.index < f.chunkCount - 1) throw new GfsError('UNAVAILABLE', `${o.replica}'s replica of chunk ${j.index} of ${remote} holds ${j.inChunk + b.length} bytes, short of the chunk's ${f.chunkSizeBytes}`);
    return b;
  };
  // Several pieces in flight from the cached locations (no master call per piece), written out in order.
  const pending = new Map<number, Promise<Buffer>>();
  let launched = 0;
  let written = 0;
  try {
    for (let next = 0; next < jobs.length; next++) {
      while (launched < jobs.length && launched - next < c.concurrency) {
        const p = readJob(jobs[launched]!);
        p.catch(() => undefined); // awaited in order below
        pending.set(launched++, p);
      }
      const b = await pending.get(next)!;
      pending.delete(next);
      if (!out.write(b)) await new Promise((r) => out.once('drain', r));
      written += b.length;
      if (b.length < jobs[next]!.len) break; // the last chunk's replicas hold less than the size said: the file ends here
    }
  } finally {
    pending.clear();
  }
  return written;
}

export async function appendCmd(c: GfsClient, remote: string, file: string, o: { lines: boolean; create: boolean }): Promise<void> {
  if (o.create) {
    try {
      await c.create(remote);
    } catch (e) {
      if (!isGfsError(e, 'EXISTS')) throw e;
    }
  }
  const input = file === '-' ? process.stdin : createReadStream(file);
  if (!o.lines) {
    const parts: Buffer[] = [];
    for await (const ch of input) parts.push(ch as Buffer);
    const offset = await appendRecord(c, remote, Buffer.concat(parts));
    process.stdout.write(`${offset}\n`);
    return;
  }
  const { createInterface } = await import('node:readline');
  const rl = createInterface({ input, crlfDelay: Infinity });
  // One batch in flight at a time, so lines land in input order; lines read while it is out go in the next.
  const app = c.appender(remote, { maxInFlight: 1 });
  let printed: Promise<void> = Promise.resolve();
  let failure: unknown;
  for await (const line of rl) {
    // A failed line ends the command (its offsets so far printed), also when the input never ends (tail -f).
    if (failure !== undefined) break;
    const p = app.append(Buffer.from(line, 'utf8'));
    p.catch((e: unknown) => (failure ??= e));
    printed = printed.then(async () => {
      const offset = await p;
      if (!process.stdout.write(`${offset}\n`)) await new Promise((r) => process.stdout.once('drain', r));
    });
    printed.catch(() => undefined); // awaited at the end; the failure is in `failure` meanwhile
  }
  rl.close();
  await app.flush();
  await printed;
  if (failure !== undefined) throw failure;
}

export async function recordsCmd(c: GfsClient, remote: string, json: boolean, follow?: { intervalMs: number }): Promise<void> {
  let stop = false;
  if (follow) for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => (stop = true));
  const records = follow ? followRecords(c, remote, { intervalMs: follow.intervalMs, stop: () => stop }) : readRecords(c, remote);
  for await (const r of records) {
    const line = json ? JSON.stringify({ offset: r.offset, id: r.id, data: r.payload.toString('utf8') }) : r.payload.toString('utf8');
    if (!process.stdout.write(line + '\n')) await new Promise((res) => process.stdout.once('drain', res));
  }
}
