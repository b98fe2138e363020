import { Agent, request, type Dispatcher } from 'undici';
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { z } from 'zod';
import { GfsError, type ErrorCode } from './errors.js';
import { faultFor } from './fault.js';
import { defaults } from './config.js';
import { trustedCa } from './tls.js';
import { authEnabled, authHeader, bodyMacDigest, emptySha256, sha256Hex, signRequest, targetOf } from './auth.js';

// Every outbound request of every node goes through here: one keep-alive
// pool per process, explicit timeouts, errors turned into GfsError, and the
// fault layer consulted before anything is sent.

let self = 'client';
export function setRpcSelf(name: string): void {
  self = name;
}
export function rpcSelf(): string {
  return self;
}

/** Headers every request of this process carries (a master's epoch: x-gfs-epoch, see master/replicas.ts). */
const processHeaders: Record<string, string> = {};
export function setRpcHeader(name: string, value: string): void {
  processHeaders[name] = value;
}

// Made on first use, so a CLI that sets GFS_TLS_CA from --tls-ca (shared/tls.ts) before its first call is heard.
let agentInstance: Agent | undefined;
function agent(): Agent {
  if (agentInstance) return agentInstance;
  const ca = trustedCa();
  agentInstance = new Agent({
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 60_000,
    connections: 128,
    pipelining: 1,
    // https:// peers are always verified; a private cluster CA replaces the system roots.
    connect: ca ? { ca } : undefined,
  });
  return agentInstance;
}

export interface RpcOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  query?: Record<string, string | number | boolean | undefined>;
  timeoutMs?: number;
  /** Names the target is known by in fault rules (its node id); its URL always counts. */
  targetName?: string;
  headers?: Record<string, string>;
  /** Sees the answer's headers (rpcJson), e.g. the epoch a master answered with. */
  onHeaders?: (headers: Record<string, string | string[] | undefined>) => void;
}

/** Adds the auth headers (shared/auth.ts) to a request about to leave; nothing when auth is off. */
function sign(method: string, url: string, headers: Record<string, string>, bodySha256: string): void {
  if (!authEnabled()) return;
  Object.assign(headers, signRequest({ method, target: targetOf(url), bodySha256, from: headers['x-gfs-from'] ?? self, headers }));
}

function buildUrl(base: string, path: string, query?: RpcOptions['query']): string {
  let url = base.replace(/\/+$/, '') + path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) qs.set(k, String(v));
    const s = qs.toString();
    if (s) url += '?' + s;
  }
  return url;
}

async function applyFault(base: string, opts: RpcOptions): Promise<void> {
  const names = opts.targetName ? [opts.targetName, base] : [base];
  const f = faultFor(self, names);
  if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
  if (f.drop) throw new GfsError('UNAVAILABLE', `${base}: dropped by fault layer`, { fault: true });
}

async function errorFrom(res: Dispatcher.ResponseData, url: string): Promise<GfsError> {
  let text = '';
  try {
    text = await res.body.text();
  } catch {
    /* body lost with the connection */
  }
  try {
    const j = JSON.parse(text) as { error?: string; code?: string };
    if (j && typeof j.error === 'string' && typeof j.code === 'string') {
      const { error, code, ...rest } = j as Record<string, unknown>;
      return new GfsError(code as ErrorCode, error as string, rest, res.statusCode);
    }
  } catch {
    /* not JSON */
  }
  return new GfsError(res.statusCode >= 500 ? 'UNAVAILABLE' : 'BAD_REQUEST', `${url}: HTTP ${res.statusCode} ${text.slice(0, 200)}`, undefined, res.statusCode);
}

function networkError(e: unknown, url: string): GfsError {
  if (e instanceof GfsError) return e;
  const err = e as { code?: string; message?: string; name?: string };
  const timedOut = err.name === 'HeadersTimeoutError' || err.name === 'BodyTimeoutError' || err.code === 'UND_ERR_HEADERS_TIMEOUT' || err.code === 'UND_ERR_BODY_TIMEOUT' || err.name === 'TimeoutError' || err.name === 'AbortError';
  // A certificate the peer's CA does not vouch for: say how to trust a private cluster CA (shared/tls.ts).
  const badCert = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(err.code ?? '');
  const hint = badCert ? ' (is GFS_TLS_CA / --tls-ca set to the cluster\'s CA?)' : '';
  return new GfsError(timedOut ? 'TIMEOUT' : 'UNAVAILABLE', `${url}: ${err.code ?? err.name ?? 'error'} ${err.message ?? ''}`.trim() + hint);
}

/** A request body ready to send: JSON text, or raw bytes (shared/record-wire.ts). */
type Payload = { type: 'application/json'; data: string } | { type: 'application/octet-stream'; data: Buffer } | undefined;

/** JSON request; the answer is validated with `schema` when given. */
export function rpcJson<T = unknown>(base: string, path: string, body?: unknown, opts: RpcOptions = {}, schema?: z.ZodType<T>): Promise<T> {
  return rpcSend(base, path, body === undefined ? undefined : { type: 'application/json', data: JSON.stringify(body) }, opts, schema);
}

/** A request with a small binary body (control fields in x-gfs-* headers, signed) and a JSON answer. */
export function rpcBinary<T = unknown>(base: string, path: string, body: Buffer, opts: RpcOptions = {}): Promise<T> {
  return rpcSend(base, path, { type: 'application/octet-stream', data: body }, opts);
}

async function rpcSend<T>(base: string, path: string, payload: Payload, opts: RpcOptions, schema?: z.ZodType<T>): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? defaults.rpcTimeoutMs;
  const f = faultFor(self, opts.targetName ? [opts.targetName, base] : [base]);
  if (f.delayMs > timeoutMs && !f.drop) {
    // A link this slow: the sender gives up at its timeout, but the request
    // still arrives, late (as a slow network delivers it), so receivers meet
    // requests their senders have written off.
    setTimeout(() => void sendJson(base, path, payload, opts, timeoutMs).catch(() => undefined), f.delayMs).unref();
    await new Promise((r) => setTimeout(r, timeoutMs));
    throw new GfsError('TIMEOUT', `${buildUrl(base, path, opts.query)}: no answer within ${timeoutMs} ms (fault layer: ${f.delayMs} ms late)`, { fault: true });
  }
  await applyFault(base, opts);
  return sendJson(base, path, payload, opts, timeoutMs, schema);
}

/**
 * A request's whole deadline (connect, queueing, answer, body), as an abort signal undici takes: an
 * EventEmitter with one timer, cleared when the call is done. AbortSignal.timeout did the same at
 * ~20 us a call (its timer is tracked for the signal's garbage collection), on every RPC.
 */
class Deadline extends EventEmitter {
  aborted = false;
  reason: Error | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(timeoutMs: number) {
    super();
    this.timer = setTimeout(() => {
      const e = new Error('The operation was aborted due to timeout');
      e.name = 'TimeoutError';
      this.reason = e;
      this.aborted = true;
      this.emit('abort');
    }, timeoutMs);
    this.timer.unref();
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

/** One request on the shared agent; a failure to connect or answer becomes a GfsError naming the URL. */
async function send(url: string, method: NonNullable<RpcOptions['method']>, headers: Record<string, string>, body: string | Readable | Buffer | Uint8Array | undefined, timeoutMs: number, signal?: Deadline): Promise<Dispatcher.ResponseData> {
  try {
    return await request(url, { dispatcher: agent(), method, headers, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal });
  } catch (e) {
    throw networkError(e, url);
  }
}

async function sendJson<T>(base: string, path: string, payload: Payload, opts: RpcOptions, timeoutMs: number, schema?: z.ZodType<T>): Promise<T> {
  const url = buildUrl(base, path, opts.query);
  const method = opts.method ?? (payload === undefined ? 'GET' : 'POST');
  const text = payload?.data;
  const headers: Record<string, string> = { 'content-type': payload?.type ?? 'application/json', 'x-gfs-from': self, ...processHeaders, ...(opts.headers ?? {}) };
  // Signed after the fault layer's delay, so a delayed request still carries a fresh time.
  sign(method, url, headers, text === undefined ? emptySha256 : sha256Hex(text));
  const deadline = new Deadline(timeoutMs);
  try {
    const res = await send(url, method, headers, text, timeoutMs, deadline);
    opts.onHeaders?.(res.headers);
    if (res.statusCode < 200 || res.statusCode >= 300) throw await errorFrom(res, url);
    let json: unknown;
    try {
      json = await res.body.json();
    } catch (e) {
      throw networkError(e, url);
    }
    return schema ? schema.parse(json) : (json as T);
  } finally {
    deadline.clear();
  }
}

export interface StreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

/** Request with a streamed or binary body and/or a streamed answer. The caller consumes `body`. */
export async function rpcStream(
  base: string,
  path: string,
  body: Readable | Buffer | Uint8Array | undefined,
  /** bodyMac: the body's x-gfs-body-mac (shared/auth.ts, for pushes): signed instead of a sha256 of the body. */
  opts: RpcOptions & { contentLength?: number; bodySha256?: string; bodyMac?: string } = {},
): Promise<StreamResponse> {
  const url = buildUrl(base, path, opts.query);
  const timeoutMs = opts.timeoutMs ?? defaults.dataTimeoutMs;
  await applyFault(base, opts);
  const headers: Record<string, string> = { 'x-gfs-from': self, ...processHeaders, ...(opts.headers ?? {}) };
  if (body !== undefined) headers['content-type'] = 'application/octet-stream';
  if (opts.contentLength !== undefined) headers['content-length'] = String(opts.contentLength);
  const method = opts.method ?? (body === undefined ? 'GET' : 'PUT');
  if (authEnabled()) {
    // A streamed body cannot be hashed before it is sent: the caller passes its signed digest (a push hop forwards the client's).
    if (opts.bodyMac !== undefined) headers[authHeader.bodyMac] = opts.bodyMac;
    let digest = opts.bodyMac !== undefined ? bodyMacDigest : opts.bodySha256;
    if (digest === undefined && (body === undefined || body instanceof Uint8Array)) digest = body === undefined ? emptySha256 : sha256Hex(body);
    if (digest === undefined) throw new GfsError('BAD_REQUEST', `${url}: a streamed body needs its sha256 to be signed`);
    sign(method, url, headers, digest);
  }
  const res = await send(url, method, headers, body, timeoutMs);
  if (res.statusCode < 200 || res.statusCode >= 300) throw await errorFrom(res, url);
  return { statusCode: res.statusCode, headers: res.headers as StreamResponse['headers'], body: res.body };
}

export async function closeRpc(): Promise<void> {
  const a = agentInstance;
  agentInstance = undefined;
  await a?.close();
}
