// The files of an op log checkpoint (master/oplog.ts runs the protocol: pause, serialise, switch to a
// new log, then these): writing checkpoint.<seq>.json durably, and deleting the logs and checkpoints
// it makes redundant. Apart from the writer because neither step touches the log being appended:
// appends run beside them.

import { open as openFile, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TextFile } from 'lowdb/node';
import type { Logger } from '../shared/log.js';
import { fsyncDir } from '../shared/atomic-file.js';
import { checkpointFileName, CHECKPOINT_NAME_RE, LOG_NAME_RE } from './oplog-recovery.js';
import { isEnoent } from './oplog-refusals.js';
import { errorMessage } from './oplog-scan.js';

/** The checkpoint document around an already-serialised state (same shape as CheckpointFile). */
function checkpointText(logSeq: number, createdAtMs: number, stateJson: string): string {
  return `{"complete":true,"logSeq":${logSeq},"createdAtMs":${createdAtMs},"state":${stateJson}}`;
}

/**
 * Writes checkpoint.<logSeq>.json and makes it durable (the file, then the directory). Returns how
 * long the fsyncs took, in seconds; it issues two. lowdb writes a temp file and renames it, but does
 * not fsync: done here.
 */
export async function writeCheckpointFile(dir: string, logSeq: number, createdAtMs: number, stateJson: string): Promise<number> {
  const path = join(dir, checkpointFileName(logSeq));
  try {
    await new TextFile(path).write(checkpointText(logSeq, createdAtMs, stateJson));
  } catch (e) {
    // On a full disk a half-written temp file would keep the space the log needs. Its name is
    // lowdb's (steno's): .<name>.tmp beside the file.
    await unlink(join(dir, `.${checkpointFileName(logSeq)}.tmp`)).catch(() => undefined);
    throw e;
  }
  const fh = await openFile(path, 'r');
  const syncStart = process.hrtime.bigint();
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsyncDir(dir);
  return Number(process.hrtime.bigint() - syncStart) / 1e9;
}

/**
 * Deletes every log and checkpoint numbered below `seq` (all redundant once checkpoint <seq> is
 * durable). Failures are logged, not thrown: recovery ignores files older than the newest
 * checkpoint. Returns the number of fsyncs issued (0 or 1).
 */
export async function deleteFilesBefore(dir: string, seq: number, logger: Logger | undefined): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    logger?.warn({ err: errorMessage(e) }, 'oplog: listing for cleanup failed');
    return 0;
  }
  let deleted = 0;
  for (const name of names) {
    const m = LOG_NAME_RE.exec(name) ?? CHECKPOINT_NAME_RE.exec(name);
    if (!m || Number(m[1]) >= seq) continue;
    try {
      await unlink(join(dir, name));
      deleted++;
    } catch (e) {
      // Harmless to keep: recovery ignores files older than the newest checkpoint.
      if (!isEnoent(e)) logger?.warn({ name, err: errorMessage(e) }, 'oplog: deleting old file failed');
    }
  }
  if (deleted === 0) return 0;
  try {
    await fsyncDir(dir);
    return 1;
  } catch (e) {
    logger?.warn({ err: errorMessage(e) }, 'oplog: fsync of directory after cleanup failed');
    return 0;
  }
}
