import { Metrics } from '../shared/metrics.js';
import type { Master } from './master.js';

// The master's /metrics: request metrics and fsync latency (shared/metrics.ts)
// plus what the master already counts, read at scrape time. Everything that
// walks the namespace (chunk health) is computed once per scrape, not per series.

export function masterMetrics(): Metrics {
  return new Metrics('master', () => 'master');
}

/** Registers the master's own series once the master exists. */
export function registerMasterMetrics(m: Metrics, master: Master): void {
  let health: { atMs: number; value: ReturnType<Master['attention']>['counts'] } | undefined;
  // Series of one scrape are collected back to back: one namespace walk serves them all.
  const counts = () => {
    const nowMs = Date.now();
    if (!health || nowMs - health.atMs > 500) health = { atMs: nowMs, value: master.attention(0).counts };
    return health.value;
  };
  const c = master.counters;
  m.counterFrom('gfs_lease_grants_total', 'Primary leases granted (each bumps the chunk version)', () => c.leaseGrants);
  m.counterFrom('gfs_lease_extensions_total', 'Lease extensions granted on heartbeats and confirmations', () => c.leaseExtensions);
  m.countersFrom('gfs_lease_revocations_total', 'Leases taken back before they ran out, by reason', 'reason', () => ({ repair: c.leasesRevokedForRepair, snapshot: master.snapshots.counters.leasesRevoked }));
  m.counterFrom('gfs_chunk_allocations_total', 'Chunks allocated', () => c.allocations);
  m.countersFrom('gfs_clones_total', 'Re-replication and rebalancing clones, by outcome', 'result', () => ({ started: c.clonesStarted, done: c.clonesDone, failed: c.clonesFailed, record_failed: c.cloneRecordsFailed }));
  m.counterFrom('gfs_cloned_bytes_total', 'Bytes copied by finished clones', () => c.clonedBytes);
  m.counterFrom('gfs_rebalance_moves_total', 'Clones started to even out disk use', () => c.rebalanceMoves);
  m.countersFrom('gfs_replicas_deleted_total', 'Replicas ordered deleted, by reason', 'reason', () => ({ stale: c.staleReplicasDropped, orphan: c.orphansDeleted, excess: c.excessDeleted }));
  m.counterFrom('gfs_corrupt_reports_total', 'Replicas reported corrupt by chunkservers', () => c.corruptReported);
  m.counterFrom('gfs_snapshots_total', 'Snapshots taken', () => master.snapshots.counters.snapshots);
  m.counterFrom('gfs_copies_on_write_total', 'Shared chunks copied on their first mutation after a snapshot', () => master.snapshots.counters.copiesOnWrite);
  m.gaugeFrom('gfs_rereplication_queue_length', 'Chunks below their replication goal waiting for a clone (some live replica to copy from, none under way)', () => counts().queue);
  m.gaugeFrom('gfs_clones_in_flight', 'Clones under way', () => counts().cloning);
  m.gaugeFrom('gfs_chunks', 'Chunks by replication state', () => {
    const k = counts();
    return { healthy: k.healthy, under_replicated: k.underReplicated, over_replicated: k.overReplicated, missing: k.missing, corrupt: k.corrupt };
  }, 'state');
  m.gaugeFrom('gfs_files', 'Files in the namespace (trash included)', () => master.ns.fileCount);
  m.gaugeFrom('gfs_safe_mode', '1 while the master waits for chunkserver reports after a restart', () => (master.inSafeMode() ? 1 : 0));
  m.gaugeFrom('gfs_leases_active', 'Leases not yet run out', () => master.activeLeases(Number.MAX_SAFE_INTEGER).length);
  m.gaugeFrom('gfs_master_epoch', 'Epoch of this master (raised by every promotion of a shadow)', () => master.ns.epoch);
  m.gaugeFrom('gfs_master_is_shadow', '1 for a read-only shadow master', () => (master.role === 'shadow' ? 1 : 0));
  m.gaugeFrom('gfs_chunkservers', 'Chunkservers known, by liveness', () => {
    const nowMs = master.now();
    let alive = 0;
    for (const s of master.servers.servers.values()) if (master.servers.isAlive(s, nowMs)) alive++;
    return { alive, dead: master.servers.servers.size - alive };
  }, 'state');
  // One series per chunkserver: bounded by the cluster's size, like HDFS's per-datanode metrics.
  m.gaugeFrom('gfs_chunkserver_heartbeat_age_seconds', 'Time since each chunkserver was last heard from', () => {
    const nowMs = master.now();
    const out: Record<string, number> = {};
    for (const s of master.servers.servers.values()) out[s.id] = Math.max(0, nowMs - s.lastSeenMs) / 1000;
    return out;
  }, 'chunkserver');
  const disk = (f: 'capacityBytes' | 'usedBytes' | 'freeBytes') => () => {
    const nowMs = master.now();
    let sum = 0;
    for (const s of master.servers.servers.values()) if (master.servers.isAlive(s, nowMs)) sum += s[f];
    return sum;
  };
  m.gaugeFrom('gfs_cluster_capacity_bytes', 'Disk capacity of live chunkservers', disk('capacityBytes'));
  m.gaugeFrom('gfs_cluster_used_bytes', 'Bytes of replicas on live chunkservers', disk('usedBytes'));
  m.gaugeFrom('gfs_cluster_free_bytes', 'Free disk space on live chunkservers', disk('freeBytes'));
  const log = () => master.oplog.stats;
  m.gaugeFrom('gfs_oplog_bytes', 'Size of the current operation log file', () => log().logBytes);
  m.counterFrom('gfs_oplog_records_total', 'Records made durable in the operation log by this process', () => log().records);
  m.counterFrom('gfs_oplog_batches_total', 'Group-commit batches written (one fdatasync each)', () => log().batches);
  m.counterFrom('gfs_oplog_fsyncs_total', 'Every fsync/fdatasync of the operation log and checkpoints', () => log().fsyncs);
  m.gaugeFrom('gfs_oplog_no_space', '1 while the operation log refuses mutations because its disk is full (NO_SPACE)', () => (log().noSpace ? 1 : 0));
  m.counterFrom('gfs_oplog_no_space_refusals_total', 'Mutations refused with NO_SPACE because the operation log disk was full', () => log().noSpaceRefusals);
  m.gaugeFrom('gfs_oplog_last_checkpoint_timestamp_seconds', 'When the newest checkpoint was written (0: none yet)', () => (log().lastCheckpointAtMs ?? 0) / 1000);
}
