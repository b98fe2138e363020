import { GfsError } from '../shared/errors.js';
import { isUnder, normalizePath, trashDir } from '../shared/paths.js';
import type { MasterContext } from './context.js';
import type { Snapshots } from './snapshot.js';

// Shrinking a file, the master's half (issue 20). The chunks wholly past the
// new end leave the file in one logged 'truncate' record (their space is
// reclaimed like a deleted file's: replicas of a chunk no file refers to are
// orphans the heartbeats delete). Before it is logged, no lease on those
// chunks may be in force: an append or write acknowledged after the record
// would otherwise land in a chunk no file holds. The chunk that holds the new
// end is the client's half: it asks that chunk's primary to cut it on every
// replica (POST /chunk/truncate), in serial order with the chunk's other
// mutations (client/client.ts truncate).

export async function truncateFile(m: MasterContext, leases: Pick<Snapshots, 'withLeasesOut'>, rawPath: string, sizeBytes: number): Promise<void> {
  const path = normalizePath(rawPath);
  if (isUnder(path, trashDir)) throw new GfsError('INVALID_PATH', `${trashDir} is reserved`);
  // The node's own lock too when it has other names (hard links): they are other paths.
  const release = await m.locks.acquireWithInos([{ path, mode: 'w' }], () => m.ns.inosAt(path));
  try {
    // Validated before any wait: a bad request fails at once.
    const first = m.ns.checkTruncate(path, sizeBytes, m.opts.chunkSizeBytes, Date.now());
    const dropped = m.ns.getFile(path).chunks.slice(first.chunks);
    // The file cannot change meanwhile: its write lock is held.
    await leases.withLeasesOut(dropped, () => m.logOp(m.ns.checkTruncate(path, sizeBytes, m.opts.chunkSizeBytes, Date.now())));
  } finally {
    release();
  }
}
