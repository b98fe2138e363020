import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { GfsError } from './errors.js';

// Request authentication: every request between nodes and from clients is
// signed with a key derived from one cluster secret.
//
// Secret. Read from the file named by `--secret-file` (the CLI puts it in
// GFS_SECRET_FILE), else from GFS_SECRET_FILE, else the value of GFS_SECRET.
// At least 16 bytes. `gfs cluster up` writes a random one to DIR/secret. With
// no secret at all, authentication is OFF: daemons log a warning at start-up
// and accept anything (a trusted-network, single-user mode).
//
// Signature. The sender adds four headers to every request (shared/rpc.ts
// does it for every caller: client, master, chunkserver):
//   x-gfs-time            its wall clock, ms since the epoch
//   x-gfs-nonce           16 random bytes, base64url
//   x-gfs-content-sha256  hex sha256 of the exact body bytes (of '' without a body)
//   x-gfs-auth            hex HMAC-SHA256(key, canonical string)
// where the canonical string is these lines joined by '\n':
//   GFS1-HMAC-SHA256, METHOD, path+query exactly as sent, the body digest,
//   time, nonce, sender (x-gfs-from), and each other x-gfs-* header (e.g. the
//   push chain) as name:value, sorted by name.
// The body digest covers its length, so Content-Length need not be signed: a
// body of another length has another digest.
//
// Verification (server, before any body byte is read, so an unauthenticated
// request costs no memory): the HMAC must match (constant-time compare), the
// time must be within ±skew (30 s by default, GFS_AUTH_SKEW_MS) of the
// server's clock, and the nonce must not have been seen within that window.
// Seen nonces live in a bounded cache: when it is full the oldest entry is
// dropped and every request not newer than it is refused with a retryable
// 503 (it could be a replay of the dropped nonce), so the bound never opens
// a replay hole. Failures get 401 {code: 'UNAUTHENTICATED'}, nothing runs.
//
// Bodies. A JSON body is at most a few MiB and is buffered by the JSON
// parser anyway: its sha256 is checked there, before it is parsed and long
// before a handler runs. A data push (up to a 64 MiB chunk, PUT /push/:id) is
// never buffered for authentication: the signature covers the digest header,
// the push handler hashes the body as it streams through (and on to the next
// hop, which checks the same signed digest again) and, if the digest of the
// bytes received differs, discards them: pushed data only becomes usable when
// it enters the push buffer at the very end, and only a later, separately
// signed mutation request writes it into a chunk. A hop forwarding a push
// signs its own request but carries the original digest, which it cannot
// know in advance and need not: the bytes it forwards are the ones it checks.
//
// Answers are not signed: on an untrusted network an on-path attacker could
// still forge or read replies. Authentication keeps strangers from reading
// or changing data through the API; confidentiality needs TLS.

export const authHeader = {
  from: 'x-gfs-from',
  time: 'x-gfs-time',
  nonce: 'x-gfs-nonce',
  digest: 'x-gfs-content-sha256',
  signature: 'x-gfs-auth',
} as const;

const scheme = 'GFS1-HMAC-SHA256';
const ownHeaders = new Set<string>(Object.values(authHeader));
const nonceRe = /^[A-Za-z0-9_-]{16,64}$/;
const digestRe = /^[0-9a-f]{64}$/;
const signatureRe = /^[0-9a-f]{64}$/;
const minSecretBytes = 16;

export function sha256Hex(data: string | Buffer | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export const emptySha256 = sha256Hex('');

// ---- the secret ----

let cached: { key: Buffer | undefined; source: string } | undefined;

/** Derives the signing key, so the raw secret is never used as a key for anything else. */
export function keyFromSecret(secret: string | Buffer): Buffer {
  const s = typeof secret === 'string' ? Buffer.from(secret.trim()) : secret;
  if (s.length < minSecretBytes) throw new Error(`the cluster secret must be at least ${minSecretBytes} bytes`);
  return createHmac('sha256', s).update('gfs request signing v1').digest();
}

function load(): { key: Buffer | undefined; source: string } {
  const file = process.env.GFS_SECRET_FILE;
  if (file) {
    let raw: Buffer;
    try {
      raw = readFileSync(file);
    } catch (e) {
      throw new Error(`cannot read the cluster secret file ${file}: ${(e as Error).message}`);
    }
    const trimmed = Buffer.from(raw.toString('utf8').trim());
    return { key: keyFromSecret(trimmed), source: `file ${file}` };
  }
  const env = process.env.GFS_SECRET;
  if (env) return { key: keyFromSecret(env), source: 'GFS_SECRET' };
  return { key: undefined, source: 'none' };
}

/** The signing key, or undefined when no secret is configured (authentication off). Read once, lazily. */
export function clusterKey(): Buffer | undefined {
  cached ??= load();
  return cached.key;
}

export function authEnabled(): boolean {
  return clusterKey() !== undefined;
}

/** Where the secret came from, for start-up logs. */
export function secretSource(): string {
  clusterKey();
  return cached!.source;
}

/** Forget the cached key (after changing GFS_SECRET* in tests). */
export function reloadSecret(): void {
  cached = undefined;
}

/** 32 random bytes as hex: what `gfs cluster up` writes to DIR/secret. */
export function newSecret(): string {
  return randomBytes(32).toString('hex');
}

// ---- signing ----

export interface SignInput {
  method: string;
  /** Path and query exactly as sent, e.g. `/chunk/read?handle=...&offset=0`. */
  target: string;
  bodySha256: string;
  from: string;
  /** Other x-gfs-* headers of the request (covered by the signature). */
  headers?: Record<string, string>;
  timeMs?: number;
  nonce?: string;
}

function extraLines(headers: Record<string, string | string[] | undefined>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(headers)) {
    const name = k.toLowerCase();
    if (!name.startsWith('x-gfs-') || ownHeaders.has(name) || v === undefined) continue;
    out.push(`${name}:${Array.isArray(v) ? v.join(', ') : v}`);
  }
  return out.sort();
}

export function canonicalString(method: string, target: string, bodySha256: string, timeMs: string, nonce: string, from: string, extra: string[]): string {
  return [scheme, method.toUpperCase(), target, bodySha256, timeMs, nonce, from, ...extra].join('\n');
}

/** The auth headers for a request, signed with `key` (tests pass their own key to forge). */
export function signWith(key: Buffer, i: SignInput): Record<string, string> {
  const timeMs = String(i.timeMs ?? Date.now());
  const nonce = i.nonce ?? randomBytes(16).toString('base64url');
  const canonical = canonicalString(i.method, i.target, i.bodySha256, timeMs, nonce, i.from, extraLines(i.headers ?? {}));
  return {
    [authHeader.time]: timeMs,
    [authHeader.nonce]: nonce,
    [authHeader.digest]: i.bodySha256,
    [authHeader.signature]: createHmac('sha256', key).update(canonical).digest('hex'),
  };
}

/** Auth headers with the cluster key; none when authentication is off. */
export function signRequest(i: SignInput): Record<string, string> {
  const key = clusterKey();
  return key ? signWith(key, i) : {};
}

/** Path and query of a URL as undici sends them. */
export function targetOf(url: string): string {
  const u = new URL(url);
  return u.pathname + u.search;
}

// ---- verification ----

/** Recently seen nonces, bounded; see the top of this file for why a full cache refuses old requests. */
export class ReplayCache {
  private readonly seen = new Map<string, number>();
  /** Requests signed at or before this time are refused: their nonce may have been evicted. */
  private floorMs = 0;

  constructor(
    readonly maxEntries: number,
    readonly windowMs: number,
  ) {}

  get size(): number {
    return this.seen.size;
  }

  /** 'ok' (and remembers the nonce), 'replay', or 'evicted' (too old to tell). */
  check(nonce: string, timeMs: number, nowMs: number): 'ok' | 'replay' | 'evicted' {
    if (this.seen.has(nonce)) return 'replay';
    if (timeMs <= this.floorMs) return 'evicted';
    if (this.seen.size >= this.maxEntries) this.prune(nowMs);
    while (this.seen.size >= this.maxEntries) {
      const [oldest, t] = this.seen.entries().next().value!;
      this.seen.delete(oldest);
      this.floorMs = Math.max(this.floorMs, t);
      if (timeMs <= this.floorMs) return 'evicted';
    }
    this.seen.set(nonce, timeMs);
    return 'ok';
  }

  /** Drops nonces whose time is outside the window: a replay of them fails the time check anyway. */
  prune(nowMs: number): void {
    const cutoff = nowMs - this.windowMs;
    for (const [n, t] of this.seen) if (t < cutoff) this.seen.delete(n);
  }
}

export interface VerifyOptions {
  key: Buffer;
  skewMs: number;
  replay: ReplayCache;
  nowMs?: number;
}

export interface Verified {
  from: string;
  bodySha256: string;
}

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return typeof v === 'string' ? v : undefined;
}

/** Checks a request's signature, time and nonce; throws GfsError UNAUTHENTICATED (or a retryable UNAVAILABLE). */
export function verifyRequest(req: { method: string; target: string; headers: IncomingHttpHeaders }, o: VerifyOptions): Verified {
  const sig = header(req.headers, authHeader.signature);
  const from = header(req.headers, authHeader.from);
  const time = header(req.headers, authHeader.time);
  const nonce = header(req.headers, authHeader.nonce);
  const digest = header(req.headers, authHeader.digest);
  if (sig === undefined || from === undefined || time === undefined || nonce === undefined || digest === undefined)
    throw new GfsError('UNAUTHENTICATED', 'missing credentials: this cluster needs its secret (--secret-file, GFS_SECRET_FILE or GFS_SECRET)');
  if (!signatureRe.test(sig) || !/^\d{1,16}$/.test(time) || !nonceRe.test(nonce) || !digestRe.test(digest) || from.length > 200)
    throw new GfsError('UNAUTHENTICATED', 'malformed credentials');
  const canonical = canonicalString(req.method, req.target, digest, time, nonce, from, extraLines(req.headers));
  const want = createHmac('sha256', o.key).update(canonical).digest();
  if (!timingSafeEqual(want, Buffer.from(sig, 'hex'))) throw new GfsError('UNAUTHENTICATED', 'bad signature (wrong cluster secret?)');
  const nowMs = o.nowMs ?? Date.now();
  const timeMs = Number(time);
  if (Math.abs(nowMs - timeMs) > o.skewMs) throw new GfsError('UNAUTHENTICATED', `request signed ${nowMs - timeMs} ms away from this node's clock (limit ${o.skewMs} ms)`);
  const r = o.replay.check(nonce, timeMs, nowMs);
  if (r === 'replay') throw new GfsError('UNAUTHENTICATED', 'replayed request (nonce already used)');
  if (r === 'evicted') throw new GfsError('UNAVAILABLE', 'request too old for the replay cache under this load; retry', { retryAfterMs: 100 });
  return { from, bodySha256: digest };
}

// ---- express glue ----

export interface AuthedRequest extends Request {
  gfsAuth?: Verified & { bodyVerified?: boolean };
}

export interface AuthMiddlewareOptions {
  /** Paths served without credentials (GET only). */
  publicPaths: ReadonlySet<string>;
  /** Requests let through without a signature because they carry other credentials (the web token, shared/webauth.ts). */
  otherwiseAllowed?: (req: Request) => boolean;
  skewMs?: number;
  replayEntries?: number;
}

/**
 * Verifies credentials of every request before anything else reads it. A
 * no-op when no secret is configured. Bodies are checked later: JSON by
 * jsonDigestVerify, pushes by the push handler.
 */
export function authMiddleware(o: AuthMiddlewareOptions) {
  const skewMs = o.skewMs ?? (Number(process.env.GFS_AUTH_SKEW_MS) || 30_000);
  const replay = new ReplayCache(o.replayEntries ?? 200_000, skewMs);
  const pruner = setInterval(() => replay.prune(Date.now()), Math.max(1_000, skewMs));
  pruner.unref();
  return (req: Request, res: Response, next: NextFunction): void => {
    const key = clusterKey();
    if (!key) return next();
    if (req.method === 'GET' && o.publicPaths.has(req.path)) return next();
    if (o.otherwiseAllowed?.(req)) return next();
    try {
      (req as AuthedRequest).gfsAuth = verifyRequest({ method: req.method, target: req.originalUrl, headers: req.headers }, { key, skewMs, replay });
      next();
    } catch (e) {
      // The body was never read: close the connection rather than drain it.
      res.setHeader('connection', 'close');
      if (e instanceof GfsError && e.code === 'UNAUTHENTICATED') res.setHeader('www-authenticate', scheme);
      next(e);
    }
  };
}

/** express.json `verify` hook: the raw JSON body must match the signed digest. */
export function jsonDigestVerify(req: Request, _res: Response, buf: Buffer): void {
  const a = (req as AuthedRequest).gfsAuth;
  if (!a) return;
  if (sha256Hex(buf) !== a.bodySha256) throw new GfsError('UNAUTHENTICATED', 'body does not match its signed digest');
  a.bodyVerified = true;
}

/** True when the request carries a body (a length above 0, or chunked). */
export function hasBody(req: Request): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const len = req.headers['content-length'];
  return len !== undefined && len !== '0';
}

/** After JSON parsing: a signed request whose body nobody checked must have had none. */
export function unverifiedBodyCheck(isRawBody: (req: Request) => boolean) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const a = (req as AuthedRequest).gfsAuth;
    if (!a || a.bodyVerified || isRawBody(req)) return next();
    if (hasBody(req)) {
      res.setHeader('connection', 'close');
      return next(new GfsError('BAD_REQUEST', 'request body must be JSON (content-type: application/json)'));
    }
    if (a.bodySha256 !== emptySha256) return next(new GfsError('UNAUTHENTICATED', 'body does not match its signed digest'));
    next();
  };
}
