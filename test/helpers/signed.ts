import { connect } from 'node:net';
import { clusterKey, emptySha256, sha256Hex, signWith, type SignInput } from '../../shared/auth.js';

// Hand-made requests for tests that must send what no well-behaved client
// would (wrong lengths, torn bodies, forged credentials), with or without a
// valid signature. Raw sockets, one request per connection.

export interface AuthOptions {
  /** Sign with this key instead of the cluster's (forgery). */
  key?: Buffer;
  from?: string;
  timeMs?: number;
  nonce?: string;
  /** Signed digest, when it must differ from the body's (lying uploads). */
  bodySha256?: string;
  /** Other x-gfs-* headers to sign and send. */
  headers?: Record<string, string>;
}

/** Auth headers for method + target (path and query) + body, signed with the test process's cluster secret. */
export function authHeaders(method: string, target: string, body?: string | Buffer, o: AuthOptions = {}): Record<string, string> {
  const key = o.key ?? clusterKey();
  if (!key) return {};
  const from = o.from ?? 'test';
  const input: SignInput = {
    method,
    target,
    bodySha256: o.bodySha256 ?? (body === undefined || body.length === 0 ? emptySha256 : sha256Hex(body)),
    from,
    headers: o.headers,
    timeMs: o.timeMs,
    nonce: o.nonce,
  };
  return { 'x-gfs-from': from, ...(o.headers ?? {}), ...signWith(key, input) };
}

export interface RawRequest {
  method: string;
  /** Path and query, sent as is (no encoding). */
  target: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Content-Length to declare (default: the body's length; null: none). */
  contentLength?: number | null;
  /** Send only this many body bytes, then close our side (a torn upload). */
  sendBytes?: number;
  /** Keep the connection open after sending this long before closing (a stalled upload); default: wait for the answer. */
  stallMs?: number;
  timeoutMs?: number;
}

export interface RawAnswer {
  /** undefined when the server closed the connection without an answer. */
  status: number | undefined;
  headers: string;
  body: string;
}

/** One HTTP/1.1 request on a fresh connection ('connection: close'); resolves with whatever came back. */
export function rawRequest(baseUrl: string, r: RawRequest): Promise<RawAnswer> {
  const u = new URL(baseUrl);
  const body = r.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body);
  const lines = [`${r.method} ${r.target} HTTP/1.1`, `host: ${u.host}`, 'connection: close'];
  const declared = r.contentLength === undefined ? (r.body === undefined ? undefined : body.length) : r.contentLength;
  if (declared !== undefined && declared !== null) lines.push(`content-length: ${declared}`);
  for (const [k, v] of Object.entries(r.headers ?? {})) lines.push(`${k}: ${v}`);
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  const payload = r.sendBytes !== undefined ? body.subarray(0, r.sendBytes) : body;
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(chunks).toString('utf8');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      const split = text.indexOf('\r\n\r\n');
      resolve({ status: m ? Number(m[1]) : undefined, headers: split >= 0 ? text.slice(0, split) : text, body: split >= 0 ? text.slice(split + 4) : '' });
    };
    const timer = setTimeout(finish, r.timeoutMs ?? 10_000);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', finish);
    sock.on('close', finish);
    sock.write(Buffer.concat([head, payload]), () => {
      if (r.sendBytes !== undefined) {
        if (r.stallMs !== undefined) setTimeout(() => sock.end(), r.stallMs);
        else sock.end();
      }
    });
  });
}
