import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { Request, Response } from 'express';
import { authHeader, type AuthedRequest } from '../shared/auth.js';
import { crc32c } from '../shared/checksum.js';
import { GfsError } from '../shared/errors.js';
import { lingerBeforeClose, sendError } from '../shared/http.js';
import type { Logger } from '../shared/log.js';
import { rpcStream } from '../shared/rpc.js';
import { dataIdSchema, pushChainSchema, type PushAnswer } from '../shared/wire.js';

// Data push, decoupled from control flow. A client pushes a piece of data to
// the nearest replica with the rest of the chain in a header; each hop
// streams the bytes on to the next hop AS THEY ARRIVE (a pipelined chain, not
// store-and-forward) while keeping its own copy. A hop answers only when it
// has every byte and everything downstream has answered with the same crc,
// so one answer to the client means the whole chain holds the data.
// The copy waits in a bounded buffer, keyed by data id, until a mutation
// takes it or it expires.
//
// Bounds: pushes under way at once (maxActive), bytes reserved by pushes
// under way plus bytes waiting (maxBytes, reserved up front from the
// Content-Length), and a push that sends nothing for idleMs is dropped. With
// authentication on, the body's sha256 must match the signed digest
// (shared/auth.ts) or the bytes are discarded: nothing enters the buffer
// before the last byte has been checked.

export interface PushedData {
  data: Buffer;
  crc32c: number;
  expiresAtMs: number;
}

export interface PushRecord {
  dataId: string;
  sizeBytes: number;
  firstByteAtMs: number;
  lastByteAtMs: number;
  forwardedTo: string | undefined;
}

export class PushBuffer {
  private readonly entries = new Map<string, PushedData>();
  private reservedBytes = 0;
  /** Bytes of pushed data received and kept, ever (a hop counts what it received itself). */
  receivedBytes = 0;
  /** Recent pushes, for the pipelining test and /debug/pushes (bounded ring). */
  readonly recent: PushRecord[] = [];
  private static readonly recentMax = 256;

  /** Pushes being received right now. */
  private activePushes = 0;
  /** Pushes refused because of the bounds, ever. */
  refused = 0;

  constructor(
    readonly maxBytes: number,
    readonly expiryMs: number,
    readonly maxActive = 64,
  ) {}

  get active(): number {
    return this.activePushes;
  }

  /** A push starts; false when maxActive are already under way. */
  begin(): boolean {
    if (this.activePushes >= this.maxActive) return false;
    this.activePushes++;
    return true;
  }

  end(): void {
    this.activePushes = Math.max(0, this.activePushes - 1);
  }

  get usedBytes(): number {
    return this.reservedBytes;
  }

  get count(): number {
    return this.entries.size;
  }

  /** Accounts for bytes about to arrive; false when the buffer is full. */
  reserve(bytes: number): boolean {
    this.sweep(Date.now());
    if (this.reservedBytes + bytes > this.maxBytes) return false;
    this.reservedBytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.reservedBytes = Math.max(0, this.reservedBytes - bytes);
  }

  has(dataId: string): boolean {
    return this.entries.has(dataId);
  }

  put(dataId: string, data: Buffer, crc: number): void {
    this.receivedBytes += data.length;
    this.entries.set(dataId, { data, crc32c: crc, expiresAtMs: Date.now() + this.expiryMs });
  }

  /** Removes and returns pushed data; the mutation that takes it owns it. */
  take(dataId: string): PushedData | undefined {
    const e = this.entries.get(dataId);
    if (!e) return undefined;
    this.entries.delete(dataId);
    this.release(e.data.length);
    return e;
  }

  /** Bytes sent on to the next hop of push chains, ever. */
  forwardedBytes = 0;

  note(r: PushRecord): void {
    if (r.forwardedTo !== undefined) this.forwardedBytes += r.sizeBytes;
    this.recent.push(r);
    if (this.recent.length > PushBuffer.recentMax) this.recent.shift();
  }

  sweep(nowMs: number): void {
    for (const [id, e] of this.entries) {
      if (e.expiresAtMs <= nowMs) {
        this.entries.delete(id);
        this.release(e.data.length);
      }
    }
  }

  clear(): void {
    this.entries.clear();
    this.reservedBytes = 0;
  }
}

/** The push a request announces: its data id, its length (Content-Length), and the hops after this one. */
function parsePush(req: Request, maxPushBytes: number): { dataId: string; sizeBytes: number; chain: string[] } {
  const idParse = dataIdSchema.safeParse(req.params.dataId);
  if (!idParse.success) throw new GfsError('BAD_REQUEST', 'invalid data id');
  const lenHeader = req.headers['content-length'];
  if (lenHeader === undefined || !/^\d+$/.test(lenHeader)) throw new GfsError('BAD_REQUEST', 'push needs a Content-Length', undefined, 411);
  const sizeBytes = Number(lenHeader);
  if (sizeBytes > maxPushBytes) throw new GfsError('PAYLOAD_TOO_LARGE', `push of ${sizeBytes} bytes exceeds ${maxPushBytes}`);
  let chain: string[] = [];
  const chainHeader = req.headers['x-gfs-chain'];
  if (typeof chainHeader === 'string' && chainHeader !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(chainHeader);
    } catch {
      throw new GfsError('BAD_REQUEST', 'x-gfs-chain is not JSON');
    }
    const r = pushChainSchema.safeParse(parsed);
    if (!r.success) throw new GfsError('BAD_REQUEST', 'x-gfs-chain must be an array of at most 16 URLs');
    chain = r.data;
  }
  return { dataId: idParse.data, sizeBytes, chain };
}

/** The push to the next hop, fed as bytes arrive (a pipelined chain, not store-and-forward). */
function startDownstream(chain: string[], dataId: string, sizeBytes: number, signedDigest: string | undefined): { pass: PassThrough; downstream: Promise<PushAnswer> } {
  const pass = new PassThrough({ highWaterMark: 1024 * 1024 });
  const downstream = rpcStream(chain[0]!, `/push/${encodeURIComponent(dataId)}`, pass, {
    method: 'PUT',
    contentLength: sizeBytes,
    headers: { 'x-gfs-chain': JSON.stringify(chain.slice(1)) },
    bodySha256: signedDigest,
  }).then(async (r) => (await r.body.json()) as PushAnswer);
  downstream.catch(() => undefined); // awaited later; keep an early failure from being unhandled
  return { pass, downstream };
}

interface Received {
  data: Buffer;
  received: number;
  crc: number;
  firstByteAtMs: number;
  sha256?: string;
}

/**
 * Reads the body into one buffer, passing each piece on to the next hop as it comes, with a crc32c
 * (and the sha256 the signature names, when there is one). A silent sender is dropped after idleMs;
 * a failing next hop ends the push at once.
 */
function receiveBody(req: Request, sizeBytes: number, idleMs: number, hashed: boolean, next: { pass: PassThrough; downstream: Promise<PushAnswer>; url: string } | undefined): Promise<Received> {
  const r: Received = { data: Buffer.allocUnsafe(sizeBytes), received: 0, crc: 0, firstByteAtMs: 0 };
  const hash = hashed ? createHash('sha256') : undefined;
  return new Promise<Received>((resolve, reject) => {
    let failed = false;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => {
        fail(new GfsError('TRUNCATED', `push stalled: no data for ${idleMs} ms`));
        req.destroy();
      }, idleMs);
    };
    const fail = (e: GfsError) => {
      if (idle) clearTimeout(idle);
      if (failed) return;
      failed = true;
      reject(e);
    };
    armIdle();
    // A next hop that fails ends this push at once: waiting for the rest of the bytes, or for a
    // 'drain' from the destroyed stream to the next hop (which never comes), would hang the whole
    // chain until its timeout.
    next?.downstream.catch((e: unknown) => fail(new GfsError('UNAVAILABLE', `next hop ${next.url} failed: ${(e as Error).message}`)));
    req.on('data', (c: Buffer) => {
      if (failed) return;
      if (r.received === 0) r.firstByteAtMs = Date.now();
      if (r.received + c.length > sizeBytes) {
        fail(new GfsError('BAD_REQUEST', 'push body longer than its Content-Length'));
        req.destroy();
        return;
      }
      armIdle();
      c.copy(r.data, r.received);
      r.received += c.length;
      r.crc = crc32c(c, r.crc);
      hash?.update(c);
      if (next && !next.pass.write(c)) {
        req.pause();
        next.pass.once('drain', () => req.resume());
      }
    });
    req.once('end', () => {
      if (idle) clearTimeout(idle);
      if (hash) r.sha256 = hash.digest('hex');
      if (!failed) resolve(r);
    });
    req.once('close', () => fail(new GfsError('TRUNCATED', 'push connection closed early')));
    req.once('aborted', () => fail(new GfsError('TRUNCATED', 'push aborted by the sender')));
    req.once('error', (e) => fail(new GfsError('TRUNCATED', `push failed: ${e.message}`)));
  });
}

/** PUT /push/:dataId with header x-gfs-chain: JSON array of the next hops' base URLs. */
export function pushHandler(buffer: PushBuffer, maxPushBytes: number, log: Logger, idleMs = 30_000) {
  return async (req: Request, res: Response): Promise<void> => {
    let reserved = 0;
    let pass: PassThrough | undefined;
    let began = false;
    /** A refusal before any body byte was read, of a body no larger than a push may be: see the catch. */
    let drainOnRefusal = false;
    try {
      const { dataId, sizeBytes, chain } = parsePush(req, maxPushBytes);
      drainOnRefusal = true;
      if (buffer.has(dataId)) throw new GfsError('EXISTS', `data id ${dataId} already pushed`);
      const signedDigest = (req as AuthedRequest).gfsAuth?.bodySha256;
      if (!buffer.begin()) {
        buffer.refused++;
        throw new GfsError('TOO_BUSY', `too many pushes under way (limit ${buffer.maxActive}), retry later`, { retryAfterMs: 200 });
      }
      began = true;
      if (!buffer.reserve(sizeBytes)) {
        buffer.refused++;
        throw new GfsError('TOO_BUSY', 'push buffer full, retry later', { retryAfterMs: 200 });
      }
      reserved = sizeBytes;
      const next = chain.length > 0 ? { ...startDownstream(chain, dataId, sizeBytes, signedDigest), url: chain[0]! } : undefined;
      pass = next?.pass;
      drainOnRefusal = false;
      const got = await receiveBody(req, sizeBytes, idleMs, signedDigest !== undefined, next);
      const lastByteAtMs = Date.now();
      if (got.received !== sizeBytes) throw new GfsError('TRUNCATED', `push truncated: ${got.received} of ${sizeBytes} bytes`);
      // Checked before the data goes on to be acknowledged or kept: a body that is not the signed one is dropped here.
      if (signedDigest !== undefined && got.sha256 !== signedDigest) throw new GfsError('UNAUTHENTICATED', `push body does not match its signed ${authHeader.digest}`);
      pass?.end();
      if (next) {
        let d: PushAnswer;
        try {
          d = await next.downstream;
        } catch (e) {
          throw new GfsError('UNAVAILABLE', `next hop ${next.url} failed: ${(e as Error).message}`);
        }
        if (d.sizeBytes !== sizeBytes || d.crc32c !== got.crc) throw new GfsError('UNAVAILABLE', `next hop ${next.url} received different bytes`);
      }
      buffer.put(dataId, got.data, got.crc);
      reserved = 0; // owned by the buffer now
      buffer.end();
      began = false;
      buffer.note({ dataId, sizeBytes, firstByteAtMs: got.firstByteAtMs, lastByteAtMs, forwardedTo: chain[0] });
      const answer: PushAnswer = { dataId, sizeBytes, crc32c: got.crc };
      res.json(answer);
    } catch (e) {
      if (reserved) buffer.release(reserved);
      if (began) buffer.end();
      pass?.destroy();
      if (!(e instanceof GfsError)) log.warn({ err: e }, 'push failed');
      // Refused before reading (busy, duplicate id): answer at once and let node read and discard the
      // body (at most one push, under the request timeouts) once the answer is out, also when the
      // sender asked to close (lingerBeforeClose). Closing at once, with the sender's bytes unread,
      // resets the connection, and a sender still writing loses the answer (seen under load in
      // test/integration/limits.test.ts). After a half-read body the connection cannot be reused: close it.
      if (!drainOnRefusal) res.setHeader('connection', 'close');
      else lingerBeforeClose(req, idleMs);
      sendError(res, e, log);
    }
  };
}
