import type { Express } from 'express';
import { z } from 'zod';
import { admissionOf, boolString, jsonRoute } from '../shared/http.js';
import type { LeanRouter } from '../shared/lean-router.js';
import {
  allocateReq,
  batchReq,
  chunksReq,
  createReq,
  deleteReq,
  heartbeatReq,
  leaseConfirmReq,
  leaseReq,
  logAppendReq,
  logInstallReq,
  mkdirReq,
  pathSchema,
  registerReq,
  renameReq,
  linkReq,
  reportCorruptReq,
  setattrReq,
  snapshotReq,
  truncateReq,
  symlinkReq,
  mknodReq,
  undeleteReq,
} from '../shared/wire.js';
import { runBatch } from './batch.js';
import { truncateFile } from './truncate.js';
import type { Master } from './master.js';
import { statusModel } from './status.js';
import { renderStatusPage } from './status-page.js';

// The master's HTTP API, by caller. Every body and query is validated here, at
// the boundary (zod); Master only ever sees well-typed input (paths are
// normalised inside by normalizePath, which refuses '..', NUL, empty segments).

const promoteReq = z.object({ force: z.boolean().optional() }).strict();
const listQuery = z.object({ path: pathSchema, recursive: boolString.optional() }).strict();
const statQuery = z.object({ path: pathSchema }).strict();
const statusQuery = z.object({ path: pathSchema.optional() }).strict();
/** Endpoints without parameters still refuse unexpected ones. */
const noInput = { body: z.object({}).strict(), query: z.object({}).strict() };


/**
 * What clients call: the namespace, chunks and leases, snapshots. The calls made per file or per
 * chunk are the hot routes, served by the lean router (shared/lean-router.ts, mounted on the app too).
 */
export function namespaceRoutes(app: Express, lean: LeanRouter, master: Master): void {
  lean.json('POST', '/api/mkdir', { body: mkdirReq }, async ({ body }) => {
    await master.files.mkdir(body.path, body.parents ?? false, body);
    return { ok: true };
  });
  lean.json('POST', '/api/create', { body: createReq }, ({ body }) => master.files.create(body.path, body.replication, body.exclusive ?? true, body));
  lean.json('POST', '/api/setattr', { body: setattrReq }, async ({ body }) => {
    await master.files.setattr(body.path, body);
    return { ok: true };
  });
  lean.json('POST', '/api/symlink', { body: symlinkReq }, async ({ body }) => {
    await master.files.symlink(body.path, body.target, body);
    return { ok: true };
  });
  app.post('/api/mknod', jsonRoute({ body: mknodReq }, async ({ body }) => {
    await master.files.mknod(body.path, body.type, body.rdev ?? 0, body);
    return { ok: true };
  }));
  lean.json('POST', '/api/delete', { body: deleteReq }, async ({ body }) => {
    await master.files.delete(body.path, body.recursive ?? false, body.now ?? false);
    return { ok: true };
  });
  app.post('/api/undelete', jsonRoute({ body: undeleteReq }, async ({ body }) => {
    await master.files.undelete(body.path);
    return { ok: true };
  }));
  app.get('/api/trash', jsonRoute(noInput, () => ({ entries: master.files.trashList() })));
  app.get('/api/fsck', jsonRoute({ query: statQuery }, ({ query }) => master.fsck(query.path)));
  lean.json('POST', '/api/link', { body: linkReq }, async ({ body }) => {
    await master.files.link(body.src, body.dst);
    return { ok: true };
  });
  lean.json('POST', '/api/rename', { body: renameReq }, async ({ body }) => {
    await master.files.rename(body.src, body.dst);
    return { ok: true };
  });
  lean.json('GET', '/api/list', { query: listQuery }, ({ query }) => ({ entries: master.files.list(query.path, query.recursive ?? false) }));
  lean.json('GET', '/api/stat', { query: statQuery }, ({ query }) => master.files.stat(query.path));
  lean.json('POST', '/api/chunks', { body: chunksReq }, ({ body }) => master.files.chunks(body.path, body.startIndex, body.count));
  lean.json('POST', '/api/allocate', { body: allocateReq }, ({ body }) => master.files.allocate(body.path, body.index, body.exclude));
  lean.json('POST', '/api/lease', { body: leaseReq }, ({ body }) => master.lease(body.handle, body.path !== undefined && body.index !== undefined ? { path: body.path, index: body.index } : undefined));
  lean.json('POST', '/api/batch', { body: batchReq }, async ({ body }) => ({ results: await runBatch(master.files, body.ops, () => master.checkWritable()) }));
  app.post('/api/truncate', jsonRoute({ body: truncateReq }, async ({ body }) => {
    await truncateFile(master, master.snapshots, body.path, body.sizeBytes);
    return { ok: true };
  }));
  app.post('/api/snapshot', jsonRoute({ body: snapshotReq }, async ({ body }) => {
    await master.snapshots.snapshot(body.src, body.dst);
    return { ok: true };
  }));
}

/** Operators: configuration, status (JSON and the page), lease debugging, checkpoints. */
export function operatorRoutes(app: Express, master: Master, url: () => string): void {
  app.get('/api/config', jsonRoute(noInput, () => ({ chunkSizeBytes: master.opts.chunkSizeBytes, leaseMs: master.opts.leaseMs, heartbeatMs: master.opts.heartbeatMs })));
  app.get('/api/status', jsonRoute(noInput, () => master.status()));
  app.get('/', (_req, res) => res.redirect(303, '/status'));
  app.get('/status', jsonRoute({ query: statusQuery }, ({ query, res }) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.setHeader('cache-control', 'no-store');
    res.end(renderStatusPage(statusModel(master, url(), query.path)));
  }));
  app.get('/status/data', jsonRoute({ query: statusQuery }, ({ query, res }) => {
    res.setHeader('cache-control', 'no-store');
    return statusModel(master, url(), query.path);
  }));
  app.get('/debug/leases', jsonRoute(noInput, () => ({ nowMs: Date.now(), grants: master.grantLog.list() })));
  app.post('/api/checkpoint', jsonRoute(noInput, async () => {
    await master.checkpointNow();
    return { ok: true };
  }));

}

/** Log replicas and failover: a master ships its log to shadows; a shadow is promoted. */
export function replicaRoutes(app: Express, master: Master): void {
  app.post('/api/log/append', jsonRoute({ body: logAppendReq }, ({ body }) => master.acceptLog(body)));
  app.post('/api/log/install', jsonRoute({ body: logInstallReq }, ({ body }) => master.installState(body)));
  app.post('/api/promote', jsonRoute({ body: promoteReq }, ({ body }) => master.promote(body.force ?? false)));

}

/** What chunkservers call: registration, heartbeats, lease confirmation, corruption reports. */
export function chunkserverRoutes(app: Express, master: Master): void {
  app.post('/api/cs/register', jsonRoute({ body: registerReq }, ({ body, req }) => {
    // A registered chunkserver's address is a known peer: exempt from the per-address connection cap.
    if (req.socket.remoteAddress) admissionOf(app).allowPeer(req.socket.remoteAddress);
    return master.register(body);
  }));
  app.post('/api/cs/heartbeat', jsonRoute({ body: heartbeatReq }, ({ body }) => master.heartbeat(body)));
  app.post('/api/cs/lease-confirm', jsonRoute({ body: leaseConfirmReq }, ({ body }) => master.leaseConfirm(body.id, body.handle)));
  app.post('/api/cs/report-corrupt', jsonRoute({ body: reportCorruptReq }, ({ body }) => {
    master.reportCorrupt(body.id, body.handle);
    return { ok: true };
  }));
}
