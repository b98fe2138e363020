import { GfsError } from '../shared/errors.js';
import { requestContext } from '../shared/log.js';
import { isUnder, normalizePath } from '../shared/paths.js';
import type { BatchOp, BatchResult } from '../shared/wire.js';
import type { Files } from './files.js';

// POST /api/batch: many namespace operations in one request, each answered on
// its own (one fails, the others stand). They are not a transaction: each is
// the same mutation its own route would make, logged as its own record. What a
// batch buys is the round trips and the fsyncs: operations on unrelated paths
// run at once, so the op log's group commit makes one fsync (and one shipment
// to the log replicas) of all of them. Operations on related paths (one path
// equal to or under another's) run in the order given, each after the earlier
// one settled, so `mkdir a` then `create a/f` in one batch behaves as two calls.
//
// Retries: a call that carries a request id gives operation i the id `rid/i`,
// so a resent batch skips exactly the operations its first attempt logged.

function pathsOf(op: BatchOp): string[] {
  return op.op === 'rename' ? [op.src, op.dst] : [op.path];
}

function related(a: string[], b: string[]): boolean {
  return a.some((x) => b.some((y) => isUnder(x, y) || isUnder(y, x)));
}

async function runOne(files: Files, op: BatchOp): Promise<BatchResult> {
  switch (op.op) {
    case 'mkdir':
      await files.mkdir(op.path, op.parents ?? false);
      return { ok: true };
    case 'create':
      return { ok: true, info: await files.create(op.path, op.replication, op.exclusive ?? true) };
    case 'delete':
      await files.delete(op.path, op.recursive ?? false, op.now ?? false);
      return { ok: true };
    case 'undelete':
      await files.undelete(op.path);
      return { ok: true };
    case 'rename':
      await files.rename(op.src, op.dst);
      return { ok: true };
    case 'stat':
      return { ok: true, info: await files.stat(op.path) };
  }
}

function failure(e: unknown): BatchResult {
  // Only refusals are per operation; anything else (a bug, an op log that failed) fails the whole call.
  if (e instanceof GfsError && e.status < 500) return { ok: false, error: e.message, code: e.code };
  if (e instanceof GfsError && (e.code === 'NO_SPACE' || e.code === 'UNAVAILABLE' || e.code === 'SAFE_MODE')) return { ok: false, error: e.message, code: e.code };
  throw e;
}

/** `checkWritable` runs first when any operation mutates: a shadow refuses the whole call, so the client moves on to the master. */
export async function runBatch(files: Files, ops: BatchOp[], checkWritable: () => void): Promise<BatchResult[]> {
  if (ops.some((op) => op.op !== 'stat')) checkWritable();
  const outer = requestContext.getStore();
  // Normalised once, for the ordering below; a path that does not normalise is refused by its own operation.
  const paths = ops.map((op) => {
    try {
      return pathsOf(op).map((p) => normalizePath(p));
    } catch {
      return [];
    }
  });
  const settled: Promise<unknown>[] = [];
  const results = ops.map((op, i) => {
    const before = paths.flatMap((p, j) => (j < i && related(p, paths[i]!) ? [settled[j]!] : []));
    const run = async (): Promise<BatchResult> => {
      await Promise.all(before);
      return runOne(files, op).catch(failure);
    };
    const p = outer ? requestContext.run({ rid: `${outer.rid}/${i}`, mutations: 0 }, run) : run();
    settled.push(p.catch(() => undefined));
    return p;
  });
  return Promise.all(results);
}
