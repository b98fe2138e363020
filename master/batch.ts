import { GfsError } from '../shared/errors.js';
import { requestContext } from '../shared/log.js';
import { ancestorsOf, normalizePath } from '../shared/paths.js';
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

async function runOne(files: Files, op: BatchOp): Promise<BatchResult> {
  switch (op.op) {
    case 'mkdir':
      await files.mkdir(op.path, op.parents ?? false, op);
      return { ok: true };
    case 'create':
      return { ok: true, info: await files.create(op.path, op.replication, op.exclusive ?? true, op) };
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
  // Per path, the operations of this batch exactly at it and anywhere under it (itself included), as
  // they settle: an operation waits for those at its paths or their ancestors, and those under its
  // paths. Found through the maps in O(depth) per path, where comparing every pair costs O(n²).
  const at = new Map<string, Promise<unknown>[]>();
  const under = new Map<string, Promise<unknown>[]>();
  const add = (m: Map<string, Promise<unknown>[]>, k: string, p: Promise<unknown>) => {
    const list = m.get(k);
    if (list) list.push(p);
    else m.set(k, [p]);
  };
  const results = ops.map((op, i) => {
    let paths: string[];
    try {
      paths = pathsOf(op).map((p) => normalizePath(p));
    } catch {
      paths = []; // refused by its own operation
    }
    const before = paths.flatMap((p) => [...[...ancestorsOf(p), p].flatMap((a) => at.get(a) ?? []), ...(under.get(p) ?? [])]);
    const run = async (): Promise<BatchResult> => {
      if (before.length > 0) await Promise.all(before);
      return runOne(files, op).catch(failure);
    };
    const p = outer ? requestContext.run({ rid: `${outer.rid}/${i}`, mutations: 0 }, run) : run();
    const settled = p.catch(() => undefined);
    for (const path of paths) {
      add(at, path, settled);
      for (const a of [...ancestorsOf(path), path]) add(under, a, settled);
    }
    return p;
  });
  return Promise.all(results);
}
