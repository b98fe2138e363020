import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fsyncDir } from '../shared/atomic-file.js';
import { pwriteFull } from '../shared/file-io.js';

// Op log checkpoints as a stream of lines (format 2), so a big state is
// never one JSON text in memory: the checkpoint worker writes its namespace
// out a megabyte at a time (master/core/namespace-lines.ts makes the lines),
// and a restarting master reads it back a line at a time
// (master/checkpoint-stream.ts). Lines are opaque here, as records are to
// the log.
//
//   {"format":2,"logSeq":N,"createdAtMs":T}      header
//   [kind, ...]                                   one line per entry
//   {"complete":true,"lines":K}                   trailer: K entry lines before it
//
// Written to a temp file, fsynced, renamed, the directory fsynced: a
// checkpoint without its trailer was never renamed into place, and one whose
// line count disagrees is damaged. Format 1 (one JSON document, written by
// master/oplog-checkpoint.ts when the op log is handed a state to write: a
// shadow's install) is still read; recovery tells them apart by the header.

export const linesFormat = 2;
/** Lines gathered before each write, and the read-ahead of a reader. */
export const checkpointIoBytes = 1 << 20;

/** What recovery hands on for a format-2 checkpoint: its path, read when the namespace is built. */
export interface LinesCheckpointRef {
  format: 2;
  path: string;
}

export function isLinesRef(state: unknown): state is LinesCheckpointRef {
  return typeof state === 'object' && state !== null && (state as { format?: unknown }).format === linesFormat && typeof (state as { path?: unknown }).path === 'string';
}

/**
 * Writes the checkpoint file at `path` (checkpoint.<logSeq>.json) from `lines` (JSON texts, no newlines) durably. Returns the
 * seconds its two fsyncs took and the bytes written.
 */
export async function writeCheckpointLines(path: string, logSeq: number, createdAtMs: number, lines: Iterable<string>): Promise<{ fsyncSeconds: number; bytes: number }> {
  const dir = dirname(path);
  // The temp name lowdb used for format 1: a leftover is found by the same cleanup.
  const tmp = join(dir, `.${basename(path)}.tmp`);
  const fh = await open(tmp, 'w');
  let bytes = 0;
  let count = 0;
  let parts: string[] = [];
  let partBytes = 0;
  const flush = async () => {
    const buf = Buffer.from(parts.join(''));
    parts = [];
    partBytes = 0;
    await pwriteFull(fh, buf, bytes);
    bytes += buf.length;
  };
  let fsyncSeconds = 0;
  try {
    parts.push(JSON.stringify({ format: linesFormat, logSeq, createdAtMs }) + '\n');
    for (const line of lines) {
      parts.push(line, '\n');
      partBytes += line.length + 1;
      count++;
      if (partBytes >= checkpointIoBytes) await flush();
    }
    parts.push(JSON.stringify({ complete: true, lines: count }) + '\n');
    await flush();
    const t0 = process.hrtime.bigint();
    await fh.sync();
    fsyncSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
    await fh.close();
  } catch (e) {
    await fh.close().catch(() => undefined);
    // On a full disk a half-written temp file would keep the space the log needs.
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await rename(tmp, path);
  const t1 = process.hrtime.bigint();
  await fsyncDir(dir);
  fsyncSeconds += Number(process.hrtime.bigint() - t1) / 1e9;
  return { fsyncSeconds, bytes };
}

/** The first bytes of a checkpoint file: format 2 starts with its header, format 1 with `{"complete"`. */
async function head(path: string, bytes: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** The last line of a file (up to 4 KiB of it). */
async function lastLine(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const n = Math.min(size, 4096);
    const buf = Buffer.alloc(n);
    await fh.read(buf, 0, n, size - n);
    const text = buf.toString('utf8').replace(/\n$/, '');
    return text.slice(text.lastIndexOf('\n') + 1);
  } finally {
    await fh.close();
  }
}

/**
 * For recovery: undefined when the file is not format 2; else its header when the file is whole
 * (header and trailer in place), or an Error saying what is wrong.
 */
export async function linesCheckpointHeader(path: string): Promise<{ logSeq: number; createdAtMs: number } | Error | undefined> {
  const first = await head(path, 256);
  if (!first.startsWith('{"format":')) return undefined;
  try {
    const h = JSON.parse(first.slice(0, first.indexOf('\n'))) as { format?: unknown; logSeq?: unknown; createdAtMs?: unknown };
    if (h.format !== linesFormat || typeof h.logSeq !== 'number' || typeof h.createdAtMs !== 'number') return new Error(`unknown checkpoint header ${first.slice(0, 80)}`);
    const t = JSON.parse(await lastLine(path)) as { complete?: unknown; lines?: unknown };
    if (t.complete !== true || typeof t.lines !== 'number') return new Error('no trailer: the checkpoint was not written whole');
    return { logSeq: h.logSeq, createdAtMs: h.createdAtMs };
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}
