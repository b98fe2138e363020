// Recovery of the master's operation log (master/oplog.ts) at start-up, and the files it is made
// of: which checkpoint and which logs count, replaying them, cutting a torn tail, and refusing to
// start (with what to do instead) when acknowledged records are damaged or missing.

import { open as openFile, mkdir, readdir, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataFile } from 'lowdb/node';
import { fsyncDir } from '../shared/atomic-file.js';
import { GfsError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { errorMessage, goodFrameAfter, scanLog } from './oplog-scan.js';
import { linesCheckpointHeader, linesFormat, type LinesCheckpointRef } from './oplog-lines.js';

const SEQ_DIGITS = 8;

export const LOG_NAME_RE = /^oplog\.(\d{8,})\.log$/;
export const CHECKPOINT_NAME_RE = /^checkpoint\.(\d{8,})\.json$/;

export interface Recovery {
  /** The `state` of the newest complete checkpoint (for format 2, a LinesCheckpointRef to read it from), or undefined if none. */
  checkpoint: unknown | undefined;
  /** Every record logged after that checkpoint, in log order. */
  records: unknown[];
  /** Bytes cut off the newest log's torn or corrupt tail (0 if it was clean). */
  droppedTailBytes: number;
}

export interface CheckpointFile {
  complete: true;
  logSeq: number;
  createdAtMs: number;
  state: unknown;
}

export function logFileName(seq: number): string {
  return `oplog.${String(seq).padStart(SEQ_DIGITS, '0')}.log`;
}

export function checkpointFileName(seq: number): string {
  return `checkpoint.${String(seq).padStart(SEQ_DIGITS, '0')}.json`;
}

// Compact on purpose: checkpoints can be large and are read by a machine.
function checkpointReader(path: string): DataFile<CheckpointFile> {
  return new DataFile<CheckpointFile>(path, { parse: JSON.parse, stringify: (d) => JSON.stringify(d) });
}

export interface Recovered {
  checkpoint: CheckpointFile | undefined;
  records: unknown[];
  droppedTailBytes: number;
  /** The newest log, open for appending, and where it ends. */
  fd: FileHandle;
  logSeq: number;
  logBytes: number;
  fsyncs: number;
}

/**
 * Opens or creates `dir` and recovers: the newest complete checkpoint plus every record of the
 * logs it does not cover, in order, and the newest log open for appending.
 */
export async function recoverDir(dir: string, log: Logger | undefined): Promise<Recovered> {
  let fsyncs = 0;

  const created = await mkdir(dir, { recursive: true });
  if (created !== undefined) {
    // The directory itself must survive a crash, or so would nothing in it.
    await fsyncDir(dirname(created));
    fsyncs++;
  }

  const names = await readdir(dir);
  const logSeqs: number[] = [];
  const checkpointSeqs: number[] = [];
  for (const name of names) {
    const l = LOG_NAME_RE.exec(name);
    if (l) logSeqs.push(Number(l[1]));
    const c = CHECKPOINT_NAME_RE.exec(name);
    if (c) checkpointSeqs.push(Number(c[1]));
  }
  logSeqs.sort((a, b) => a - b);
  checkpointSeqs.sort((a, b) => b - a);


  const checkpoint = await newestWholeCheckpoint(dir, checkpointSeqs, log);
  const baseSeq = checkpoint?.logSeq ?? 1;
  const replaySeqs = logSeqs.filter((s) => s >= baseSeq);
  checkLogSequence(dir, checkpoint, baseSeq, replaySeqs, checkpointSeqs);
  const replayed = await replayLogs(dir, replaySeqs, log);
  fsyncs += replayed.fsyncs;

  let fd: FileHandle;
  let logSeq: number;
  let logBytes: number;
  if (replaySeqs.length > 0) {
    logSeq = replaySeqs[replaySeqs.length - 1]!;
    fd = await openFile(join(dir, logFileName(logSeq)), 'r+');
    logBytes = (await fd.stat()).size;
  } else {
    logSeq = baseSeq;
    fd = await createDurableFile(join(dir, logFileName(logSeq)));
    fsyncs += 2;
    logBytes = 0;
  }
  return { checkpoint, records: replayed.records, droppedTailBytes: replayed.droppedTailBytes, fd, logSeq, logBytes, fsyncs };
}

/**
 * Newest checkpoint that is whole. A broken one is what a crash between lowdb's rename and our
 * fsync can leave; older logs are only deleted after the new checkpoint is durable, so falling
 * back to an older one is safe.
 */
async function newestWholeCheckpoint(dir: string, newestFirst: number[], log: Logger | undefined): Promise<CheckpointFile | undefined> {
  for (const seq of newestFirst) {
    const path = join(dir, checkpointFileName(seq));
    try {
      // Format 2 (master/oplog-lines.ts): checked whole here, read when the state is built.
      const lines = await linesCheckpointHeader(path);
      if (lines instanceof Error) {
        log?.warn({ path, err: lines.message }, 'oplog: ignoring incomplete checkpoint');
        continue;
      }
      if (lines !== undefined) {
        if (lines.logSeq === seq) return { complete: true, logSeq: seq, createdAtMs: lines.createdAtMs, state: { format: linesFormat, path } satisfies LinesCheckpointRef };
        log?.warn({ path }, 'oplog: ignoring a checkpoint whose header names another log');
        continue;
      }
      const data = await checkpointReader(path).read();
      if (data !== null && typeof data === 'object' && data.complete === true && data.logSeq === seq && 'state' in data && typeof data.createdAtMs === 'number') return data;
      log?.warn({ path }, 'oplog: ignoring incomplete checkpoint');
    } catch (e) {
      log?.warn({ path, err: errorMessage(e) }, 'oplog: ignoring unreadable checkpoint');
    }
  }
  return undefined;
}

/** Which logs to replay: refuses to start rather than silently come up without acknowledged mutations. */
function checkLogSequence(dir: string, checkpoint: CheckpointFile | undefined, baseSeq: number, replaySeqs: number[], checkpointSeqs: number[]): void {
  if (checkpoint === undefined && replaySeqs.length > 0 && replaySeqs[0] !== 1) {
    throw new GfsError(
      'CORRUPT',
      `oplog ${dir}: no complete checkpoint, but the oldest log is ${logFileName(replaySeqs[0]!)}: ` +
        `logs before it were deleted after a checkpoint that is now missing or broken (${checkpointSeqs.map(checkpointFileName).join(', ') || 'none found'}); refusing to start without them`,
    );
  }
  if (replaySeqs.length > 0 && replaySeqs[0] !== baseSeq) {
    throw new GfsError(
      'CORRUPT',
      `oplog ${dir}: ${checkpointFileName(baseSeq)} needs ${logFileName(baseSeq)}, but the oldest following log is ${logFileName(replaySeqs[0]!)}`,
    );
  }
  for (let i = 1; i < replaySeqs.length; i++) {
    if (replaySeqs[i] !== replaySeqs[i - 1]! + 1) {
      throw new GfsError(
        'CORRUPT',
        `oplog ${dir}: log files are not contiguous: ${logFileName(replaySeqs[i - 1]!)} is followed by ${logFileName(replaySeqs[i]!)}`,
      );
    }
  }
}

/** Every record of the given logs, in order; a torn tail of the newest is cut off. */
async function replayLogs(dir: string, seqs: number[], log: Logger | undefined): Promise<{ records: unknown[]; droppedTailBytes: number; fsyncs: number }> {
  const records: unknown[] = [];
  let droppedTailBytes = 0;
  let fsyncs = 0;
  for (let i = 0; i < seqs.length; i++) {
    const path = join(dir, logFileName(seqs[i]!));
    const newest = i === seqs.length - 1;
    // Collect per file so a bad older log cannot leave a partial array behind.
    const fileRecords: unknown[] = [];
    const scan = await scanLog(path, (r) => fileRecords.push(r));
    if (!scan.ok) {
      if (!newest) {
        // Older logs were complete and fsync'ed before the next one was
        // created, so damage here is not a torn write but lost acknowledged data.
        throw new GfsError('CORRUPT', `oplog ${path} is corrupt and is not the newest log (${scan.reason}); refusing to start`);
      }
      await refuseCorruptTail(dir, path, scan.goodBytes, scan.reason);
      // A torn tail is a batch whose fdatasync never returned, so none of
      // it was acknowledged: cut it off so new records follow good ones.
      droppedTailBytes = scan.totalBytes - scan.goodBytes;
      log?.warn({ path, reason: scan.reason, goodBytes: scan.goodBytes, droppedTailBytes }, 'oplog: dropping torn tail');
      const fh = await openFile(path, 'r+');
      try {
        await fh.truncate(scan.goodBytes);
        await fh.sync();
        fsyncs++;
      } finally {
        await fh.close();
      }
    }
    for (const r of fileRecords) records.push(r);
  }
  return { records, droppedTailBytes, fsyncs };
}

/** The tool that cuts a corrupt log (scripts/oplog-truncate.ts), as built next to this file. */
export const truncateToolPath = fileURLToPath(new URL('../scripts/oplog-truncate.js', import.meta.url));

/**
 * A bad frame in the newest log followed by good ones is not a torn write (a crash tears only the
 * end): the records behind it were acknowledged. Dropping them silently would lose mutations
 * clients were told are durable, so start-up stops and says where the damage is and how to cut
 * the log there, knowingly, if the operator decides to.
 */
async function refuseCorruptTail(dir: string, path: string, badOffset: number, reason: string): Promise<void> {
  const next = await goodFrameAfter(path, badOffset);
  if (next === undefined) return;
  const after = next === 'too-large' ? 'more bytes follow than a torn write leaves' : `a good record follows at byte offset ${next}`;
  throw new GfsError(
    'CORRUPT',
    `oplog ${path} is corrupt at byte offset ${badOffset} (${reason}) and ${after}: records after the damage were acknowledged, ` +
      `so the master will not start without them. Restore the directory from a log replica or backup, or, to start anyway and lose every record ` +
      `from offset ${badOffset} on, stop the master and run: node ${truncateToolPath} --dir ${dir} --at ${badOffset} (it keeps a copy of the cut bytes)`,
  );
}

/** Creates an empty file (failing if it exists) and makes it and its directory entry durable. */
export async function createDurableFile(path: string): Promise<FileHandle> {
  const fh = await openFile(path, 'wx+');
  try {
    await fh.sync();
    await fsyncDir(dirname(path));
  } catch (e) {
    // Leave no empty newer log behind (recovery would append to it), and
    // delete only what this call created: 'wx' guarantees that.
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw e;
  }
  return fh;
}
