import type { NextFunction, Request, Response } from 'express';
import type { AdmissionStats } from './admission.js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

// Prometheus metrics (GET /metrics) of one daemon. Each server gets its own
// registry, so two servers in one process never mix their numbers.
//
// Cost on the hot path: one hrtime read when a request arrives and one
// histogram observation when it finishes. The `op` label is the route the
// request matched (e.g. `/chunk/read`, `/push/:dataId`), never the raw URL,
// so the label set is bounded by the number of routes; requests that matched
// no route (404s, refused before routing) are all `op="none"`. Numbers the
// daemons already keep (counters objects, push buffer bytes) are read only
// when Prometheus scrapes, through collect() callbacks.

/** Latency buckets from 0.5 ms (a status read) to 30 s (a 64 MiB push over a slow link). */
const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const fsyncBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export type FsyncKind = 'oplog' | 'checkpoint' | 'chunk' | 'meta' | 'dir';

export class Metrics {
  readonly registry = new Registry();
  private readonly requestSeconds: Histogram<'op' | 'method' | 'status'>;
  private readonly requests: Counter<'op' | 'method' | 'status'>;
  private readonly fsyncSeconds: Histogram<'kind'>;
  private readonly requestSeries = new Map<string, { count: { inc(): void }; seconds: { observe(v: number): void } }>();

  constructor(
    readonly role: 'master' | 'chunkserver',
    node: () => string,
    o: { processMetrics?: boolean } = {},
  ) {
    const registers = [this.registry];
    // Process metrics (CPU, memory, event loop lag, GC) once per process: they describe the process, not a server.
    if (o.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'gfs_node_info',
      help: 'Always 1; labels say which node and role this is',
      labelNames: ['node', 'role'],
      registers,
      collect() {
        this.reset();
        this.set({ node: node(), role }, 1);
      },
    });
    this.requests = new Counter({ name: 'gfs_requests_total', help: 'HTTP requests served, by route (op), method and status class', labelNames: ['op', 'method', 'status'], registers });
    this.requestSeconds = new Histogram({ name: 'gfs_request_duration_seconds', help: 'Time from request arrival to the end of the answer, by route (op)', labelNames: ['op', 'method', 'status'], buckets: latencyBuckets, registers });
    this.fsyncSeconds = new Histogram({ name: 'gfs_fsync_duration_seconds', help: 'fsync/fdatasync latency by what was made durable (oplog batch, checkpoint, chunk data, chunk metadata, directory)', labelNames: ['kind'], buckets: fsyncBuckets, registers });
  }

  /** Express middleware recording every request (mount it first). */
  middleware() {
    return (req: Request, res: Response, next: NextFunction): void => {
      const start = process.hrtime.bigint();
      res.once('close', () => this.observeRequest((req.route?.path as string | undefined) ?? 'none', req.method, res.statusCode, Number(process.hrtime.bigint() - start) / 1e9));
      next();
    };
  }

  /** One answered request: `op` is the route it reached ('none' when refused before routing). */
  observeRequest(op: string, method: string, statusCode: number, seconds: number): void {
    const status = statusClass(statusCode);
    const key = `${op} ${method} ${status}`;
    let series = this.requestSeries.get(key);
    if (!series) {
      // Children bound to their labels: the label set is hashed once, not on every request. Bounded
      // by routes x methods x status classes, since op is a route pattern, never a raw URL.
      const labels = { op, method, status };
      series = { count: this.requests.labels(labels), seconds: this.requestSeconds.labels(labels) };
      this.requestSeries.set(key, series);
    }
    series.count.inc();
    series.seconds.observe(seconds);
  }

  observeFsync(kind: FsyncKind, seconds: number): void {
    this.fsyncSeconds.observe({ kind }, seconds);
  }

  /** A counter whose value is read from the daemon's own state at scrape time (it must never decrease). */
  counterFrom(name: string, help: string, value: () => number): void {
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(value());
      },
    });
  }

  /** Like counterFrom, one series per label value (a small, fixed set of labels). */
  countersFrom(name: string, help: string, label: string, values: () => Record<string, number>): void {
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [k, v] of Object.entries(values())) this.inc({ [label]: k }, v);
      },
    });
  }

  /** A gauge read at scrape time; with a label, one series per key of the returned record. */
  gaugeFrom(name: string, help: string, value: () => number): void;
  gaugeFrom(name: string, help: string, value: () => Record<string, number>, label: string): void;
  gaugeFrom(name: string, help: string, value: () => number | Record<string, number>, label?: string): void {
    new Gauge({
      name,
      help,
      labelNames: label ? [label] : [],
      registers: [this.registry],
      collect() {
        this.reset();
        const v = value();
        if (typeof v === 'number') this.set(v);
        else for (const [k, x] of Object.entries(v)) this.set({ [label!]: k }, x);
      },
    });
  }

  /** Connection admission (shared/admission.ts): refusals by reason, open connections, failed authentications. */
  admission(stats: () => AdmissionStats): void {
    this.countersFrom('gfs_connections_refused_total', 'Connections closed before their first request: over the per-address cap, over the total cap, or first headers too slow', 'reason', () => stats().refused);
    this.gaugeFrom('gfs_open_connections', 'Open client and peer connections', () => stats().openConnections);
    this.counterFrom('gfs_unauthenticated_requests_total', 'Requests that failed authentication', () => stats().unauthenticated);
    this.counterFrom('gfs_auth_rate_limited_requests_total', 'Requests refused (429) because their address failed authentication too often', () => stats().authRateLimited);
  }

  /** GET /metrics handler. */
  handler() {
    return async (_req: Request, res: Response, next: NextFunction): Promise<void> => {
      try {
        const text = await this.registry.metrics();
        res.setHeader('content-type', this.registry.contentType);
        res.setHeader('cache-control', 'no-store');
        res.end(text);
      } catch (e) {
        next(e);
      }
    };
  }
}

function statusClass(code: number): string {
  return code >= 500 ? '5xx' : code >= 400 ? '4xx' : code >= 300 ? '3xx' : '2xx';
}

/** Runs an fsync-like call and reports how long it took. */
export async function timedFsync<T>(observe: ((seconds: number) => void) | undefined, fn: () => Promise<T>): Promise<T> {
  if (!observe) return fn();
  const start = process.hrtime.bigint();
  try {
    return await fn();
  } finally {
    observe(Number(process.hrtime.bigint() - start) / 1e9);
  }
}
