#!/usr/bin/env node
// master/ holds the master: namespace, chunk map, operation log and
// checkpoints, leases, placement, re-replication, garbage collection. This is
// its program, `gfs-master` (which `gfs master` runs as a child process).
// Files in master/ import shared/ only, never client/ or chunkserver/.
import { intArg, percentArg, sizeArg } from '../shared/cli-options.js';
import { daemonProgram, runDaemon } from '../shared/daemon.js';
import { startMaster } from './server.js';

const program = daemonProgram('gfs-master', 'run the master (or a shadow of one: --shadow-of); `gfs master promote` makes a shadow the master')
  .option('--config <file>', 'JSON file of settings: keys are these flags without dashes, e.g. {"port": 7070, "lease-ms": 60000}; flags and env variables win over it')
  .option('--dir <dir>', 'directory for the operation log and checkpoints (required)')
  .option('--port <port>', 'port to listen on', intArg('--port', 0, 65535), 7070)
  .option('--host <host>', 'address to bind (0.0.0.0: every interface)', '127.0.0.1')
  .option('--advertise <url>', 'URL other machines use to reach this master (default http://HOST:PORT, https:// with TLS; the machine name when HOST is 0.0.0.0)')
  .option('--chunk-size <bytes>', 'chunk size', sizeArg('--chunk-size'))
  .option('--lease-ms <ms>', 'primary lease duration', intArg('--lease-ms', 100))
  .option('--heartbeat-ms <ms>', 'chunkserver heartbeat interval', intArg('--heartbeat-ms', 50))
  .option('--dead-ms <ms>', 'silence after which a chunkserver is dead', intArg('--dead-ms', 100))
  .option('--safe-mode-ms <ms>', 'longest wait for chunkserver reports after a restart', intArg('--safe-mode-ms', 0))
  .option('--checkpoint-bytes <bytes>', 'operation log size that triggers a checkpoint', sizeArg('--checkpoint-bytes'))
  .option('--replication <n>', 'default replication factor', intArg('--replication', 1, 16))
  .option('--trash-grace-ms <ms>', 'how long deleted files stay undeletable (default 3 days)', intArg('--trash-grace-ms'))
  .option('--max-clones <n>', 'concurrent re-replication clones in the cluster', intArg('--max-clones', 1, 1024))
  .option('--clone-mbps <MBps>', 'bandwidth cap per clone in MB/s (0: none)', intArg('--clone-mbps'))
  .option('--rebalance-imbalance <n>', 'rebalance when the fullest chunkserver holds this many more replicas than the emptiest (default 4)', intArg('--rebalance-imbalance', 1))
  .option('--reserve <percent>', 'disk space every chunkserver keeps free, in percent of its capacity: below it a chunkserver takes no new chunks (default 5)', percentArg('--reserve'))
  .option('--max-requests <n>', 'requests handled at once; more get 503 (default 2048)', intArg('--max-requests', 1))
  .option('--log-replicas <urls>', 'shadow masters every log batch must reach (fsynced) before a mutation is acknowledged, comma-separated')
  .option('--allow-fewer-log-replicas', 'keep acknowledging mutations while a log replica is out of sync (fewer copies; shown in gfs status)')
  .option('--shadow-of <url>', 'run as a read-only shadow of this master: applies its shipped log, serves reads, until promoted');

runDaemon(program, async (o) => {
  const m = await startMaster({
    logReplicas: typeof o.logReplicas === 'string' ? o.logReplicas.split(',').map((u: string) => u.trim()).filter(Boolean) : undefined,
    allowFewerLogReplicas: o.allowFewerLogReplicas === true,
    shadowOf: o.shadowOf,
    dir: o.dir,
    port: o.port,
    host: o.host,
    advertiseUrl: o.advertise,
    chunkSizeBytes: o.chunkSize,
    leaseMs: o.leaseMs,
    heartbeatMs: o.heartbeatMs,
    deadMs: o.deadMs,
    safeModeMs: o.safeModeMs,
    checkpointLogBytes: o.checkpointBytes,
    defaultReplication: o.replication,
    trashGraceMs: o.trashGraceMs,
    maxClusterClones: o.maxClones,
    cloneBytesPerSec: o.cloneMbps !== undefined ? o.cloneMbps * 1e6 : undefined,
    rebalanceMinImbalance: o.rebalanceImbalance,
    reserveFraction: o.reserve,
    maxInFlight: o.maxRequests,
  });
  return { readyLine: `master ${m.url}`, close: () => m.close() };
});
