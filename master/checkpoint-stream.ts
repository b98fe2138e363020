import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { GfsError } from '../shared/errors.js';
import { Namespace, type NamespaceSnapshot } from './core/namespace.js';
import { NamespaceLoader } from './core/namespace-lines.js';
import { checkpointIoBytes, isLinesRef } from './oplog-lines.js';

// Reading a format-2 checkpoint (master/oplog-lines.ts) into a namespace a
// line at a time: the parsed lines are never all in memory beside the
// namespace they become.

/** Reads a format-2 checkpoint line by line into a new namespace; the trailer's count must match. */
export async function loadLinesCheckpoint(path: string): Promise<Namespace> {
  const loader = new NamespaceLoader(new Namespace());
  const rl = createInterface({ input: createReadStream(path, { highWaterMark: checkpointIoBytes }), crlfDelay: Infinity });
  let lineNo = 0;
  let count = 0;
  let trailer: { complete?: unknown; lines?: unknown } | undefined;
  for await (const text of rl) {
    lineNo++;
    if (lineNo === 1) continue; // the header, checked by linesCheckpointHeader
    if (trailer !== undefined) throw new GfsError('CORRUPT', `checkpoint ${path}: lines after its trailer`);
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new GfsError('CORRUPT', `checkpoint ${path}: line ${lineNo} is not JSON`);
    }
    if (!Array.isArray(v)) {
      trailer = v as typeof trailer;
      continue;
    }
    loader.add(v);
    count++;
  }
  if (trailer?.complete !== true || trailer.lines !== count) throw new GfsError('CORRUPT', `checkpoint ${path}: ${count} entry lines, its trailer says ${String(trailer?.lines)}`);
  return loader.finish();
}

/** The namespace a recovered checkpoint state describes: a format-2 file read now, or a format-1 snapshot. */
export async function namespaceOf(state: unknown): Promise<Namespace> {
  return isLinesRef(state) ? loadLinesCheckpoint(state.path) : Namespace.fromSnapshot(state as NamespaceSnapshot);
}
