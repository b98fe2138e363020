import { createCipheriv, createHash, createHmac, randomBytes, timingSafeEqual, type CipherGCM } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { GfsError } from './errors.js';
import { pooledRandomBytes } from './random-pool.js';

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
//   x-gfs-content-sha256  hex sha256 of the exact body bytes (of '' without a body),
//                         or 'gmac' for a push whose body carries a MAC (Bodies, below)
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
// before a handler runs. A data push (up to a 64 MiB chunk, PUT /push/:id)
// is never buffered for authentication and is not hashed with sha256 (about
// 0.7 ms of CPU per MB, paid at every hop): its body is bound to the request
// by a MAC instead, GMAC (AES-256-GCM with the body as additional data and no
// plaintext, about 0.15 ms per MB with AES-NI/PCLMUL):
//   x-gfs-content-sha256  the literal bodyMacDigest ('gmac') instead of a hex digest
//   x-gfs-body-mac        gmac1.<iv>.<tag>: a fresh random 96-bit IV and the
//                         128-bit tag of the body under bodyMacKey, base64url
// Both headers are under the request's HMAC like every x-gfs-* header. The
// MAC key is derived from the cluster secret separately from the signing key
// (HMAC-SHA256(signing key, 'gfs push body mac v1')), so neither key is used
// for two purposes. The push handler feeds every byte to the GMAC as it
// streams (and on to the next hop, which checks the same tag again: the
// client's tag travels the whole chain) and, if the tag of the bytes received
// differs, discards them: pushed data only becomes usable when it enters the
// push buffer at the very end, and only a later, separately signed mutation
// request writes it into a chunk.
// Why this is sound. GMAC is a MAC (a PRF-based universal hash, keyed and
// masked per IV): without the key nobody can produce a tag for other bytes,
// and one observed (body, tag) pair says nothing about the tag of another
// body under another IV. Its one trap is IV reuse (two tags under one key and
// IV give away the hash key): every push draws its IV from randomBytes, so a
// collision is a birthday event over 96 bits (below 2^-32 after 2^32 pushes,
// NIST SP 800-38D's bound for random IVs). What an attacker on the path can
// do: see the data (confidentiality needs TLS), drop or delay a push, or cut
// it short (the hop then has too few bytes or a bad tag and keeps nothing).
// What it cannot: change any byte of a push, splice bodies and tags between
// pushes (the tag header is under the request's HMAC, with its nonce and
// time), or replay a whole push (the nonce cache refuses it; a replayed data
// id would also find its id taken). A request signed with a hex digest (an
// older client) still works: its body is then checked against the sha256.
// Separately from authentication, the client's crc32c of every 64 KiB block
// travels with the push (x-gfs-block-crcs) and each hop checks it against the
// bytes as they arrive: the MAC is about forgery, the crcs about damage, and
// the crcs are what the chunk keeps (chunkserver/push.ts).

// Answers are not signed: on an untrusted network an on-path attacker could
// still forge or read replies. Authentication keeps strangers from reading
// or changing data through the API; confidentiality needs TLS.

export const authHeader = {
  from: 'x-gfs-from',
  time: 'x-gfs-time',
  nonce: 'x-gfs-nonce',
  digest: 'x-gfs-content-sha256',
  signature: 'x-gfs-auth',
  bodyMac: 'x-gfs-body-mac',
} as const;

/** The x-gfs-content-sha256 value of a request whose body is bound by x-gfs-body-mac instead (see Bodies above). */
export const bodyMacDigest = 'gmac';

const scheme = 'GFS1-HMAC-SHA256';
/** The www-authenticate value of a refused request. */
export const authScheme = scheme;
/** Headers that are parts of the canonical string themselves; every other x-gfs-* header (the body MAC too) is an extra line. */
const ownHeaders = new Set<string>([authHeader.from, authHeader.time, authHeader.nonce, authHeader.digest, authHeader.signature]);
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

// ---- body MAC (GMAC), for pushed data ----

let macKeyCache: { signing: Buffer; mac: Buffer } | undefined;

/** The body MAC key: derived from the signing key for this one purpose; undefined when authentication is off. */
export function bodyMacKey(): Buffer | undefined {
  const k = clusterKey();
  if (!k) return undefined;
  if (macKeyCache?.signing !== k) macKeyCache = { signing: k, mac: createHmac('sha256', k).update('gfs push body mac v1').digest() };
  return macKeyCache.mac;
}

const bodyMacRe = /^gmac1\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22})$/;

/** GMAC of a body fed in pieces (any split gives the same tag). */
export class BodyMac {
  private readonly gcm: CipherGCM;

  constructor(key: Buffer, readonly iv: Buffer) {
    this.gcm = createCipheriv('aes-256-gcm', key, iv);
  }

  update(piece: Buffer): void {
    this.gcm.setAAD(piece);
  }

  tag(): Buffer {
    this.gcm.final();
    return this.gcm.getAuthTag();
  }
}

/** The x-gfs-body-mac value for a body held whole, with a fresh random IV; undefined when authentication is off. */
export function macBody(body: Buffer, key = bodyMacKey()): string | undefined {
  if (!key) return undefined;
  const iv = randomBytes(12);
  const m = new BodyMac(key, iv);
  m.update(body);
  return `gmac1.${iv.toString('base64url')}.${m.tag().toString('base64url')}`;
}

/** A verifier for a received x-gfs-body-mac header: feed the body, then check(). Throws UNAUTHENTICATED on a malformed header. */
export function bodyMacVerifier(header: string | undefined, key: Buffer): { update(piece: Buffer): void; check(): boolean } {
  const m = header === undefined ? null : bodyMacRe.exec(header);
  if (!m) throw new GfsError('UNAUTHENTICATED', `a body signed as '${bodyMacDigest}' needs a well-formed ${authHeader.bodyMac} header`);
  const want = Buffer.from(m[2]!, 'base64url');
  const mac = new BodyMac(key, Buffer.from(m[1]!, 'base64url'));
  return {
    update: (piece) => mac.update(piece),
    check: () => timingSafeEqual(mac.tag(), want),
  };
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

/** 16 fresh random bytes as base64url (22 characters), from the pool (shared/random-pool.ts). */
export function newNonce(): string {
  return pooledRandomBytes(16).toString('base64url');
}

/** The auth headers for a request, signed with `key` (tests pass their own key to forge). */
export function signWith(key: Buffer, i: SignInput): Record<string, string> {
  const timeMs = String(i.timeMs ?? Date.now());
  const nonce = i.nonce ?? newNonce();
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
  if (!signatureRe.test(sig) || !/^\d{1,16}$/.test(time) || !nonceRe.test(nonce) || !(digestRe.test(digest) || digest === bodyMacDigest) || from.length > 200)
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

/** A request as node gives it, with what verification found (both request paths, shared/lean-router.ts too). */
export type SignedMessage = IncomingMessage & { gfsAuth?: Verified & { bodyVerified?: boolean } };

export interface AuthMiddlewareOptions {
  /** Paths served without credentials (GET only). */
  publicPaths: ReadonlySet<string>;
  /** Requests let through without a signature because they carry other credentials (the web token, shared/webauth.ts). */
  otherwiseAllowed?: (req: Request) => boolean;
  skewMs?: number;
  replayEntries?: number;
  /** The nonce cache, when another request path of the same server shares it (shared/lean-router.ts): a nonce is then refused on either. */
  replay?: ReplayCache;
}

/** Allowed clock difference between a request's signer and its verifier. */
export function authSkewMs(): number {
  return Number(process.env.GFS_AUTH_SKEW_MS) || 30_000;
}

/** A replay cache for requests signed within skewMs, pruned in the background (the timer does not hold the process). */
export function prunedReplayCache(skewMs: number, entries = 200_000): ReplayCache {
  const replay = new ReplayCache(entries, skewMs);
  const pruner = setInterval(() => replay.prune(Date.now()), Math.max(1_000, skewMs));
  pruner.unref();
  return replay;
}

/**
 * Verifies credentials of every request before anything else reads it. A
 * no-op when no secret is configured. Bodies are checked later: JSON by
 * jsonDigestVerify, pushes by the push handler.
 */
export function authMiddleware(o: AuthMiddlewareOptions) {
  const skewMs = o.skewMs ?? authSkewMs();
  const replay = o.replay ?? prunedReplayCache(skewMs, o.replayEntries);
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
