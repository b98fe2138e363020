import type { Metrics } from '../shared/metrics.js';
import type { Heartbeater } from './heartbeat.js';
import type { LeaseTable } from './leases.js';
import type { Mutator } from './mutations.js';
import type { PushBuffer } from './push.js';
import type { ReplicaStore } from './store.js';

// A chunkserver's /metrics beyond request metrics and fsync latency
// (shared/metrics.ts): bytes moved, mutations, pushes, heartbeats, all read
// from the counters the chunkserver keeps anyway, at scrape time.

export interface ChunkserverMetricSources {
  store: ReplicaStore;
  push: PushBuffer;
  mutator: Mutator;
  leases: LeaseTable;
  beaters: () => Heartbeater[];
  reads: { served: number; refusedStale: number };
  bytes: { readServed: number; clonedIn: number };
}

export function registerChunkserverMetrics(m: Metrics, s: ChunkserverMetricSources): void {
  m.counterFrom('gfs_chunk_bytes_written_total', 'Bytes written into replica files: writes, record appends, applied mutations on secondaries, clones (padding excluded)', () => s.store.writtenBytes);
  m.counterFrom('gfs_chunk_bytes_read_total', 'Chunk data bytes served to readers (clients and clone targets)', () => s.bytes.readServed);
  m.counterFrom('gfs_push_bytes_received_total', 'Pushed data bytes received and kept for a mutation', () => s.push.receivedBytes);
  m.counterFrom('gfs_push_bytes_forwarded_total', 'Pushed data bytes streamed on to the next chunkserver of the chain', () => s.push.forwardedBytes);
  m.counterFrom('gfs_clone_bytes_received_total', 'Bytes copied in from other chunkservers by re-replication', () => s.bytes.clonedIn);
  m.counterFrom('gfs_pushes_refused_total', 'Pushes refused because the push buffer or the push count was at its bound', () => s.push.refused);
  m.gaugeFrom('gfs_push_buffer_bytes', 'Pushed bytes held (under way or waiting for their mutation)', () => s.push.usedBytes);
  m.gaugeFrom('gfs_pushes_active', 'Pushes being received now', () => s.push.active);
  m.countersFrom('gfs_mutations_total', 'Mutations applied to replicas, by kind (write and append as primary, apply as secondary, pad)', 'kind', () => {
    const c = s.mutator.counters;
    return { write: c.writes, append: c.appends, apply: c.applied, pad: c.pads };
  });
  m.counterFrom('gfs_mutation_duplicates_total', 'Retried mutations answered from the at-most-once cache', () => s.mutator.counters.duplicates);
  m.counterFrom('gfs_mutations_refused_no_lease_total', 'Mutations refused because this primary held no valid lease', () => s.mutator.counters.refusedNoLease);
  m.countersFrom('gfs_reads_total', 'Chunk reads, served or refused because this replica is older than the reader expects', 'result', () => ({ served: s.reads.served, stale_refused: s.reads.refusedStale }));
  m.gaugeFrom('gfs_chunks_held', 'Replicas held', () => s.store.count);
  m.gaugeFrom('gfs_chunk_disk_used_bytes', 'Bytes of replica data held', () => s.store.usedBytes());
  m.gaugeFrom('gfs_primary_leases_held', 'Chunks this server is primary of (lease not run out by its own clock)', () => s.leases.held().length);
  m.counterFrom('gfs_heartbeats_total', 'Heartbeats answered by a master', () => s.beaters().reduce((a, b) => a + b.counters.heartbeats, 0));
  m.counterFrom('gfs_heartbeat_failures_total', 'Heartbeats that failed', () => s.beaters().reduce((a, b) => a + b.counters.failures, 0));
  // One series per master this server reports to (the master and its shadows: a handful).
  m.gaugeFrom('gfs_heartbeat_age_seconds', 'Time since each master last answered a heartbeat (+Inf: never)', () => {
    const nowMs = Date.now();
    const out: Record<string, number> = {};
    for (const b of s.beaters()) out[b.masterUrl] = b.lastOkAtMs > 0 ? (nowMs - b.lastOkAtMs) / 1000 : Infinity;
    return out;
  }, 'master');
}
