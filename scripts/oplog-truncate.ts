// Cuts the master's newest operation log at a byte offset, keeping a copy of what it cuts.
//
//   node dist/scripts/oplog-truncate.js --dir MASTER_DIR --at OFFSET [--backup FILE]
//
// For the case start-up refuses (master/oplog.ts): a damaged record in the middle of the newest
// log with good, acknowledged records behind it. Cutting there makes the master start without
// every record from OFFSET on: a decision for an operator, after trying a log replica or a backup.
// OFFSET must be the start of a record within the log's readable prefix (the offset the start-up
// error names is). The cut bytes go to FILE (default: next to the log, named after it and the
// offset) before the log is shortened, so the cut can be undone by appending them back.
// Stop the master first: it must not write the log meanwhile.
//
// Exit status 0 when cut; 1 with one line on stderr for bad arguments or when nothing was changed.

import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LOG_NAME_RE } from '../master/oplog-recovery.js';
import { errorMessage, goodFrameAfter, scanLog } from '../master/oplog-scan.js';

async function newestLog(dir: string): Promise<string> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw new Error(`cannot list --dir ${dir}: ${errorMessage(e)}`);
  }
  const logs = names.filter((n) => LOG_NAME_RE.test(n)).sort((a, b) => Number(LOG_NAME_RE.exec(a)![1]) - Number(LOG_NAME_RE.exec(b)![1]));
  if (logs.length === 0) throw new Error(`no operation log (oplog.NNNNNNNN.log) in ${dir}`);
  return join(dir, logs[logs.length - 1]!);
}

/** Copies [from, end) of the log to backup (a new file, made durable) and then cuts the log at from. */
async function cut(path: string, from: number, backup: string): Promise<number> {
  const log = await open(path, 'r+');
  try {
    const size = (await log.stat()).size;
    const bytes = Buffer.allocUnsafe(size - from);
    let filled = 0;
    while (filled < bytes.length) {
      const { bytesRead } = await log.read(bytes, filled, bytes.length - filled, from + filled);
      if (bytesRead === 0) throw new Error(`${path} shrank while being read`);
      filled += bytesRead;
    }
    let out;
    try {
      out = await open(backup, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (e) {
      throw new Error(`cannot create the backup ${backup}: ${errorMessage(e)}`);
    }
    try {
      await out.writeFile(bytes);
      await out.sync();
    } finally {
      await out.close();
    }
    await log.truncate(from);
    await log.sync();
    return bytes.length;
  } finally {
    await log.close();
  }
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({ options: { dir: { type: 'string' }, at: { type: 'string' }, backup: { type: 'string' } }, strict: true }));
  } catch (e) {
    throw new Error(errorMessage(e));
  }
  if (!values.dir || values.at === undefined) throw new Error('usage: oplog-truncate --dir MASTER_DIR --at OFFSET [--backup FILE]');
  if (!/^\d{1,15}$/.test(values.at)) throw new Error(`--at must be a byte offset (a non-negative integer), got ${values.at}`);
  const at = Number(values.at);
  const path = await newestLog(values.dir);

  const boundaries = new Set<number>([0]);
  const scan = await scanLog(path, (_r, end) => boundaries.add(end));
  if (at >= scan.totalBytes) throw new Error(`${path} is ${scan.totalBytes} bytes: nothing to cut at ${at}`);
  if (at > scan.goodBytes || !boundaries.has(at)) {
    throw new Error(`${at} is not the start of a readable record in ${path} (records start at 0 ... ${scan.goodBytes}${scan.ok ? '' : `; the first bad one is at ${scan.goodBytes}`})`);
  }
  const goodAfter = scan.ok ? 'yes' : await goodFrameAfter(path, scan.goodBytes);
  const backup = values.backup ?? `${path}.cut-at-${at}.${Date.now()}`;
  const cutBytes = await cut(path, at, backup);
  const lost = at < scan.goodBytes || goodAfter !== undefined ? 'including acknowledged records' : 'a torn tail only';
  process.stdout.write(`cut ${cutBytes} bytes (${lost}) off ${path} at offset ${at}; the cut bytes are in ${backup}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`oplog-truncate: ${errorMessage(e).replace(/\s*\n\s*/g, ' ')}\n`);
  process.exitCode = 1;
});
