import { GfsError } from '../shared/errors.js';
import { rpcJson, rpcStream } from '../shared/rpc.js';
import type { ChunkInfoAnswer } from '../shared/wire.js';
import type { ReplicaStore } from './store.js';

// Re-replication, target side: copy a chunk from a live replica. The new
// replica is filled at version 0 (below every real version, so if this
// server dies half-way the leftover is stale and gets deleted), verified
// against its checksums, synced, and only then given the real version.

const clonePieceBytes = 4 * 1024 * 1024;

export interface CloneRequest {
  handle: string;
  version: number;
  sourceUrl: string;
  sourceId: string;
  /** Bandwidth cap (bytes/s), 0 or absent for none. */
  bytesPerSec?: number;
}

export async function cloneChunk(store: ReplicaStore, req: CloneRequest): Promise<{ sizeBytes: number }> {
  const existing = store.info(req.handle);
  if (existing && existing.version >= req.version) {
    // Counted as the new replica only if it passes its checksums (the master may not know it is damaged;
    // verify() reports it if not, and the master has it deleted).
    if (!(await store.verify(req.handle))) throw new GfsError('CORRUPT', `the replica of ${req.handle} already here is corrupt`);
    return { sizeBytes: existing.sizeBytes };
  }
  if (existing) await store.delete(req.handle); // stale: replaced by the clone
  const info = await rpcJson<ChunkInfoAnswer>(req.sourceUrl, '/chunk/info', undefined, { query: { handle: req.handle }, targetName: req.sourceId });
  if (info.version !== req.version) throw new GfsError('STALE_VERSION', `source holds version ${info.version}, clone wants ${req.version}`);
  await store.create(req.handle, 0);
  const startMs = Date.now();
  let done = 0;
  try {
    while (done < info.sizeBytes) {
      const len = Math.min(clonePieceBytes, info.sizeBytes - done);
      const res = await rpcStream(req.sourceUrl, '/chunk/read', undefined, { query: { handle: req.handle, offset: done, length: len, version: req.version }, targetName: req.sourceId });
      const parts: Buffer[] = [];
      let got = 0;
      for await (const c of res.body) {
        parts.push(c as Buffer);
        got += (c as Buffer).length;
      }
      if (got !== len) throw new GfsError('TRUNCATED', `clone source sent ${got} of ${len} bytes`);
      await store.write(req.handle, done, Buffer.concat(parts, got));
      done += got;
      if (req.bytesPerSec && req.bytesPerSec > 0) {
        // Stay under the cap: wait until the elapsed time matches the bytes moved.
        const aheadMs = (done / req.bytesPerSec) * 1000 - (Date.now() - startMs);
        if (aheadMs > 0) await new Promise((r) => setTimeout(r, aheadMs));
      }
    }
    if (!(await store.verify(req.handle))) throw new GfsError('CORRUPT', `clone of ${req.handle} failed verification`);
    await store.sync(req.handle);
    await store.setVersion(req.handle, req.version);
    return { sizeBytes: done };
  } catch (e) {
    await store.delete(req.handle).catch(() => undefined);
    throw e;
  }
}
