import type { Server } from 'node:http';
import { advertisedUrl, checkAdvertiseUrl } from '../shared/address.js';
import { monotonicClock } from '../shared/clock.js';
import { defaults } from '../shared/config.js';
import { loadFaultsFromEnv } from '../shared/fault.js';
import { GfsError } from '../shared/errors.js';
import { addGuard, finishApp, listen, makeApp } from '../shared/http.js';
import { LeanRouter } from '../shared/lean-router.js';
import { makeLogger, type Logger } from '../shared/log.js';
import { setRpcSelf } from '../shared/rpc.js';
import { Master, type MasterOptions } from './master.js';
import { masterMetrics, registerMasterMetrics } from './metrics.js';
import { chunkserverRoutes, namespaceRoutes, operatorRoutes, replicaRoutes } from './routes.js';

// The master's HTTP server: opens the Master (master.ts), mounts the routes
// (routes.ts) on the shared HTTP conventions (shared/http.ts), listens.

export interface MasterServerOptions extends Partial<Omit<MasterOptions, 'log' | 'dir'>> {
  dir: string;
  port?: number;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** The URL others use to reach this master (default http://HOST:PORT; this machine's name when HOST is a wildcard). */
  advertiseUrl?: string;
  log?: Logger;
  /** Requests handled at once; beyond it 503. */
  maxInFlight?: number;
}

export interface RunningMaster {
  master: Master;
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** The Master's options: what the server was given, defaults for the rest. */
function masterOptions(o: MasterServerOptions, log: Logger): MasterOptions {
  const heartbeatMs = o.heartbeatMs ?? defaults.heartbeatMs;
  return {
    logReplicas: o.logReplicas,
    allowFewerLogReplicas: o.allowFewerLogReplicas,
    shadowOf: o.shadowOf,
    dir: o.dir,
    chunkSizeBytes: o.chunkSizeBytes ?? defaults.chunkSizeBytes,
    leaseMs: o.leaseMs ?? defaults.leaseMs,
    heartbeatMs,
    deadMs: o.deadMs ?? Math.max(defaults.chunkserverDeadMs, heartbeatMs * 5),
    safeModeMs: o.safeModeMs ?? defaults.safeModeMs,
    checkpointLogBytes: o.checkpointLogBytes ?? defaults.checkpointLogBytes,
    defaultReplication: o.defaultReplication ?? defaults.replication,
    trashGraceMs: o.trashGraceMs ?? defaults.trashGraceMs,
    maxClusterClones: o.maxClusterClones ?? 8,
    maxPerServerClones: o.maxPerServerClones ?? 2,
    cloneBytesPerSec: o.cloneBytesPerSec ?? 0,
    rebalanceMinImbalance: o.rebalanceMinImbalance ?? 4,
    reserveFraction: o.reserveFraction,
    log,
    clock: o.clock ?? monotonicClock(),
  };
}

/** The path of a request target, as express routes it (an absolute-form target too). */
function pathOf(url: string | undefined): string {
  const u = url ?? '';
  if (!u.startsWith('/')) {
    try {
      return new URL(u, 'http://localhost').pathname;
    } catch {
      return u;
    }
  }
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q);
}

export async function startMaster(o: MasterServerOptions): Promise<RunningMaster> {
  // Checked before anything starts: a bad address is a one-line error, not a half-started master.
  const advertise = o.advertiseUrl === undefined ? undefined : checkAdvertiseUrl(o.advertiseUrl);
  const log = o.log ?? makeLogger('master');
  setRpcSelf('master');
  loadFaultsFromEnv();
  let url = '';
  const metrics = masterMetrics();
  const master = await Master.open({ ...masterOptions(o, log), onFsync: (kind, seconds) => metrics.observeFsync(kind, seconds), selfUrl: () => url });
  registerMasterMetrics(metrics, master);
  const app = makeApp({
    names: () => ['master', url],
    log,
    metrics,
    // The status page and its JSON: readable with the web token (shared/webauth.ts), like /metrics.
    webPaths: ['/', '/status', '/status/data'],
    maxInFlight: o.maxInFlight,
    // Everything is small JSON but a chunkserver's report of every chunk it holds (~70 bytes a chunk).
    jsonLimits: { '/api/batch': 16 * 1024 * 1024, '/api/cs/register': 128 * 1024 * 1024, '/api/cs/heartbeat': 128 * 1024 * 1024, '/admin/faults': 1024 * 1024, '/api/log/append': 256 * 1024 * 1024, '/api/log/install': 1024 * 1024 * 1024 },
  });
  // Every answer says which master epoch and role gave it: clients and chunkservers fence off older epochs.
  // A guard (shared/http.ts): the lean router of the hot routes runs it too.
  addGuard(app, (req, res) => {
    res.setHeader('x-gfs-epoch', String(master.ns.epoch));
    res.setHeader('x-gfs-role', master.role);
    const lastContact = master.following?.lastContactAtMs;
    if (master.role === 'shadow' && lastContact !== undefined) res.setHeader('x-gfs-staleness-ms', String(Date.now() - lastContact));
    // A master that learned of a higher epoch answers nothing but its status (and keeps hearing chunkservers).
    const path = pathOf(req.url);
    if (master.fencedByEpoch !== undefined && path.startsWith('/api/') && path !== '/api/status' && !path.startsWith('/api/cs/'))
      throw new GfsError('STALE_EPOCH', `this master (epoch ${master.ns.epoch}) was superseded by a master of epoch ${master.fencedByEpoch}`);
  });

  const lean = new LeanRouter(app);
  namespaceRoutes(app, lean, master);
  operatorRoutes(app, master, () => url);
  replicaRoutes(app, master);
  chunkserverRoutes(app, master);
  finishApp(app, log);

  master.start();
  const host = o.host ?? '127.0.0.1';
  const { server, port, scheme } = await listen(app, o.port ?? defaults.masterPort, host, lean);
  url = advertisedUrl(host, port, advertise, log, scheme);
  log.info({ url, bind: `${host}:${port}` }, 'master listening');
  return {
    master,
    server,
    port,
    url,
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await master.close();
    },
  };
}
