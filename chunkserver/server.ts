import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { customAlphabet } from 'nanoid';
import { writeFileAtomicSync } from '../shared/atomic-file.js';
import { monotonicClock } from '../shared/clock.js';
import { defaults, envInt } from '../shared/config.js';
import { loadFaultsFromEnv } from '../shared/fault.js';
import type { Express } from 'express';
import { addGuard, admissionOf, finishApp, listen, makeApp } from '../shared/http.js';
import { GfsError } from '../shared/errors.js';
import { LeanRouter } from '../shared/lean-router.js';
import { makeLogger, type Logger } from '../shared/log.js';
import { Metrics } from '../shared/metrics.js';
import { advertisedUrl, checkAdvertiseUrl } from '../shared/address.js';
import { registerChunkserverMetrics } from './metrics.js';
import { rpcJson, setRpcSelf } from '../shared/rpc.js';
import { nodeIdSchema, type LeaseConfirmAnswer } from '../shared/wire.js';
import { Forwarder } from './forward.js';
import { Heartbeater } from './heartbeat.js';
import { MasterSet } from './masters.js';
import { LeaseTable } from './leases.js';
import { Mutator } from './mutations.js';
import { applyBodyLimitBytes } from './forward.js';
import { BufferPool } from './buffer-pool.js';
import { PushBuffer } from './push.js';
import { chunkRoutes, debugRoutes, isRawBody, readRoute, readSlotBytes, type ChunkserverParts } from './routes.js';
import { Scrubber } from './scrub.js';
import { ReplicaStore } from './store.js';

/** Free push slots kept (16 x 8 MiB): enough for several clients' pieces in flight; more are made when needed and dropped when returned. */
const pushPoolKeepSlots = 16;
const pushPoolPrefillSlots = 4;

export interface ChunkserverOptions {
  dir: string;
  masterUrl: string;
  port?: number;
  host?: string;
  /** The URL others use to reach this server (defaults to http://host:port). */
  advertiseUrl?: string;
  rack?: string;
  id?: string;
  heartbeatMs?: number;
  /** Bytes of pushed data held at once (under way and waiting for a mutation); beyond it pushes get 429. */
  pushBufferBytes?: number;
  /** Pushes received at once; beyond it pushes get 429. */
  maxPushes?: number;
  /** Push buffer slots made and touched at start-up (chunkserver/buffer-pool.ts; default 4, GFS_PUSH_POOL_PREFILL). */
  pushPoolPrefillSlots?: number;
  /** A push that sends no data for this long is dropped (default 30 s). */
  pushIdleMs?: number;
  /** Requests handled at once; beyond it 503. */
  maxInFlight?: number;
  /** Background verification of one idle chunk every this many ms (0: off). */
  scrubIntervalMs?: number;
  /** A chunk mutated within this many ms is not idle and is left to the scrubber for later (default 30 s). */
  scrubIdleMs?: number;
  /** How long the primary waits for a secondary's answer to a forwarded mutation (default: GFS_FORWARD_TIMEOUT_MS, else the RPC timeout). */
  forwardTimeoutMs?: number;
  log?: Logger;
}

export interface RunningChunkserver {
  id: string;
  url: string;
  port: number;
  server: Server;
  store: ReplicaStore;
  close(): Promise<void>;
}


/** A stable id, kept in DIR/id so a restarted chunkserver is the same server to the master. */
function loadOrMakeId(dir: string, wanted?: string): string {
  const file = join(dir, 'id');
  if (existsSync(file)) {
    const id = readFileSync(file, 'utf8').trim();
    if (!nodeIdSchema.safeParse(id).success) throw new Error(`${file} holds an invalid id`);
    if (wanted && wanted !== id) throw new Error(`${dir} belongs to chunkserver ${id}, not ${wanted}`);
    return id;
  }
  const id = wanted ?? `cs-${customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 8)()}`;
  nodeIdSchema.parse(id);
  // Atomic: a crash mid-write must not leave an empty id that refuses every later start.
  writeFileAtomicSync(file, id + '\n');
  return id;
}

async function fetchConfig(masterUrls: string[], log: Logger): Promise<{ chunkSizeBytes: number; leaseMs: number; heartbeatMs: number }> {
  // A chunkserver may start before its master: keep asking (each master in turn), with a bounded backoff.
  for (let attempt = 0; ; attempt++) {
    const masterUrl = masterUrls[attempt % masterUrls.length]!;
    try {
      return await rpcJson(masterUrl, '/api/config', undefined, { targetName: 'master', timeoutMs: 3_000 });
    } catch (e) {
      if (attempt % 10 === 0) log.warn({ masterUrl, err: (e as Error).message }, 'waiting for the master');
      await new Promise((r) => setTimeout(r, Math.min(1_000, 100 * (attempt + 1))));
    }
  }
}

/** The replica store; a corrupt replica it finds is reported to the master at once (and listed in heartbeats until deleted). */
function openStore(dir: string, id: string, chunkSizeBytes: number, log: Logger, metrics: Metrics, masters: MasterSet, reportedCorrupt: Set<string>): Promise<ReplicaStore> {
  return ReplicaStore.open({
    dir,
    serverId: id,
    chunkSizeBytes,
    checksumBlockBytes: defaults.checksumBlockBytes,
    onFsync: (kind, seconds) => metrics.observeFsync(kind, seconds),
    onCorrupt: (handle) => {
      if (reportedCorrupt.has(handle)) return;
      reportedCorrupt.add(handle);
      log.warn({ handle }, 'corrupt replica detected');
      rpcJson(masters.leaderUrl(), '/api/cs/report-corrupt', { id, handle }, { targetName: 'master' }).catch(() => reportedCorrupt.delete(handle));
    },
    onMarkFailed: (handle, err) => log.error({ handle, err: err.message }, 'could not mark a corrupt replica on disk; it is out of service until restart'),
    // GFS_DIRECT_IO=0 keeps every piece buffered.
    directIo: envInt('GFS_DIRECT_IO') !== 0,
  });
}

/** The express app with the chunkserver's middleware: limits, in-flight count (its load), epoch fencing. */
function chunkserverApp(o: ChunkserverOptions, id: string, url: () => string, log: Logger, metrics: Metrics, masters: MasterSet, countInFlight: (delta: number) => void): Express {
  const app = makeApp({
    names: () => [id, url()],
    log,
    metrics,
    maxInFlight: o.maxInFlight,
    // Small JSON everywhere but where mutations carry inline data (<= 64 KiB as
    // base64) and where the primary forwards batches of them (forward.ts bounds a batch).
    jsonLimits: { '/chunk/write': 256 * 1024, '/chunk/append': 256 * 1024, '/chunk/apply': applyBodyLimitBytes, '/admin/faults': 1024 * 1024 },
    rawBody: isRawBody,
  });
  // The masters' addresses are known peers: exempt from the per-address connection cap (shared/admission.ts).
  for (const m of masters.masters) {
    try {
      admissionOf(app).allowPeer(new URL(m.url).hostname.replace(/^\[|\]$/g, ''));
    } catch {
      /* not a URL: nothing to allow */
    }
  }
  // Guards (shared/http.ts): the lean router of the hot routes runs them too.
  addGuard(app, (_req, res) => {
    countInFlight(1);
    res.once('close', () => countInFlight(-1));
  });
  // Orders from a master carry its epoch: one older than the highest seen comes from a failed-over master.
  addGuard(app, (req) => {
    const e = req.headers['x-gfs-epoch'];
    if (typeof e === 'string' && !masters.see(Number(e))) throw new GfsError('STALE_EPOCH', `order from a master of epoch ${e}; this chunkserver has seen epoch ${masters.maxEpoch}`);
  });
  return app;
}

/** One heartbeater per master URL (the master and its shadows all learn locations). */
function heartbeaters(o: ChunkserverOptions, id: string, url: () => string, heartbeatMs: number, leaseMs: number, store: ReplicaStore, leases: LeaseTable, load: () => number, log: Logger, masters: MasterSet, onDeleted: (h: string) => void): Heartbeater[] {
  return masters.masters.map(
    (m) =>
      new Heartbeater({
        id,
        url,
        rack: o.rack ?? 'default',
        masterUrl: m.url,
        heartbeatMs,
        leaseMs: () => leaseMs,
        store,
        leases,
        load,
        log,
        onDeleted,
        masters: masters.masters.length > 1 ? masters : undefined,
      }),
  );
}

export async function startChunkserver(o: ChunkserverOptions): Promise<RunningChunkserver> {
  const advertise = o.advertiseUrl === undefined ? undefined : checkAdvertiseUrl(o.advertiseUrl);
  mkdirSync(o.dir, { recursive: true });
  const id = loadOrMakeId(o.dir, o.id);
  const log = o.log ?? makeLogger(id);
  const metrics = new Metrics('chunkserver', () => id);
  setRpcSelf(id);
  loadFaultsFromEnv();
  // `--master URL,URL`: the master and its shadows; orders count only from the highest epoch (chunkserver/masters.ts).
  const masters = new MasterSet(o.masterUrl.split(',').map((u) => u.trim()).filter(Boolean), o.dir);
  const cfg = await fetchConfig(masters.masters.map((m) => m.url), log);
  const heartbeatMs = o.heartbeatMs ?? cfg.heartbeatMs ?? defaults.heartbeatMs;
  let master: Heartbeater | undefined;
  const reportedCorrupt = new Set<string>();
  const store = await openStore(o.dir, id, cfg.chunkSizeBytes, log, metrics, masters, reportedCorrupt);
  const scrubber = new Scrubber(store, o.scrubIntervalMs ?? 10_000, o.scrubIdleMs ?? 30_000, log);
  const pushBufferBytes = o.pushBufferBytes ?? defaults.pushBufferBytes;
  // Slots the size of a client's piece (or of a chunk, if smaller); as many kept as a few pieces in flight per client need.
  const slotBytes = Math.min(defaults.pushPieceBytes, cfg.chunkSizeBytes);
  const keepSlots = Math.max(0, Math.min(pushPoolKeepSlots, Math.floor(pushBufferBytes / slotBytes)));
  // With O_DIRECT (chunkserver/direct-io.ts), slots start where the kernel takes them for it.
  const direct = store.direct;
  const alloc = (bytes: number) => direct?.alignedBuffer(bytes) ?? Buffer.allocUnsafeSlow(bytes);
  const pool = new BufferPool(slotBytes, keepSlots, Math.min(keepSlots, o.pushPoolPrefillSlots ?? envInt('GFS_PUSH_POOL_PREFILL') ?? pushPoolPrefillSlots), undefined, alloc);
  // Read buffers kept for reuse (a couple per read under way); more are made when needed.
  const readPool = new BufferPool(readSlotBytes, 16, 2, undefined, alloc);
  if (direct) log.info({ dir: o.dir }, 'chunk data: O_DIRECT for bulk pieces');
  const push = new PushBuffer(pushBufferBytes, envInt('GFS_PUSH_EXPIRY_MS') ?? defaults.pushExpiryMs, o.maxPushes ?? defaults.maxPushes, pool);
  const clock = monotonicClock();
  const leases = new LeaseTable({
    clock,
    driftFraction: defaults.clockDriftFraction,
    minRemainingMs: Math.min(1_000, cfg.leaseMs / 10),
    confirm: (handle) => rpcJson<LeaseConfirmAnswer>(masters.leaderUrl(), '/api/cs/lease-confirm', { id, handle }, { targetName: 'master', timeoutMs: Math.min(defaults.rpcTimeoutMs, cfg.leaseMs / 2) }),
    onRefused: () => mutator.counters.refusedNoLease++,
  });
  const forwardTimeoutMs = o.forwardTimeoutMs ?? envInt('GFS_FORWARD_TIMEOUT_MS') ?? defaults.rpcTimeoutMs;
  if (!(forwardTimeoutMs >= 100)) throw new Error(`forward timeout must be at least 100 ms, got ${forwardTimeoutMs}`);
  const forwarder = new Forwarder(forwardTimeoutMs);
  // A secondary gives up on a gap well before the primary gives up on its answer, so the answer arrives.
  const mutator = new Mutator({ store, push, leases, forwarder, chunkSizeBytes: cfg.chunkSizeBytes, gapTimeoutMs: forwardTimeoutMs / 2 });
  let inFlight = 0;
  /** Chunk data bytes sent by /chunk/read, and copied in by clones, ever (with push.receivedBytes: the data that crossed the network). */
  const bytes = { readServed: 0, clonedIn: 0 };
  /** Reads served, and refused because this replica is older than the version the reader was given. */
  const reads = { served: 0, refusedStale: 0 };
  let url = advertise ?? '';

  const app = chunkserverApp(o, id, () => url, log, metrics, masters, (n) => (inFlight += n));
  const parts: ChunkserverParts = { id, log, store, push, mutator, leases, forwarder, scrubber, readPool, chunkSizeBytes: cfg.chunkSizeBytes, leaseMs: cfg.leaseMs, pushIdleMs: o.pushIdleMs ?? 30_000, bytes, reads, heartbeatCounters: () => ({ ...master!.counters }) };
  const lean = new LeanRouter(app);
  chunkRoutes(app, lean, parts);
  readRoute(app, parts);
  debugRoutes(app, parts);
  finishApp(app, log);

  const host = o.host ?? '127.0.0.1';
  const { server, port, scheme } = await listen(app, o.port ?? 0, host, lean);
  if (!url) url = advertisedUrl(host, port, undefined, log, scheme);
  const beaters = heartbeaters(o, id, () => url, heartbeatMs, cfg.leaseMs, store, leases, () => inFlight, log, masters, (h) => reportedCorrupt.delete(h));
  master = beaters[0]!;
  registerChunkserverMetrics(metrics, { store, push, mutator, leases, beaters: () => beaters, reads, bytes });
  scrubber.start();
  await Promise.all(beaters.map((b) => b.register().catch((e) => log.warn({ err: (e as Error).message }, 'first registration failed; heartbeats will retry'))));
  for (const b of beaters) b.start();
  const sweeper = setInterval(() => push.sweep(Date.now()), Math.min(5_000, push.expiryMs));
  sweeper.unref();
  log.info({ id, url, bind: `${host}:${port}`, rack: o.rack ?? 'default' }, 'chunkserver listening');
  return {
    id,
    url,
    port,
    server,
    store,
    async close() {
      for (const b of beaters) b.stop();
      scrubber.stop();
      clearInterval(sweeper);
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await store.close();
    },
  };
}
