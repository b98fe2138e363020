// A checkpoint built from the files alone, in a worker thread, so the master's event loop never
// stops to copy or serialise its namespace (at a million files that took over 20 s, with every
// mutation waiting). The op log switches to a new log first (a pause of one file creation), then
// the worker loads the previous checkpoint, replays the closed logs with the pure namespace core
// (the same replay a restart does, so the checkpoint is exactly what a restart would rebuild),
// writes the result out as lines (master/oplog-lines.ts) to checkpoint.<newSeq>.json durably. The live namespace is never
// touched: it goes on applying new records meanwhile. Like HDFS's checkpointer, at the cost of a
// second copy of the namespace's memory while it runs.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { GfsError } from '../shared/errors.js';
import { Namespace, type NamespaceSnapshot, type Op } from './core/namespace.js';
import { loadLinesCheckpoint } from './checkpoint-stream.js';
import { namespaceLines } from './core/namespace-lines.js';
import { linesCheckpointHeader, writeCheckpointLines } from './oplog-lines.js';
import { checkpointFileName, logFileName, type CheckpointFile } from './oplog-recovery.js';
import { scanLog } from './oplog-scan.js';

/** What to build: the state as of the start of log `newSeq`, from checkpoint `baseSeq` (none: from log 1) and the logs between. */
export interface ReplayJob {
  dir: string;
  baseSeq: number | undefined;
  newSeq: number;
  createdAtMs: number;
}

export interface ReplayResult {
  /** Seconds the checkpoint's two fsyncs took. */
  fsyncSeconds: number;
  records: number;
  /** Records whose apply threw (they threw when first logged too; a restart skips them the same way). */
  skipped: number;
  stateBytes: number;
}

/** The namespace as of the start of log `newSeq`, rebuilt as start-up would rebuild it. */
export async function replayNamespace(job: ReplayJob): Promise<{ ns: Namespace; records: number; skipped: number }> {
  const ns = job.baseSeq === undefined ? new Namespace() : await readCheckpointState(job.dir, job.baseSeq);
  let records = 0;
  let skipped = 0;
  for (let seq = job.baseSeq ?? 1; seq < job.newSeq; seq++) {
    const path = join(job.dir, logFileName(seq));
    const scan = await scanLog(path, (r) => {
      records++;
      try {
        ns.apply(r as Op);
      } catch {
        skipped++;
      }
    });
    // A closed log was complete and fsynced before the next one was created: damage is not a torn write.
    if (!scan.ok) throw new GfsError('CORRUPT', `checkpoint: closed log ${path} is damaged (${scan.reason}); the checkpoint is not written`);
  }
  return { ns, records, skipped };
}

/** The namespace checkpoint <seq> holds, in either format. */
async function readCheckpointState(dir: string, seq: number): Promise<Namespace> {
  const path = join(dir, checkpointFileName(seq));
  const lines = await linesCheckpointHeader(path);
  if (lines instanceof Error || (lines !== undefined && lines.logSeq !== seq)) throw new GfsError('CORRUPT', `checkpoint: ${path} is not a whole checkpoint`);
  if (lines !== undefined) return loadLinesCheckpoint(path);
  const data = JSON.parse(await readFile(path, 'utf8')) as CheckpointFile;
  if (data?.complete !== true || data.logSeq !== seq) throw new GfsError('CORRUPT', `checkpoint: ${path} is not a whole checkpoint`);
  return Namespace.fromSnapshot(data.state as NamespaceSnapshot);
}

/** Runs in the worker: rebuild, then write out as lines straight from the rebuilt namespace (no copy of it, no one big text). */
export async function buildCheckpoint(job: ReplayJob): Promise<ReplayResult> {
  const { ns, records, skipped } = await replayNamespace(job);
  const { fsyncSeconds, bytes } = await writeCheckpointLines(join(job.dir, checkpointFileName(job.newSeq)), job.newSeq, job.createdAtMs, namespaceLines(ns));
  return { fsyncSeconds, records, skipped, stateBytes: bytes };
}

/** buildCheckpoint in a worker thread; rejects if the worker fails or exits without an answer. */
export function buildCheckpointInWorker(job: ReplayJob): Promise<ReplayResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: job });
    let answered = false;
    worker.once('message', (m: { ok: true; result: ReplayResult } | { ok: false; error: string }) => {
      answered = true;
      if (m.ok) resolve(m.result);
      else reject(new GfsError('UNAVAILABLE', `checkpoint: ${m.error}`));
    });
    worker.once('error', (e) => {
      answered = true;
      reject(e);
    });
    worker.once('exit', (code) => {
      if (!answered) reject(new GfsError('UNAVAILABLE', `checkpoint worker exited with code ${code} before answering`));
    });
  });
}
