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
} from '../shared/wire.js';
import { Master, type MasterOptions } from './master.js';

// The master's HTTP API. Every body and query is validated here, at the
// boundary; Master only ever sees well-typed input (paths are normalised
// inside Master by normalizePath, which refuses '..', NUL, empty segments).

export interface MasterServerOptions extends Partial<Omit<MasterOptions, 'log' | 'dir'>> {
  dir: string;
  port?: number;
  host?: string;
  log?: Logger;
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

export async function startMaster(o: MasterServerOptions): Promise<RunningMaster> {
  const log = o.log ?? makeLogger('master');
  setRpcSelf('master');
  loadFaultsFromEnv();
  const leaseMs = o.leaseMs ?? defaults.leaseMs;
  const heartbeatMs = o.heartbeatMs ?? defaults.heartbeatMs;
  const master = await Master.open({
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
  let url = '';
  const app = makeApp({ names: () => ['master', url], log });

  app.post('/api/mkdir', jsonRoute({ body: mkdirReq }, async ({ body }) => {
    await master.mkdir(body.path, body.parents ?? false);
    return { ok: true };
  }));
  app.post('/api/create', jsonRoute({ body: createReq }, ({ body }) => master.create(body.path, body.replication, body.exclusive ?? true)));
  app.post('/api/delete', jsonRoute({ body: deleteReq }, async ({ body }) => {
    await master.delete(body.path, body.recursive ?? false, body.now ?? false);
    return { ok: true };
  }));
  app.post('/api/undelete', jsonRoute({ body: undeleteReq }, async ({ body }) => {
    await master.undelete(body.path);
    return { ok: true };
  }));
  app.get('/api/trash', jsonRoute({}, () => ({ entries: master.trashList() })));
  app.get('/api/fsck', jsonRoute({ query: statQuery }, ({ query }) => master.fsck(query.path)));
  app.post('/api/rename', jsonRoute({ body: renameReq }, async ({ body }) => {
    await master.rename(body.src, body.dst);
    return { ok: true };
  }));
  app.get('/api/list', jsonRoute({ query: listQuery }, ({ query }) => ({ entries: master.list(query.path, query.recursive ?? false) })));
  app.get('/api/stat', jsonRoute({ query: statQuery }, ({ query }) => master.stat(query.path)));
  app.post('/api/chunks', jsonRoute({ body: chunksReq }, ({ body }) => master.chunks(body.path, body.startIndex, body.count)));
  app.post('/api/allocate', jsonRoute({ body: allocateReq }, ({ body }) => master.allocate(body.path, body.index)));
  app.post('/api/lease', jsonRoute({ body: leaseReq }, ({ body }) => master.lease(body.handle, body.path !== undefined && body.index !== undefined ? { path: body.path, index: body.index } : undefined)));
  app.post('/api/snapshot', jsonRoute({ body: snapshotReq }, async ({ body }) => {
    await master.snapshots.snapshot(body.src, body.dst);
    return { ok: true };
  }));
  app.get('/api/config', jsonRoute({}, () => ({ chunkSizeBytes: master.opts.chunkSizeBytes, leaseMs: master.opts.leaseMs, heartbeatMs: master.opts.heartbeatMs })));
  app.get('/api/status', jsonRoute({}, () => master.status()));
  app.get('/debug/leases', jsonRoute({}, () => ({ nowMs: Date.now(), grants: master.grantLog.list() })));
  app.post('/api/checkpoint', jsonRoute({}, async () => {
    await master.checkpointNow();
    return { ok: true };
  }));

  app.post('/api/cs/register', jsonRoute({ body: registerReq }, ({ body }) => master.register(body)));
  app.post('/api/cs/heartbeat', jsonRoute({ body: heartbeatReq }, ({ body }) => master.heartbeat(body)));
  app.post('/api/cs/lease-confirm', jsonRoute({ body: leaseConfirmReq }, ({ body }) => master.leaseConfirm(body.id, body.handle)));
  app.post('/api/cs/report-corrupt', jsonRoute({ body: reportCorruptReq }, ({ body }) => {
    master.reportCorrupt(body.id, body.handle);
    return { ok: true };
  }));
  finishApp(app, log);

  master.start();
  const { server, port } = await listen(app, o.port ?? defaults.masterPort, o.host ?? '127.0.0.1');
  url = `http://${o.host ?? '127.0.0.1'}:${port}`;
  log.info({ url }, 'master listening');
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
