import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { Admission, type AdmissionOptions } from './admission.js';
import { authEnabled, authMiddleware, authSkewMs, jsonDigestVerify, prunedReplayCache, secretSource, sha256Hex, unverifiedBodyCheck, type ReplayCache, type SignedMessage } from './auth.js';
import { GfsError } from './errors.js';
import { faultFor, faultRulesSchema, getFaultRules, setFaultRules } from './fault.js';
import { requestContext, type Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { serverTlsOptions } from './tls.js';
import { hasWebToken, webToken, webTokenLogin } from './webauth.js';

// Server-side conventions shared by master and chunkserver: JSON bodies are
// bounded, every body and query is validated with zod before a handler sees
// it, and every error leaves as `{error, code}` with a 4xx/5xx status.

export function zodMessage(err: z.ZodError): string {
  return err.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`)
    .join('; ');
}

export function parseOr400<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new GfsError('BAD_REQUEST', zodMessage(r.error));
  return r.data;
}

type Handler<B, Q> = (input: { body: B; query: Q; req: Request; res: Response }) => Promise<unknown> | unknown;

/** A JSON endpoint: validates body and query, runs the handler, sends its result as JSON. */
export function jsonRoute<B, Q>(schemas: { body?: z.ZodType<B>; query?: z.ZodType<Q> }, handler: Handler<B, Q>) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    try {
      const body = schemas.body ? parseOr400(schemas.body, req.body ?? {}) : (undefined as B);
      const query = schemas.query ? parseOr400(schemas.query, req.query ?? {}) : (undefined as Q);
      const out = await handler({ body, query, req, res });
      if (!res.headersSent) res.json(out ?? { ok: true });
    } catch (e) {
      next(e);
    }
  };
}

/**
 * Reads a raw request body whole: at most limitBytes (a larger Content-Length is refused before any
 * byte is read), and, when the request is signed, only if its sha256 is the signed digest. For the
 * small binary mutations (shared/record-wire.ts); data pushes stream instead (chunkserver/push.ts).
 */
export function readSignedBody(req: SignedMessage, limitBytes: number): Promise<Buffer> {
  const lenHeader = req.headers['content-length'];
  if (lenHeader === undefined || !/^\d+$/.test(lenHeader)) return Promise.reject(new GfsError('BAD_REQUEST', 'a binary body needs a Content-Length', undefined, 411));
  const len = Number(lenHeader);
  if (len > limitBytes) return Promise.reject(new GfsError('PAYLOAD_TOO_LARGE', `body of ${len} bytes exceeds ${limitBytes}`));
  return new Promise<Buffer>((resolve, reject) => {
    const body = Buffer.allocUnsafe(len);
    let got = 0;
    let failed = false;
    const fail = (e: GfsError) => {
      if (failed) return;
      failed = true;
      reject(e);
    };
    req.on('data', (c: Buffer) => {
      if (failed) return;
      if (got + c.length > len) return fail(new GfsError('BAD_REQUEST', 'body longer than its Content-Length'));
      c.copy(body, got);
      got += c.length;
    });
    req.once('end', () => {
      if (failed) return;
      if (got !== len) return fail(new GfsError('TRUNCATED', `body truncated: ${got} of ${len} bytes`));
      const signed = req.gfsAuth?.bodySha256;
      if (signed !== undefined && sha256Hex(body) !== signed) return fail(new GfsError('UNAUTHENTICATED', 'body does not match its signed digest'));
      resolve(body);
    });
    req.once('aborted', () => fail(new GfsError('TRUNCATED', 'body aborted by the sender')));
    req.once('error', (e) => fail(new GfsError('TRUNCATED', `body failed: ${e.message}`)));
  });
}

/** A binary endpoint: control headers validated, the body read whole (readSignedBody), the handler's result sent as JSON. */
export function binaryRoute<H>(schemas: { headers: z.ZodType<H>; limitBytes: number }, handler: (input: { headers: H; body: Buffer; req: Request; res: Response }) => Promise<unknown> | unknown) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    let body: Buffer;
    try {
      // The body first (it is small): answering before it is read would close the connection with the
      // sender's bytes unread, and the kernel's reset can cost the sender the answer.
      body = await readSignedBody(req, schemas.limitBytes);
    } catch (e) {
      if (!res.headersSent) res.setHeader('connection', 'close');
      // Refused before reading (no length, too large): read and discard what comes for a while, then close.
      if (e instanceof GfsError && (e.status === 411 || e.code === 'PAYLOAD_TOO_LARGE')) lingerBeforeClose(req, 5_000);
      next(e);
      return;
    }
    try {
      const headers = parseOr400(schemas.headers, req.headers);
      const out = await handler({ headers, body, req, res });
      if (!res.headersSent) res.json(out ?? { ok: true });
    } catch (e) {
      next(e);
    }
  };
}

/**
 * What a log line about a request says about it: its route, the request id (the header, or a chunk
 * mutation's clientId:requestId), and the chunk handle it names. Read from the request, so the data
 * path needs no per-request async context.
 */
export function requestLogFields(req: Request): Record<string, unknown> {
  const out: Record<string, unknown> = { op: `${req.method} ${(req.route?.path as string | undefined) ?? req.path.slice(0, 100)}` };
  const body = req.body as Record<string, unknown> | undefined;
  const query = req.query as Record<string, unknown> | undefined;
  const rid = req.headers['x-gfs-request-id'];
  if (typeof rid === 'string') out.rid = rid.slice(0, 128);
  else if (body && typeof body.clientId === 'string' && typeof body.requestId === 'string') out.rid = `${body.clientId}:${body.requestId}`.slice(0, 128);
  const handle = body?.handle ?? query?.handle;
  if (typeof handle === 'string') out.handle = handle.slice(0, 32);
  return out;
}

/**
 * For an answer given before the request's body was read: when node closes the connection after it
 * (the sender asked for 'connection: close'), half-close and keep reading and discarding for up to
 * lingerMs instead of closing at once. Closing a socket with the sender's bytes still unread makes
 * the kernel send a reset, and a sender still writing its body then loses the answer. The body is
 * at most what its Content-Length declared (the route bounded that) and node's parser discards it.
 */
export function lingerBeforeClose(req: IncomingMessage, lingerMs: number): void {
  const sock = req.socket;
  sock.destroySoon = function lingering(this: typeof sock) {
    if (this.writable) this.end();
    const timer = setTimeout(() => this.destroy(), lingerMs);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
  };
}

/** What an error thrown while serving a request answers: a GfsError as it is, body-parser's and http-errors' 4xx as BAD_REQUEST/PAYLOAD_TOO_LARGE, anything else INTERNAL (and logged). */
export function errorOf(e: unknown, log?: Logger, fields?: () => Record<string, unknown>): GfsError {
  let err: GfsError;
  if (e instanceof GfsError) err = e;
  else if (e && typeof e === 'object' && 'type' in e && (e as { type: string }).type === 'entity.parse.failed') err = new GfsError('BAD_REQUEST', 'malformed JSON body');
  else if (e && typeof e === 'object' && 'type' in e && (e as { type: string }).type === 'entity.too.large') err = new GfsError('PAYLOAD_TOO_LARGE', 'request body too large');
  else if (e && typeof e === 'object' && 'status' in e && typeof (e as { status: unknown }).status === 'number' && (e as { status: number }).status < 500)
    err = new GfsError('BAD_REQUEST', (e as unknown as Error).message || 'bad request', undefined, (e as { status: number }).status);
  else {
    log?.error({ ...(fields ? fields() : {}), err: e }, 'internal error');
    err = new GfsError('INTERNAL', e instanceof Error ? e.message : 'internal error');
  }
  return err;
}

export function sendError(res: Response, e: unknown, log?: Logger, req?: Request): void {
  const err = errorOf(e, log, req ? () => requestLogFields(req) : undefined);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.status(err.status).json(err.toJSON());
}

export interface AppOptions {
  /** This node's names for the fault layer (its id, and its URL once known). */
  names: () => string[];
  log: Logger;
  /** Largest JSON body of any endpoint not in jsonLimits. */
  jsonLimitBytes?: number;
  /** Per-path JSON body limits (exact paths), for the few endpoints that take large bodies. */
  jsonLimits?: Record<string, number>;
  /** Requests whose body is a raw stream (data pushes): not parsed as JSON, digest checked by their handler. */
  rawBody?: (req: Request) => boolean;
  /** GET paths served without credentials. */
  publicPaths?: string[];
  /** Requests handled at once; beyond it new ones get 503 (bounds memory held by parked requests). */
  maxInFlight?: number;
  /** Request metrics and GET /metrics (shared/metrics.ts). */
  metrics?: Metrics;
  /** GET paths a browser or Prometheus may read with the web token instead of a signature (shared/webauth.ts); /metrics always is. */
  webPaths?: string[];
  /** Connection and unauthenticated-request limits per remote address (shared/admission.ts). */
  admission?: AdmissionOptions;
}

/** Default JSON body limit: paths and small objects, nothing more. */
export const defaultJsonLimitBytes = 64 * 1024;
export const defaultMaxInFlight = 2048;

/**
 * What every request path of one server shares (the express app, and the lean router of its hot
 * routes, shared/lean-router.ts): the limits, the nonce cache, the fault names and the guards, so a
 * request is held to the same checks whichever path serves it.
 */
export interface RequestGate {
  log: Logger;
  names: () => string[];
  admission: Admission;
  metrics: Metrics | undefined;
  /** Requests being handled, and the most at once. */
  inFlight: { count: number; max: number };
  /** The nonce cache of signed requests. */
  replay: ReplayCache;
  skewMs: number;
  /** The JSON body limit of a path. */
  jsonLimitFor(path: string): number;
  /** Paths served without credentials, or with the web token: never taken by the lean router. */
  openPaths: ReadonlySet<string>;
  /** Checks a role adds after the shared ones (addGuard), in order. */
  guards: Guard[];
  /** The access log is on (debug level): the lean router leaves every request to express, which writes it. */
  accessLog: boolean;
}

/** A check before any route of the role's (e.g. a master's epoch fence): throws a GfsError to refuse the request, may set answer headers. */
export type Guard = (req: IncomingMessage, res: ServerResponse) => void;

/** Takes one in-flight slot (released when the answer closes), or throws the 503 (connection closed after it). */
export function takeInFlight(gate: RequestGate, res: ServerResponse): void {
  const f = gate.inFlight;
  if (f.count >= f.max) {
    res.setHeader('connection', 'close');
    throw new GfsError('UNAVAILABLE', `server busy: ${f.count} requests in flight (limit ${f.max})`, { retryAfterMs: 200 });
  }
  f.count++;
  res.once('close', () => f.count--);
}

/** At most `maxInFlight` requests handled at once; more get 503 at once (and their connection closed). */
function inFlightLimit(gate: RequestGate): (req: Request, res: Response, next: NextFunction) => void {
  return asMiddleware((_req, res) => takeInFlight(gate, res));
}

/** A check that throws to refuse, as express middleware: the error goes to the error handler, else on to the next. */
function asMiddleware(check: (req: Request, res: Response) => void): (req: Request, res: Response, next: NextFunction) => void {
  return (req, res, next) => {
    try {
      check(req, res);
    } catch (e) {
      next(e);
      return;
    }
    next();
  };
}

/** Adds a guard (see Guard) after the shared middleware of an app made by makeApp; the lean router runs it too. */
export function addGuard(app: Express, guard: Guard): void {
  gateOf(app).guards.push(guard);
  app.use(asMiddleware(guard));
}

/** The request gate of an app made by makeApp. */
export function gateOf(app: Express): RequestGate {
  const g = app.locals.gate as RequestGate | undefined;
  if (!g) throw new Error('gateOf: app was not made by makeApp');
  return g;
}

/** True for the request ids a client gives its calls (x-gfs-request-id), which the master's retry cache keys mutations by. */
export function validRequestId(rid: unknown): rid is string {
  return typeof rid === 'string' && /^[A-Za-z0-9_.:-]{8,128}$/.test(rid);
}

/**
 * Request authentication (shared/auth.ts) and the read-only web token (shared/webauth.ts). Before the
 * fault layer: a delay injected there must not age the signature, and the sender name the fault rules
 * match on is then one the signature vouches for.
 */
function useAuthentication(app: Express, opts: AppOptions, gate: RequestGate): void {
  const admission = gate.admission;
  if (!authEnabled()) opts.log.warn('no cluster secret configured (--secret-file, GFS_SECRET_FILE, GFS_SECRET): requests are NOT authenticated');
  else opts.log.info({ secret: secretSource() }, 'requests are authenticated with the cluster secret');
  const webPaths = webPathsOf(opts);
  const isWebPath = (path: string) => webPaths.has(path);
  app.use(webTokenLogin(isWebPath));
  const token = webToken();
  const auth = authMiddleware({
    publicPaths: publicPathsOf(opts),
    skewMs: gate.skewMs,
    replay: gate.replay,
    otherwiseAllowed: (req) => token !== undefined && (req.method === 'GET' || req.method === 'HEAD') && isWebPath(req.path) && hasWebToken(req, token),
  });
  // An address that keeps failing authentication is refused before its credentials (or body) are
  // looked at, so guessing costs it a 429 and us almost nothing.
  app.use((req, res, next) => {
    const addr = req.socket.remoteAddress ?? 'unknown';
    if (!admission.mayAuthenticate(addr)) {
      res.setHeader('connection', 'close');
      next(new GfsError('TOO_BUSY', 'too many unauthenticated requests from this address; slow down', { retryAfterMs: 1_000 }));
      return;
    }
    auth(req, res, (err?: unknown) => {
      if (err instanceof GfsError && err.code === 'UNAUTHENTICATED') admission.authFailed(addr);
      next(err);
    });
  });
}

const webPathsOf = (opts: AppOptions): Set<string> => new Set(['/metrics', ...(opts.webPaths ?? [])]);
const publicPathsOf = (opts: AppOptions): Set<string> => new Set(['/healthz', ...(opts.publicPaths ?? [])]);

/** The fault layer (shared/fault.ts): drops or delays requests by their signed sender. */
function faultLayer(names: () => string[]): (req: Request, res: Response, next: NextFunction) => void {
  return (req, _res, next) => {
    const from = req.headers['x-gfs-from'];
    if (typeof from === 'string') {
      const f = faultFor(from, names());
      if (f.drop) {
        req.socket.destroy();
        return;
      }
      if (f.delayMs) {
        setTimeout(next, f.delayMs);
        return;
      }
    }
    next();
  };
}

/** An express app with the shared middleware: fault layer, JSON parsing, admin endpoints. */
export function makeApp(opts: AppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  // listen() applies its connection limits to the server; the app applies the request ones.
  const admission = new Admission(opts.log, opts.admission);
  app.locals.admission = admission;
  const jsonLimits = new Map(Object.entries(opts.jsonLimits ?? {}));
  const jsonLimitBytes = opts.jsonLimitBytes ?? defaultJsonLimitBytes;
  const skewMs = authSkewMs();
  const gate: RequestGate = {
    log: opts.log,
    names: opts.names,
    admission,
    metrics: opts.metrics,
    inFlight: { count: 0, max: opts.maxInFlight ?? defaultMaxInFlight },
    replay: prunedReplayCache(skewMs),
    skewMs,
    jsonLimitFor: (path) => jsonLimits.get(path) ?? jsonLimitBytes,
    openPaths: new Set([...webPathsOf(opts), ...publicPathsOf(opts)]),
    guards: [],
    accessLog: opts.log.isLevelEnabled('debug'),
  };
  app.locals.gate = gate;
  if (opts.metrics) {
    app.use(opts.metrics.middleware());
    opts.metrics.admission(() => admission.stats);
  }
  // An access log at debug level (GFS_LOG_LEVEL=debug): one line per answered request.
  if (opts.log.isLevelEnabled('debug')) {
    app.use((req, res, next) => {
      const start = process.hrtime.bigint();
      res.once('close', () => opts.log.debug({ ...requestLogFields(req), status: res.statusCode, ms: Number(process.hrtime.bigint() - start) / 1e6 }, 'request'));
      next();
    });
  }
  app.use(inFlightLimit(gate));
  useAuthentication(app, opts, gate);
  // The request id a client gives its call (x-gfs-request-id): the master's retry cache keys mutations
  // by it (master/namespace.ts), and every log line written while serving the call carries it (shared/log.ts).
  app.use((req, _res, next) => {
    const rid = req.headers['x-gfs-request-id'];
    if (validRequestId(rid)) requestContext.run({ rid, mutations: 0 }, next);
    else next();
  });
  app.use(faultLayer(opts.names));
  const isRaw = opts.rawBody ?? (() => false);
  const parser = (limit: number) => express.json({ limit, verify: jsonDigestVerify });
  const defaultParser = parser(jsonLimitBytes);
  const parsers = new Map([...jsonLimits].map(([path, limit]) => [path, parser(limit)]));
  app.use((req, res, next) => {
    if (isRaw(req)) return next();
    (parsers.get(req.path) ?? defaultParser)(req, res, next);
  });
  app.use(unverifiedBodyCheck(isRaw));
  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  if (opts.metrics) app.get('/metrics', opts.metrics.handler());
  app.get('/admin/faults', (_req, res) => {
    res.json({ rules: getFaultRules() });
  });
  app.post(
    '/admin/faults',
    jsonRoute({ body: faultRulesSchema }, ({ body }) => {
      setFaultRules(body.rules);
      return { ok: true, rules: body.rules.length };
    }),
  );
  return app;
}

/** Call after all routes: 404 for unknown routes and the `{error, code}` error handler. */
export function finishApp(app: Express, log: Logger): void {
  app.use((req, res) => {
    res.status(404).json({ error: `no such endpoint: ${req.method} ${req.path}`, code: 'NOT_FOUND' });
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    sendError(res, err, log, req);
  });
}

/** The connection limits of an app made by makeApp: add known peers to it at run time (allowPeer). */
export function admissionOf(app: Express): Admission {
  const a = app.locals.admission as Admission | undefined;
  if (!a) throw new Error('admissionOf: app was not made by makeApp');
  return a;
}

/**
 * Listens with HTTPS when TLS is configured (shared/tls.ts), else plain HTTP; `scheme` says which.
 * `admission` is the app's connection limits (shared/admission.ts): call its allowPeer() as peers become known.
 */
export async function listen(app: Express, port: number, host: string, lean?: { handle(req: IncomingMessage, res: ServerResponse): boolean }): Promise<{ server: Server; port: number; scheme: 'http' | 'https'; admission: Admission }> {
  const admission = admissionOf(app);
  const tls = serverTlsOptions();
  // The lean router (shared/lean-router.ts) serves the hot routes it takes; express everything else.
  const handler = lean ? (req: IncomingMessage, res: ServerResponse) => void (lean.handle(req, res) || app(req, res)) : app;
  return new Promise((resolve, reject) => {
    // An https.Server has every member used here and by callers (close, closeAllConnections, timeouts);
    // node's typings just do not derive it from http.Server.
    const server = tls ? (createHttpsServer({ ...tls, minVersion: 'TLSv1.2' }, handler) as unknown as Server) : createHttpServer(handler);
    admission.attach(server);
    server.listen(port, host);
    server.once('error', reject);
    server.once('listening', () => {
      // Bounds on slow or silent peers: a new connection's first headers within
      // admission.firstHeadersMs (5 s), later ones within 30 s, a whole request
      // (a 64 MiB push included) within 5 min, and a socket with no traffic at
      // all is closed after 2 min. Pushes have a tighter idle timeout.
      // Connection counts are admission's (maxTotal, per address).
      server.keepAliveTimeout = 25_000;
      server.headersTimeout = 30_000;
      server.requestTimeout = Number(process.env.GFS_REQUEST_TIMEOUT_MS) || 300_000;
      server.timeout = 120_000;
      resolve({ server, port: (server.address() as AddressInfo).port, scheme: tls ? 'https' : 'http', admission });
    });
  });
}

export const intString = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a non-negative integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

export const boolString = z.enum(['0', '1', 'true', 'false']).transform((v) => v === '1' || v === 'true');
