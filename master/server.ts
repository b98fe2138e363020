import type { Server } from 'node:http';
import { z } from 'zod';
import { monotonicClock } from '../shared/clock.js';
import { defaults } from '../shared/config.js';
import { loadFaultsFromEnv } from '../shared/fault.js';
import { boolString, finishApp, jsonRoute, listen, makeApp } from '../shared/http.js';
import { makeLogger, type Logger } from '../shared/log.js';
import { setRpcSelf } from '../shared/rpc.js';
import {
  allocateReq,
  chunksReq,
  createReq,
  deleteReq,
  heartbeatReq,
  leaseConfirmReq,
  leaseReq,
  mkdirReq,
  pathSchema,
  registerReq,
  renameReq,
  snapshotReq,
  undeleteReq,
  reportCorruptReq,
  logAppendReq,
  logInstallReq,
} from '../shared/wire.js';

const promoteReq = z.object({ force: z.boolean().optional() }).strict();
import { Master, type MasterOptions } from './master.js';
import { masterMetrics, registerMasterMetrics } from './metrics.js';
import { statusModel } from './status.js';
import { renderStatusPage } from './status-page.js';
import { advertisedUrl, checkAdvertiseUrl } from '../shared/address.js';

// The master's HTTP API. Every body and query is validated here, at the
// boundary; Master only ever sees well-typed input (paths are normalised
// inside Master by normalizePath, which refuses '..', NUL, empty segments).

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

const listQuery = z.object({ path: pathSchema, recursive: boolString.optional() }).strict();
const statQuery = z.object({ path: pathSchema }).strict();
const statusQuery = z.object({ path: pathSchema.optional() }).strict();
/** Endpoints without parameters still refuse unexpected ones. */
const noInput = { body: z.object({}).strict(), query: z.object({}).strict() };

export async function startMaster(o: MasterServerOptions): Promise<RunningMaster> {
  // Checked before anything starts: a bad address is a one-line error, not a half-started master.
  const advertise = o.advertiseUrl === undefined ? undefined : checkAdvertiseUrl(o.advertiseUrl);
  const log = o.log ?? makeLogger('master');
  setRpcSelf('master');
  loadFaultsFromEnv();
  const leaseMs = o.leaseMs ?? defaults.leaseMs;
  const heartbeatMs = o.heartbeatMs ?? defaults.heartbeatMs;
  let url = '';
  const metrics = masterMetrics();
  const master = await Master.open({
    onFsync: (kind, seconds) => metrics.observeFsync(kind, seconds),
    selfUrl: () => url,
    logReplicas: o.logReplicas,
    allowFewerLogReplicas: o.allowFewerLogReplicas,
    shadowOf: o.shadowOf,
    dir: o.dir,
    chunkSizeBytes: o.chunkSizeBytes ?? defaults.chunkSizeBytes,
    leaseMs,
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
    log,
    clock: o.clock ?? monotonicClock(),
  });
  registerMasterMetrics(metrics, master);
  const app = makeApp({
    names: () => ['master', url],
    log,
    metrics,
    // The status page and its JSON: readable with the web token (shared/webauth.ts), like /metrics.
    webPaths: ['/', '/status', '/status/data'],
    maxInFlight: o.maxInFlight,
    // Everything is small JSON but a chunkserver's report of every chunk it holds (~70 bytes a chunk).
    jsonLimits: { '/api/cs/register': 128 * 1024 * 1024, '/api/cs/heartbeat': 128 * 1024 * 1024, '/admin/faults': 1024 * 1024, '/api/log/append': 256 * 1024 * 1024, '/api/log/install': 1024 * 1024 * 1024 },
  });
  // Every answer says which master epoch and role gave it: clients and chunkservers fence off older epochs.
  app.use((req, res, next) => {
    res.setHeader('x-gfs-epoch', String(master.ns.epoch));
    res.setHeader('x-gfs-role', master.role);
    const lastContact = master.following?.lastContactAtMs;
    if (master.role === 'shadow' && lastContact !== undefined) res.setHeader('x-gfs-staleness-ms', String(Date.now() - lastContact));
    // A master that learned of a higher epoch answers nothing but its status (and keeps hearing chunkservers).
    if (master.fencedByEpoch !== undefined && req.path.startsWith('/api/') && req.path !== '/api/status' && !req.path.startsWith('/api/cs/')) {
      res.status(409).json({ error: `this master (epoch ${master.ns.epoch}) was superseded by a master of epoch ${master.fencedByEpoch}`, code: 'STALE_EPOCH' });
      return;
    }
    next();
  });

  app.post('/api/mkdir', jsonRoute({ body: mkdirReq }, async ({ body }) => {
    await master.files.mkdir(body.path, body.parents ?? false);
    return { ok: true };
  }));
  app.post('/api/create', jsonRoute({ body: createReq }, ({ body }) => master.files.create(body.path, body.replication, body.exclusive ?? true)));
  app.post('/api/delete', jsonRoute({ body: deleteReq }, async ({ body }) => {
    await master.files.delete(body.path, body.recursive ?? false, body.now ?? false);
    return { ok: true };
  }));
  app.post('/api/undelete', jsonRoute({ body: undeleteReq }, async ({ body }) => {
    await master.files.undelete(body.path);
    return { ok: true };
  }));
  app.get('/api/trash', jsonRoute(noInput, () => ({ entries: master.files.trashList() })));
  app.get('/api/fsck', jsonRoute({ query: statQuery }, ({ query }) => master.fsck(query.path)));
  app.post('/api/rename', jsonRoute({ body: renameReq }, async ({ body }) => {
    await master.files.rename(body.src, body.dst);
    return { ok: true };
  }));
  app.get('/api/list', jsonRoute({ query: listQuery }, ({ query }) => ({ entries: master.files.list(query.path, query.recursive ?? false) })));
  app.get('/api/stat', jsonRoute({ query: statQuery }, ({ query }) => master.files.stat(query.path)));
  app.post('/api/chunks', jsonRoute({ body: chunksReq }, ({ body }) => master.files.chunks(body.path, body.startIndex, body.count)));
  app.post('/api/allocate', jsonRoute({ body: allocateReq }, ({ body }) => master.files.allocate(body.path, body.index)));
  app.post('/api/lease', jsonRoute({ body: leaseReq }, ({ body }) => master.lease(body.handle, body.path !== undefined && body.index !== undefined ? { path: body.path, index: body.index } : undefined)));
  app.post('/api/snapshot', jsonRoute({ body: snapshotReq }, async ({ body }) => {
    await master.snapshots.snapshot(body.src, body.dst);
    return { ok: true };
  }));
  app.get('/api/config', jsonRoute(noInput, () => ({ chunkSizeBytes: master.opts.chunkSizeBytes, leaseMs: master.opts.leaseMs, heartbeatMs: master.opts.heartbeatMs })));
  app.get('/api/status', jsonRoute(noInput, () => master.status()));
  app.get('/', (_req, res) => res.redirect(303, '/status'));
  app.get('/status', jsonRoute({ query: statusQuery }, ({ query, res }) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.setHeader('cache-control', 'no-store');
    res.end(renderStatusPage(statusModel(master, url, query.path)));
  }));
  app.get('/status/data', jsonRoute({ query: statusQuery }, ({ query, res }) => {
    res.setHeader('cache-control', 'no-store');
    return statusModel(master, url, query.path);
  }));
  app.get('/debug/leases', jsonRoute(noInput, () => ({ nowMs: Date.now(), grants: master.grantLog.list() })));
  app.post('/api/checkpoint', jsonRoute(noInput, async () => {
    await master.checkpointNow();
    return { ok: true };
  }));

  app.post('/api/log/append', jsonRoute({ body: logAppendReq }, ({ body }) => master.acceptLog(body)));
  app.post('/api/log/install', jsonRoute({ body: logInstallReq }, ({ body }) => master.installState(body)));
  app.post('/api/promote', jsonRoute({ body: promoteReq }, ({ body }) => master.promote(body.force ?? false)));

  app.post('/api/cs/register', jsonRoute({ body: registerReq }, ({ body }) => master.register(body)));
  app.post('/api/cs/heartbeat', jsonRoute({ body: heartbeatReq }, ({ body }) => master.heartbeat(body)));
  app.post('/api/cs/lease-confirm', jsonRoute({ body: leaseConfirmReq }, ({ body }) => master.leaseConfirm(body.id, body.handle)));
  app.post('/api/cs/report-corrupt', jsonRoute({ body: reportCorruptReq }, ({ body }) => {
    master.reportCorrupt(body.id, body.handle);
    return { ok: true };
  }));
  finishApp(app, log);

  master.start();
  const host = o.host ?? '127.0.0.1';
  const { server, port, scheme } = await listen(app, o.port ?? defaults.masterPort, host);
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
