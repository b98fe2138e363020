import type { Express, RequestHandler } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import type { z } from 'zod';
import { Admission } from './admission.js';
import { authScheme, clusterKey, emptySha256, sha256Hex, verifyRequest, type SignedMessage } from './auth.js';
import { GfsError } from './errors.js';
import { faultFor } from './fault.js';
import { binaryRoute, errorOf, gateOf, jsonRoute, lingerBeforeClose, parseOr400, readSignedBody, takeInFlight, validRequestId, type RequestGate } from './http.js';
import { requestContext } from './log.js';

// The hot routes (a chunk mutation, a stat, a create) served on plain
// node:http, before express: the same checks in the same order as the
// express middleware of shared/http.ts makeApp — in-flight limit, admission
// (an address failing authentication too often), signature, time and nonce
// (the one nonce cache the express path uses too), request id context, fault
// layer, body limit and signed digest, the role's guards (epoch fences),
// zod validation — and the same answers (`{error, code}`, status, headers),
// without express's router walk, its per-request req/res decoration,
// body-parser's stream plumbing and content-type parsing. About 1 ms of CPU
// per request went there (issues 16, 17).
//
// It takes only a request in the shape a gfs client sends: the exact path and
// method of a route, content-type application/json (or no body at all) for a
// JSON route, application/octet-stream for a binary one, no chunked body, no
// access log (debug level). Anything else (a trailing slash, HEAD, another
// content type) is left untouched to express, where every route is mounted
// too (jsonRoute, binaryRoute; one path may take both encodings, told apart
// by content type as before), so an odd request meets exactly the old
// behaviour.

export interface LeanJsonInput<B, Q> {
  body: B;
  query: Q;
  req: IncomingMessage;
  res: ServerResponse;
}

export interface LeanBinaryInput<H> {
  headers: H;
  body: Buffer;
  req: IncomingMessage;
  res: ServerResponse;
}

type Method = 'GET' | 'POST';

interface Route {
  method: Method;
  path: string;
  kind: 'json' | 'binary';
  /** Serves the request once the shared checks passed: body read and checked (binary) or parsed (JSON). */
  serve(req: SignedMessage, res: ServerResponse, rawQuery: string): Promise<unknown>;
  limitBytes: number;
}

const jsonType = 'application/json';
const binaryType = 'application/octet-stream';
const utf8Bom = Buffer.from([0xef, 0xbb, 0xbf]);

export class LeanRouter {
  /** By `METHOD path` for JSON routes, `BINARY path` for binary ones. */
  private readonly routes = new Map<string, Route>();
  /** The express mounts of the same routes, by `METHOD path`: a JSON and a binary handler may share one. */
  private readonly mounts = new Map<string, { json?: RequestHandler; binary?: RequestHandler }>();
  private readonly gate: RequestGate;
  /** Requests this router served (for tests: a hot route really went the lean way). */
  served = 0;

  /** Routes of an app made by makeApp (shared/http.ts): mounted on it too, and sharing its checks. */
  constructor(private readonly app: Express) {
    this.gate = gateOf(app);
  }

  /** A JSON route: body and query validated with zod, the handler's result sent as JSON (as jsonRoute in shared/http.ts). */
  json<B, Q>(method: Method, path: string, schemas: { body?: z.ZodType<B>; query?: z.ZodType<Q> }, handler: (input: LeanJsonInput<B, Q>) => Promise<unknown> | unknown): void {
    this.mount(method, path).json = jsonRoute(schemas, handler);
    this.add(`${method} ${path}`, {
      method,
      path,
      kind: 'json',
      limitBytes: this.gate.jsonLimitFor(path),
      serve: async (req, res, rawQuery) => {
        const raw = await readJsonBody(req, this.gate.jsonLimitFor(path));
        this.runGuards(req, res);
        const body = schemas.body ? parseOr400(schemas.body, raw ?? {}) : (undefined as B);
        const query = schemas.query ? parseOr400(schemas.query, parseQuery(rawQuery)) : (undefined as Q);
        return handler({ body, query, req, res });
      },
    });
  }

  /** A binary route (shared/record-wire.ts): control headers validated, the body read whole (as binaryRoute in shared/http.ts). */
  binary<H>(path: string, schemas: { headers: z.ZodType<H>; limitBytes: number }, handler: (input: LeanBinaryInput<H>) => Promise<unknown> | unknown): void {
    this.mount('POST', path).binary = binaryRoute(schemas, handler);
    this.add(`BINARY ${path}`, {
      method: 'POST',
      path,
      kind: 'binary',
      limitBytes: schemas.limitBytes,
      serve: async (req, res) => {
        // Before the body, as in express, where a binary body is left to its route (after the guards).
        this.runGuards(req, res);
        let body: Buffer;
        try {
          body = await readSignedBody(req, schemas.limitBytes);
        } catch (e) {
          // As binaryRoute: refused before reading, the connection closes after a linger that reads what comes.
          res.setHeader('connection', 'close');
          if (e instanceof GfsError && (e.status === 411 || e.code === 'PAYLOAD_TOO_LARGE')) lingerBeforeClose(req, 5_000);
          throw e;
        }
        const headers = parseOr400(schemas.headers, req.headers);
        return handler({ headers, body, req, res });
      },
    });
  }

  private add(key: string, r: Route): void {
    if (this.gate.openPaths.has(r.path)) throw new Error(`${r.path} is served without a signature; the lean router takes signed routes only`);
    if (this.routes.has(key)) throw new Error(`lean route ${key} defined twice`);
    this.routes.set(key, r);
  }

  /** The express mount of a path: its binary handler for an octet-stream body (or when it has no JSON one), else its JSON one. */
  private mount(method: Method, path: string): { json?: RequestHandler; binary?: RequestHandler } {
    const key = `${method} ${path}`;
    let m = this.mounts.get(key);
    if (m) return m;
    const mounted: { json?: RequestHandler; binary?: RequestHandler } = {};
    const h: RequestHandler = (req, res, next) => ((mounted.binary && (!mounted.json || req.headers['content-type'] === binaryType) ? mounted.binary : mounted.json!)(req, res, next));
    if (method === 'GET') this.app.get(path, h);
    else this.app.post(path, h);
    this.mounts.set(key, mounted);
    return mounted;
  }

  /** Takes the request (true) when it is one of its routes in the shape it serves; false leaves it, untouched, to express. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    if (this.gate.accessLog) return false;
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const route = this.routes.get(req.method === 'POST' && req.headers['content-type'] === binaryType ? `BINARY ${path}` : `${req.method} ${path}`);
    if (!route || !takesShape(route, req)) return false;
    this.served++;
    void this.run(route, req as SignedMessage, res, q < 0 ? '' : url.slice(q + 1));
    return true;
  }

  private async run(route: Route, req: SignedMessage, res: ServerResponse, rawQuery: string): Promise<void> {
    const start = process.hrtime.bigint();
    // The metrics' op is the route once the shared checks let the request reach it ('none' before), as express's req.route.
    let op = 'none';
    const metrics = this.gate.metrics;
    if (metrics) res.once('close', () => metrics.observeRequest(op, route.method, res.statusCode, Number(process.hrtime.bigint() - start) / 1e9));
    try {
      takeInFlight(this.gate, res);
      this.authenticate(req, res);
      const rid = req.headers['x-gfs-request-id'];
      const ctx = validRequestId(rid) ? { rid, mutations: 0 } : undefined;
      if (await this.faulted(req)) return;
      op = route.path;
      const out = ctx ? await requestContext.run(ctx, () => route.serve(req, res, rawQuery)) : await route.serve(req, res, rawQuery);
      if (!res.headersSent) sendJson(res, 200, out ?? { ok: true });
    } catch (e) {
      const err = errorOf(e, this.gate.log, () => ({ op: `${route.method} ${route.path}` }));
      if (res.headersSent) res.destroy();
      else sendJson(res, err.status, err.toJSON());
    }
  }

  /** Signature, time and nonce (shared/auth.ts), behind the admission check, as useAuthentication in shared/http.ts. */
  private authenticate(req: SignedMessage, res: ServerResponse): void {
    const admission: Admission = this.gate.admission;
    const addr = req.socket.remoteAddress ?? 'unknown';
    if (!admission.mayAuthenticate(addr)) {
      res.setHeader('connection', 'close');
      throw new GfsError('TOO_BUSY', 'too many unauthenticated requests from this address; slow down', { retryAfterMs: 1_000 });
    }
    const key = clusterKey();
    if (!key) return;
    try {
      req.gfsAuth = verifyRequest({ method: req.method!, target: req.url!, headers: req.headers }, { key, skewMs: this.gate.skewMs, replay: this.gate.replay });
    } catch (e) {
      res.setHeader('connection', 'close');
      if (e instanceof GfsError && e.code === 'UNAUTHENTICATED') {
        res.setHeader('www-authenticate', authScheme);
        admission.authFailed(addr);
      }
      throw e;
    }
  }

  /** The fault layer (shared/fault.ts): true when the request is dropped (its socket destroyed); a delay is waited out. */
  private async faulted(req: IncomingMessage): Promise<boolean> {
    const from = req.headers['x-gfs-from'];
    if (typeof from !== 'string') return false;
    const f = faultFor(from, this.gate.names());
    if (f.drop) {
      req.socket.destroy();
      return true;
    }
    if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
    return false;
  }

  private runGuards(req: IncomingMessage, res: ServerResponse): void {
    for (const g of this.gate.guards) g(req, res);
  }
}

/** The request shapes a gfs client sends (see the top of this file); others go to express. */
function takesShape(route: Route, req: IncomingMessage): boolean {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return false;
  if (route.kind === 'binary') return h['content-type'] === binaryType;
  // A JSON route: no body at all, or a JSON one with its length.
  return h['content-length'] === undefined || h['content-type'] === jsonType;
}

/**
 * A JSON body as express.json with jsonDigestVerify reads it: bounded (413 'request body too large',
 * answered once the body has gone by), checked against the signed digest, parsed strictly (an object
 * or an array). No body at all: undefined, and a signed request must then have signed the empty digest.
 */
async function readJsonBody(req: SignedMessage, limitBytes: number): Promise<unknown> {
  const auth = req.gfsAuth;
  const lenHeader = req.headers['content-length'];
  if (lenHeader === undefined) {
    if (auth && auth.bodySha256 !== emptySha256) throw new GfsError('UNAUTHENTICATED', 'body does not match its signed digest');
    return undefined;
  }
  const len = Number(lenHeader);
  if (!/^\d+$/.test(lenHeader)) throw new GfsError('BAD_REQUEST', 'bad Content-Length');
  if (len > limitBytes) {
    await drained(req);
    throw new GfsError('PAYLOAD_TOO_LARGE', 'request body too large');
  }
  let buf = await readWhole(req, len);
  if (auth) {
    if (sha256Hex(buf) !== auth.bodySha256) throw new GfsError('UNAUTHENTICATED', 'body does not match its signed digest');
    auth.bodyVerified = true;
  }
  if (buf.length === 0) return {};
  if (buf.subarray(0, 3).equals(utf8Bom)) buf = buf.subarray(3);
  const text = buf.toString('utf8');
  const first = /^[\x20\x09\x0a\x0d]*(.)/.exec(text)?.[1];
  if (first !== '{' && first !== '[') throw new GfsError('BAD_REQUEST', 'malformed JSON body');
  try {
    return JSON.parse(text);
  } catch {
    throw new GfsError('BAD_REQUEST', 'malformed JSON body');
  }
}

/** Exactly len bytes of body (node's parser has already bounded it by the Content-Length). */
function readWhole(req: IncomingMessage, len: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    req.on('data', (c: Buffer) => {
      parts.push(c);
      got += c.length;
    });
    req.once('end', () => (got === len ? resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, got)) : reject(new GfsError('BAD_REQUEST', 'request aborted'))));
    req.once('aborted', () => reject(new GfsError('BAD_REQUEST', 'request aborted')));
    req.once('error', (e) => reject(new GfsError('BAD_REQUEST', `request failed: ${e.message}`)));
  });
}

/** Resolves once the body has been read and dropped (or the request ended otherwise). */
function drained(req: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    if (req.complete) return resolve();
    req.once('end', resolve);
    req.once('close', resolve);
    req.resume();
  });
}

/** Sends a JSON answer as express's res.json does (content type, length). */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
}
