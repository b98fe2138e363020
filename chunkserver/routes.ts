import type { Express, Request, Response } from 'express';
import { z } from 'zod';
import { GfsError } from '../shared/errors.js';
import { intString, jsonRoute, parseOr400 } from '../shared/http.js';
import type { LeanRouter } from '../shared/lean-router.js';
import type { Logger } from '../shared/log.js';
import { appendBatchHeaders, applyHeaders, binaryContentType, decodeOrderedOps, decodeRecordBatch, recordBatchMaxBytes, writeBytesHeaders, type OrderedOp } from '../shared/record-wire.js';
import { crc32c } from '../shared/checksum.js';
import { appendReq, applyReq, chunkTruncateReq, csCloneReq, csCopyReq, csCreateReq, csLeaseReq, csRevokeReq, csVersionReq, handleSchema, inlineMaxBytes, syncReq, writeReq, type ChunkInfoAnswer } from '../shared/wire.js';
import { BufferPool, type Lease } from './buffer-pool.js';
import { cloneChunk } from './clone.js';
import { applyBodyLimitBytes, maxBatchOps, type Forwarder } from './forward.js';
import type { LeaseTable } from './leases.js';
import type { Mutator } from './mutations.js';
import { pushHandler, type PushBuffer } from './push.js';
import type { Scrubber } from './scrub.js';
import type { ReplicaStore } from './store.js';

// The chunkserver's HTTP API, by caller: data pushes and mutations (clients,
// primaries), orders from the master (create, version, revoke, clone, copy),
// reads, and the debug views the tests and the partition suite read. Every
// body and query is validated here (zod); server.ts wires the parts.

const readQuery = z.object({ handle: handleSchema, offset: intString(0, 2 ** 48), length: intString(0, 2 ** 31), version: intString(0, Number.MAX_SAFE_INTEGER).optional() }).strict();
const infoQuery = z.object({ handle: handleSchema }).strict();
/** Pieces a read is streamed in: each verified before it is sent. */
const readPieceBytes = 1024 * 1024;
/** A piece read as whole checksum blocks: up to one block more on each side when the range is not block-aligned. */
export const readSlotBytes = readPieceBytes + 2 * 64 * 1024;

export interface ChunkserverParts {
  id: string;
  log: Logger;
  store: ReplicaStore;
  push: PushBuffer;
  mutator: Mutator;
  leases: LeaseTable;
  forwarder: Forwarder;
  scrubber: Scrubber;
  /** Buffers reads are served from (readSlotBytes each; aligned for O_DIRECT where the store has it). */
  readPool: BufferPool;
  chunkSizeBytes: number;
  leaseMs: number;
  pushIdleMs: number;
  /** Chunk data bytes sent by /chunk/read, and copied in by clones, ever. */
  bytes: { readServed: number; clonedIn: number };
  /** Reads served, and refused because this replica is older than the version the reader was given. */
  reads: { served: number; refusedStale: number };
  heartbeatCounters: () => Record<string, number>;
}

/** Paths that take a binary body (shared/record-wire.ts) when sent as application/octet-stream. */
const binaryPaths: ReadonlySet<string> = new Set(['/chunk/append-batch', '/chunk/write', '/chunk/apply']);

/** Requests whose body a route reads raw (the JSON parser leaves them alone): pushes and binary mutations. */
export function isRawBody(req: Request): boolean {
  if (req.method === 'PUT') return req.path.startsWith('/push/');
  return req.method === 'POST' && req.headers['content-type'] === binaryContentType && binaryPaths.has(req.path);
}

function checkCrc(body: Buffer, crc: number): void {
  if (crc32c(body) !== crc) throw new GfsError('BAD_REQUEST', 'body does not match its x-gfs-crc32c');
}

/** JSON ops (base64 data) as the mutator takes them. */
function jsonOps(ops: ApplyOpJson[]): OrderedOp[] {
  return ops.map((op) => {
    if (op.kind !== 'write' || op.inline === undefined) return op as OrderedOp;
    const { inline, ...rest } = op;
    return { ...rest, data: Buffer.from(inline, 'base64') };
  });
}
type ApplyOpJson = z.infer<typeof applyReq>['ops'][number];

/**
 * Pushes, mutations and the master's orders. The mutations are the hot routes, served by the lean
 * router (shared/lean-router.ts, mounted on the app too); a path taking both encodings tells them
 * apart by content type: the binary body when the request says so, JSON otherwise.
 */
export function chunkRoutes(app: Express, lean: LeanRouter, d: ChunkserverParts): void {
  app.put('/push/:dataId', pushHandler(d.push, d.chunkSizeBytes, d.log, d.pushIdleMs));
  lean.binary('/chunk/write', { headers: writeBytesHeaders, limitBytes: inlineMaxBytes }, ({ headers: h, body }) => {
    checkCrc(body, h['x-gfs-crc32c']);
    d.scrubber.touched(h['x-gfs-handle']);
    return d.mutator.write({ handle: h['x-gfs-handle'], version: h['x-gfs-version'], offset: h['x-gfs-offset'], sizeBytes: body.length, crc32c: h['x-gfs-crc32c'], clientId: h['x-gfs-client'], requestId: h['x-gfs-request'], data: body });
  });
  lean.json('POST', '/chunk/write', { body: writeReq }, ({ body }) => (d.scrubber.touched(body.handle), d.mutator.write(body)));
  lean.json('POST', '/chunk/append', { body: appendReq }, ({ body }) => (d.scrubber.touched(body.handle), d.mutator.append(body)));
  lean.binary('/chunk/append-batch', { headers: appendBatchHeaders, limitBytes: recordBatchMaxBytes }, ({ headers: h, body }) => {
    checkCrc(body, h['x-gfs-crc32c']);
    d.scrubber.touched(h['x-gfs-handle']);
    return d.mutator.appendBatch({ handle: h['x-gfs-handle'], version: h['x-gfs-version'], clientId: h['x-gfs-client'], requestId: h['x-gfs-request'], records: decodeRecordBatch(body) });
  });
  lean.binary('/chunk/apply', { headers: applyHeaders, limitBytes: applyBodyLimitBytes }, ({ headers: h, body }) => {
    d.scrubber.touched(h['x-gfs-handle']);
    return d.mutator.apply({ handle: h['x-gfs-handle'], version: h['x-gfs-version'], stream: h['x-gfs-stream'], ackedThrough: h['x-gfs-acked-through'], ops: decodeOrderedOps(body, maxBatchOps) });
  });
  app.post('/chunk/truncate', jsonRoute({ body: chunkTruncateReq }, ({ body }) => (d.scrubber.touched(body.handle), d.mutator.truncate(body))));
  lean.json('POST', '/chunk/apply', { body: applyReq }, ({ body }) => (d.scrubber.touched(body.handle), d.mutator.apply({ ...body, ops: jsonOps(body.ops) })));
  app.post('/chunk/sync', jsonRoute({ body: syncReq }, async ({ body }) => {
    const info = d.store.require(body.handle);
    await d.store.sync(body.handle);
    return { ok: true, version: info.version };
  }));
  app.post('/chunk/create', jsonRoute({ body: csCreateReq }, async ({ body }) => {
    const info = d.store.info(body.handle);
    if (info && info.version === body.version) return { ok: true };
    await d.store.create(body.handle, body.version);
    return { ok: true };
  }));
  app.post('/chunk/version', jsonRoute({ body: csVersionReq }, async ({ body }) => {
    // Noted on arrival, before anything else: the lease that may follow starts no earlier than this.
    const heardAtMs = d.leases.now();
    if (!d.store.has(body.handle)) throw new GfsError('NOT_FOUND', `no replica of ${body.handle} here`);
    d.leases.drop(body.handle); // a new version means a new lease, perhaps elsewhere
    await d.store.setVersion(body.handle, body.version);
    if (body.primary) d.leases.offered(body.handle, body.version, heardAtMs);
    return { ok: true };
  }));
  app.post('/chunk/lease', jsonRoute({ body: csLeaseReq }, ({ body }) => {
    const info = d.store.require(body.handle);
    return { installed: info.version === body.version && d.leases.install(body.handle, body.version, body.secondaries, body.remainingMs) };
  }));
  app.post('/chunk/revoke', jsonRoute({ body: csRevokeReq }, async ({ body }) => {
    await d.mutator.revoke(body.handle, Math.min(10_000, d.leaseMs));
    return { ok: true };
  }));
  app.post('/chunk/clone', jsonRoute({ body: csCloneReq }, async ({ body }) => {
    const r = await cloneChunk(d.store, body);
    d.bytes.clonedIn += r.sizeBytes;
    return r;
  }));
  app.post('/chunk/copy', jsonRoute({ body: csCopyReq }, async ({ body }) => {
    await d.store.copyLocal(body.handle, body.newHandle, body.version);
    return { ok: true };
  }));
  app.get('/chunk/info', jsonRoute({ query: infoQuery }, ({ query }): ChunkInfoAnswer => {
    return { handle: query.handle, ...d.store.require(query.handle) };
  }));
}

/** Streams a verified range of a replica; refuses a reader that expects a newer version. */
export function readRoute(app: Express, d: ChunkserverParts): void {
  app.get('/chunk/read', async (req, res, next) => {
    try {
      const q = parseOr400(readQuery, req.query);
      const info = d.store.require(q.handle);
      // A replica older than the version the client was given is stale and must not serve.
      if (q.version !== undefined && info.version < q.version) {
        d.reads.refusedStale++;
        throw new GfsError('STALE_VERSION', `replica of ${q.handle} is at version ${info.version}, reader expects ${q.version}`);
      }
      d.reads.served++;
      const end = Math.min(info.sizeBytes, q.offset + q.length);
      const total = Math.max(0, end - q.offset);
      // Pieces are read into reused buffers (no first-touch cost per piece), each given back once the
      // socket has taken it; the next piece is read (and verified) while this one is sent.
      const readInto = (at: number): { piece: Promise<Buffer>; lease: Lease } => {
        const lease = d.readPool.lend(readSlotBytes);
        const piece = d.store.read(q.handle, at, Math.min(readPieceBytes, end - at), lease.buf);
        piece.catch(() => lease.release()); // awaited below; a failed read gives its buffer back
        return { piece, lease };
      };
      // A connection that closes with data unsent: the write callbacks may never run.
      const held = new Set<Lease>();
      res.once('close', () => {
        for (const l of held) l.release();
        held.clear();
      });
      // Verify the first piece before committing to a 200.
      let pos = q.offset;
      let cur = total > 0 ? readInto(pos) : undefined;
      let piece = cur ? await cur.piece : Buffer.alloc(0);
      res.status(200).setHeader('content-type', 'application/octet-stream');
      res.setHeader('content-length', String(total));
      res.setHeader('x-gfs-version', String(info.version));
      for (;;) {
        pos += piece.length;
        const more = pos < end && piece.length > 0;
        d.bytes.readServed += piece.length;
        const nextRead = more ? readInto(pos) : undefined;
        const sent = cur?.lease;
        if (sent) held.add(sent);
        const full = !res.write(piece, () => {
          sent?.release();
          if (sent) held.delete(sent);
        });
        if (full && more) await drainedOrClosed(res);
        if (res.destroyed) {
          // The reader went away: stop reading (and give back what the read ahead holds).
          if (nextRead) void nextRead.piece.then(() => nextRead.lease.release(), () => undefined);
          return;
        }
        if (!nextRead) break;
        cur = nextRead;
        piece = await nextRead.piece;
      }
      res.end();
    } catch (e) {
      next(e);
    }
  });
}

/** Resolves on the response's next 'drain', or at once if it closed (no 'drain' ever comes then). */
function drainedOrClosed(res: Response): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

/** What tests and the partition suite read: recent pushes, the primary log, counters and state. */
export function debugRoutes(app: Express, d: ChunkserverParts): void {
  app.get('/debug/pushes', (_req, res) => {
    res.json({ pushes: d.push.recent });
  });
  app.get('/debug/primary-log', (_req, res) => {
    res.json({ id: d.id, nowMs: Date.now(), entries: d.leases.primaryLog.list() });
  });
  app.get('/debug/state', (_req, res) => {
    res.json({ id: d.id, leases: d.leases.held(), counters: { ...d.mutator.counters, ...d.heartbeatCounters(), serials: d.mutator.order.counters, resent: d.forwarder.counters.resent }, forwardedTo: Object.fromEntries(d.forwarder.sentTo), reads: d.reads, push: { usedBytes: d.push.usedBytes, count: d.push.count, active: d.push.active, refused: d.push.refused, maxBytes: d.push.maxBytes, maxActive: d.push.maxActive, pool: { inUse: d.push.pool.inUse, idle: d.push.pool.idle, made: d.push.pool.slotsMade, ...d.push.pool.counters } }, rssBytes: process.memoryUsage.rss(), bytes: { pushReceived: d.push.receivedBytes, pushForwarded: d.push.forwardedBytes, readServed: d.bytes.readServed, written: d.store.writtenBytes }, chunks: d.store.list(), corruptChunks: d.store.corruptList(), direct: d.store.direct?.counters ?? null });
  });
}
