import type { ChunkState } from './chunk-state.js';
import { initialChunkVersion, type Namespace } from './namespace.js';

// Safe mode: a master that recovered state waits for chunkserver reports
// before it places chunks, deletes replicas or heals. It leaves once every
// written chunk has been reported somewhere, or when the wait runs out.

export function safeModeOver(st: ChunkState, ns: Namespace, nowMs: number, untilMs: number): boolean {
  if (nowMs >= untilMs) return true;
  if (st.servers.alive(nowMs).length === 0) return false;
  for (const [h, meta] of ns.chunks) {
    // A chunk still at its initial version was never written (a lease bumps the version):
    // one allocated just before a crash may have no replica anywhere, and holds no data to wait for.
    if (meta.version === initialChunkVersion) continue;
    // A replica waiting for a bump a previous master left unconfirmed counts as reported.
    if (!st.servers.locations.has(h) && !st.unbumped.get(h)?.servers.size) return false;
  }
  return true;
}
