import { createHash, type Hash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { Request, Response } from 'express';
import { authHeader, bodyMacDigest, bodyMacKey, bodyMacVerifier, type AuthedRequest } from '../shared/auth.js';
import { BlockCrcStream, decodeBlockCrcs } from '../shared/checksum.js';
import { GfsError } from '../shared/errors.js';
import { lingerBeforeClose, sendError } from '../shared/http.js';
import type { Logger } from '../shared/log.js';
import { defaults } from '../shared/config.js';
import { rpcStream } from '../shared/rpc.js';
import { BufferPool, type Lease } from './buffer-pool.js';
import { blockCrcsHeader, dataIdSchema, maxPushBlockCrcs, pushChainSchema, pushCrcBlockBytes, type PushAnswer } from '../shared/wire.js';

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
// authentication on, the body's MAC (or, from an older sender, its sha256)
// must match the signed one (shared/auth.ts) or the bytes are discarded:
// nothing enters the buffer before the last byte has been checked.
// Integrity: each hop computes the crc32c of every 64 KiB block once, as the
// bytes arrive, checks it against the sender's list (x-gfs-block-crcs) and
// keeps the list with the data: the chunk stores those crcs rather than
// computing them again from memory that might have been damaged meanwhile.

export interface PushedData {
  data: Buffer;
  /** Of the whole data. */
  crc32c: number;
  /** Of each pushCrcBlockBytes block of the data, computed once as it arrived (and equal to the sender's, when it sent them). */
  blockCrcs: Uint32Array;
  expiresAtMs: number;
  /** Gives data's buffer back to the pool: whoever takes the entry calls it once done with data (idempotent). */
  release(): void;
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

  /** Where pushes are received: reused slots (chunkserver/buffer-pool.ts). */
  readonly pool: BufferPool;

  constructor(
    readonly maxBytes: number,
    readonly expiryMs: number,
    readonly maxActive = 64,
    pool?: BufferPool,
  ) {
    this.pool = pool ?? new BufferPool(defaults.pushPieceBytes, 0);
  }

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

  put(dataId: string, data: Buffer, crc: number, blockCrcs: Uint32Array, release: () => void): void {
    this.receivedBytes += data.length;
    this.entries.set(dataId, { data, crc32c: crc, blockCrcs, expiresAtMs: Date.now() + this.expiryMs, release });
  }

  /** Removes and returns pushed data; the mutation that takes it owns it and must release() it. */
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
        e.release();
      }
    }
  }

  clear(): void {
    for (const e of this.entries.values()) e.release();
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

/** What a hop passes on with the body: how the body is authenticated (as it was signed to this hop) and the sender's block crcs. */
interface Carried {
  bodySha256?: string;
  bodyMac?: string;
  blockCrcs?: string;
}

/** The push to the next hop, fed as bytes arrive (a pipelined chain, not store-and-forward). */
function startDownstream(chain: string[], dataId: string, sizeBytes: number, carried: Carried): { pass: PassThrough; downstream: Promise<PushAnswer> } {
  const pass = new PassThrough({ highWaterMark: 2 * forwardSliceBytes });
  const headers: Record<string, string> = { 'x-gfs-chain': JSON.stringify(chain.slice(1)) };
  if (carried.blockCrcs !== undefined) headers[blockCrcsHeader] = carried.blockCrcs;
  const downstream = rpcStream(chain[0]!, `/push/${encodeURIComponent(dataId)}`, pass, {
    method: 'PUT',
    contentLength: sizeBytes,
    headers,
    bodySha256: carried.bodySha256,
    bodyMac: carried.bodyMac,
  }).then(async (r) => (await r.body.json()) as PushAnswer);
  downstream.catch(() => undefined); // awaited later; keep an early failure from being unhandled
  return { pass, downstream };
}

/**
 * Bytes a hop gathers before sending them on: a few large writes to the next hop (slices of its own
 * copy, no further copy) instead of one per parser chunk of 64 KiB.
 */
const forwardSliceBytes = 1024 * 1024;

/** How a hop checks the body it receives: the signed MAC or sha256 (authentication on), and the sender's block crcs. */
interface BodyChecks {
  mac?: { update(piece: Buffer): void; check(): boolean };
  sha256?: Hash;
  expectedCrcs?: Uint32Array;
}

interface Received {
  data: Buffer;
  received: number;
  /** crc32c of each checksum block, computed once as the bytes arrived. */
  crcs: BlockCrcStream;
  firstByteAtMs: number;
}

/**
 * Reads the body into one buffer, passing it on to the next hop in large slices as it comes, with each
 * block's crc32c computed (and checked against the sender's, when it sent them) and the MAC or sha256 fed,
 * all in the one pass. A sender silent for idleMs is dropped; a failing next hop ends the push at once.
 */
function receiveBody(req: Request, into: Buffer, idleMs: number, checks: BodyChecks, next: { pass: PassThrough; downstream: Promise<PushAnswer>; url: string } | undefined): Promise<Received> {
  const sizeBytes = into.length;
  const r: Received = { data: into, received: 0, crcs: new BlockCrcStream(sizeBytes, pushCrcBlockBytes, checks.expectedCrcs), firstByteAtMs: 0 };
  return new Promise<Received>((resolve, reject) => {
    let failed = false;
    let forwarded = 0;
    // One deadline, not a timer reset per chunk: each chunk notes the time, and the timer, when it
    // fires, sleeps again for whatever is left of idleMs since the last one.
    let lastDataAtMs = Date.now();
    let idle: NodeJS.Timeout | undefined;
    const armIdle = (waitMs: number) => {
      idle = setTimeout(() => {
        const quietMs = Date.now() - lastDataAtMs;
        if (quietMs < idleMs) return armIdle(idleMs - quietMs);
        fail(new GfsError('TRUNCATED', `push stalled: no data for ${idleMs} ms`));
        req.destroy();
      }, waitMs);
    };
    const fail = (e: GfsError) => {
      if (idle) clearTimeout(idle);
      if (failed) return;
      failed = true;
      reject(e);
    };
    armIdle(idleMs);
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
      lastDataAtMs = Date.now();
      c.copy(r.data, r.received);
      r.received += c.length;
      const bad = r.crcs.update(c);
      if (bad >= 0) {
        // Damaged on the way here (or a sender that lies about its data): nothing is kept, the sender may try again.
        fail(new GfsError('UNAVAILABLE', `push block ${bad} does not match the sender's crc32c (damaged in transit)`));
        req.destroy();
        return;
      }
      checks.mac?.update(c);
      checks.sha256?.update(c);
      if (next && (r.received - forwarded >= forwardSliceBytes || r.received === sizeBytes)) {
        const slice = r.data.subarray(forwarded, r.received);
        forwarded = r.received;
        if (!next.pass.write(slice)) {
          req.pause();
          next.pass.once('drain', () => req.resume());
        }
      }
    });
    req.once('end', () => {
      if (idle) clearTimeout(idle);
      if (!failed) resolve(r);
    });
    req.once('close', () => fail(new GfsError('TRUNCATED', 'push connection closed early')));
    req.once('aborted', () => fail(new GfsError('TRUNCATED', 'push aborted by the sender')));
    req.once('error', (e) => fail(new GfsError('TRUNCATED', `push failed: ${e.message}`)));
  });
}

/** How this push's body is checked, from its signature and headers; throws before any body byte is read. */
function bodyChecks(req: Request, sizeBytes: number): { checks: BodyChecks; carried: Carried } {
  const checks: BodyChecks = {};
  const carried: Carried = {};
  const crcHeader = req.headers[blockCrcsHeader];
  if (typeof crcHeader === 'string') {
    const count = Math.ceil(sizeBytes / pushCrcBlockBytes);
    checks.expectedCrcs = count <= maxPushBlockCrcs ? decodeBlockCrcs(crcHeader, count) : undefined;
    if (!checks.expectedCrcs) throw new GfsError('BAD_REQUEST', `${blockCrcsHeader} must list the crc32c of each of the body's ${count} blocks`);
    carried.blockCrcs = crcHeader;
  }
  const signed = (req as AuthedRequest).gfsAuth?.bodySha256;
  if (signed === bodyMacDigest) {
    const mac = req.headers[authHeader.bodyMac];
    checks.mac = bodyMacVerifier(typeof mac === 'string' ? mac : undefined, bodyMacKey()!);
    carried.bodyMac = mac as string;
  } else if (signed !== undefined) {
    checks.sha256 = createHash('sha256');
    carried.bodySha256 = signed;
  }
  return { checks, carried };
}

/** PUT /push/:dataId with header x-gfs-chain: JSON array of the next hops' base URLs. */
export function pushHandler(buffer: PushBuffer, maxPushBytes: number, log: Logger, idleMs = 30_000) {
  return async (req: Request, res: Response): Promise<void> => {
    let reserved = 0;
    let lease: Lease | undefined;
    let pass: PassThrough | undefined;
    let began = false;
    /** A refusal before any body byte was read, of a body no larger than a push may be: see the catch. */
    let drainOnRefusal = false;
    try {
      const { dataId, sizeBytes, chain } = parsePush(req, maxPushBytes);
      drainOnRefusal = true;
      if (buffer.has(dataId)) throw new GfsError('EXISTS', `data id ${dataId} already pushed`);
      const { checks, carried } = bodyChecks(req, sizeBytes);
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
      lease = buffer.pool.lend(sizeBytes);
      const next = chain.length > 0 ? { ...startDownstream(chain, dataId, sizeBytes, carried), url: chain[0]! } : undefined;
      pass = next?.pass;
      drainOnRefusal = false;
      const got = await receiveBody(req, lease.buf, idleMs, checks, next);
      const lastByteAtMs = Date.now();
      if (got.received !== sizeBytes) throw new GfsError('TRUNCATED', `push truncated: ${got.received} of ${sizeBytes} bytes`);
      // Checked before the data goes on to be acknowledged or kept: a body that is not the signed one is dropped here.
      if (checks.mac && !checks.mac.check()) throw new GfsError('UNAUTHENTICATED', `push body does not match its signed ${authHeader.bodyMac}`);
      if (checks.sha256 && checks.sha256.digest('hex') !== carried.bodySha256) throw new GfsError('UNAUTHENTICATED', `push body does not match its signed ${authHeader.digest}`);
      const crc = got.crcs.wholeCrc();
      pass?.end();
      if (next) {
        let d: PushAnswer;
        try {
          d = await next.downstream;
        } catch (e) {
          throw new GfsError('UNAVAILABLE', `next hop ${next.url} failed: ${(e as Error).message}`);
        }
        if (d.sizeBytes !== sizeBytes || d.crc32c !== crc) throw new GfsError('UNAVAILABLE', `next hop ${next.url} received different bytes`);
      }
      buffer.put(dataId, got.data, crc, got.crcs.crcs, lease.release);
      reserved = 0; // owned by the buffer now
      lease = undefined;
      buffer.end();
      began = false;
      buffer.note({ dataId, sizeBytes, firstByteAtMs: got.firstByteAtMs, lastByteAtMs, forwardedTo: chain[0] });
      const answer: PushAnswer = { dataId, sizeBytes, crc32c: crc };
      res.json(answer);
    } catch (e) {
      if (reserved) buffer.release(reserved);
      if (began) buffer.end();
      pass?.destroy();
      // No byte of it is used: the slot goes back (receiveBody ignores whatever still arrives after a failure).
      lease?.release();
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
