import { randomBytes } from 'node:crypto';
import { GfsError, invariant } from '../shared/errors.js';
import { encodeOrderedOps, orderedOpBytes, type OrderedOp } from '../shared/record-wire.js';
import { rpcBinary } from '../shared/rpc.js';
import type { ReplicaRef } from '../shared/wire.js';
import { notRunCodes, type OpResult } from './serial-order.js';

// The primary forwards the mutation order to each secondary. Per secondary
// and chunk version, batches leave one at a time in serial order; mutations
// queued while a batch is in flight go together in the next one (this is
// what lets many small record appends share one round trip). The order
// itself does not rest on that: a secondary runs serials in order whatever
// order requests arrive in (chunkserver/serial-order.ts). A batch whose
// answer is lost or late (timeout, connection lost, serial held back too
// long) fails its mutations at once, so clients retry, but its operations
// stay at the head of the lane and are sent again under the same serials
// (with the next batch, or after a bounded backoff), so the secondary can
// fill the gap; one it has run already is answered with its earlier result.
// Batches travel as binary bodies (shared/record-wire.ts): the data of small
// mutations raw, the rest by pushed data id.

export type ApplyResult = OpResult;

type ApplyOp = OrderedOp;

interface Pending {
  op: ApplyOp;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Lane {
  target: ReplicaRef;
  handle: string;
  version: number;
  /** Sent and not answered for sure: sent again first, in serial order. */
  resend: ApplyOp[];
  queue: Pending[];
  /** Every serial up to this one has an answer from the secondary. */
  ackedThrough: number;
  busy: boolean;
  /** Failed sends in a row. */
  failures: number;
}

/** Ops in one /chunk/apply at most (a secondary refuses more). */
export const maxBatchOps = 1024;
/** Largest /chunk/apply body a chunkserver accepts; a batch stops taking ops well before it. */
export const applyBodyLimitBytes = 8 * 1024 * 1024;
/** A batch takes ops up to this many body bytes (always at least one: an append group is bounded well below it). */
const maxBatchBytes = applyBodyLimitBytes / 2;
/** Bound on operations per lane (queued and to re-send); beyond it the mutation fails before it is ordered and the client retries. */
const maxQueuedOps = 100_000;
/** Re-sends with nothing new to send: this many, backing off from resendBackoffMs; later ones wait for the next mutation. */
const maxQuietResends = 5;
const resendBackoffMs = 200;
/** Secondaries counted in sentTo. */
const maxCountedTargets = 1024;
/** Failures of a whole request after which its ops may or may not have run: send them again (a secondary answers a serial it ran with its earlier result). */
const retryableRpcCodes: ReadonlySet<string> = new Set(['TIMEOUT', 'TOO_BUSY', 'UNAVAILABLE']);

/** Takes ops off the lane (re-sends first) up to maxBatchOps and maxBatchBytes of body (at least one op). */
function takeBatch(lane: Lane): { ops: ApplyOp[]; fresh: Pending[] } {
  const ops: ApplyOp[] = [];
  let chars = 0;
  const fits = (op: ApplyOp): boolean => ops.length < maxBatchOps && (ops.length === 0 || chars + orderedOpBytes(op) <= maxBatchBytes);
  while (lane.resend.length > 0 && fits(lane.resend[0]!)) {
    chars += orderedOpBytes(lane.resend[0]!);
    ops.push(lane.resend.shift()!);
  }
  let n = 0;
  // New ops only behind every re-send, or serial order would break.
  while (lane.resend.length === 0 && n < lane.queue.length && fits(lane.queue[n]!.op)) {
    chars += orderedOpBytes(lane.queue[n]!.op);
    ops.push(lane.queue[n]!.op);
    n++;
  }
  return { ops, fresh: lane.queue.splice(0, n) };
}

export class Forwarder {
  private readonly lanes = new Map<string, Lane>();
  /** This process's serial space: a restarted primary starts a new one even at the same chunk version. */
  readonly stream = randomBytes(8).toString('hex');
  readonly counters = { resent: 0 };
  /** /chunk/apply requests sent, by secondary (for tests: every one answered means none is still under way). */
  readonly sentTo = new Map<string, number>();

  constructor(private readonly timeoutMs: number) {}

  /** Whether every lane to targets can take one more op (asked before a serial is assigned, so a refusal leaves no gap). */
  hasRoom(targets: ReplicaRef[], handle: string, version: number): boolean {
    return targets.every((t) => {
      const lane = this.lanes.get(laneKey(t, handle, version));
      return !lane || lane.queue.length + lane.resend.length < maxQueuedOps;
    });
  }

  send(target: ReplicaRef, handle: string, version: number, op: ApplyOp): Promise<void> {
    const key = laneKey(target, handle, version);
    let lane = this.lanes.get(key);
    if (!lane) {
      this.dropOlderLanes(target, handle, version);
      // Every earlier serial of this space was answered when its lane went away.
      lane = { target, handle, version, resend: [], queue: [], ackedThrough: op.serial - 1, busy: false, failures: 0 };
      this.lanes.set(key, lane);
    }
    invariant(lane.queue.length + lane.resend.length < maxQueuedOps, 'forward lane over its bound (hasRoom not asked)');
    const p = new Promise<void>((resolve, reject) => lane!.queue.push({ op, resolve, reject }));
    if (!lane.busy) void this.pump(key, lane);
    return p;
  }

  /** Lanes of older versions of the chunk to the same target can never be answered usefully again. */
  private dropOlderLanes(target: ReplicaRef, handle: string, version: number): void {
    for (const [k, l] of this.lanes) {
      if (l.target.id === target.id && l.handle === handle && l.version < version && !l.busy) this.lanes.delete(k);
    }
  }

  private async pump(key: string, lane: Lane): Promise<void> {
    lane.busy = true;
    try {
      while (lane.queue.length > 0 || lane.resend.length > 0) {
        if (lane.queue.length === 0) {
          // Only re-sends: back off, and leave them for the next mutation after a few tries.
          if (lane.failures > maxQuietResends) break;
          await new Promise((r) => setTimeout(r, resendBackoffMs * 2 ** Math.max(0, lane.failures - 1)));
        }
        await this.sendBatch(lane);
      }
    } finally {
      lane.busy = false;
      if (lane.queue.length === 0 && lane.resend.length === 0 && this.lanes.get(key) === lane) this.lanes.delete(key);
    }
  }

  private async sendBatch(lane: Lane): Promise<void> {
    const { ops, fresh } = takeBatch(lane);
    if (ops.length === 0) return;
    const resentCount = ops.length - fresh.length;
    this.counters.resent += resentCount;
    let results: ApplyResult[];
    let retryAll = false;
    if (this.sentTo.size < maxCountedTargets || this.sentTo.has(lane.target.id)) this.sentTo.set(lane.target.id, (this.sentTo.get(lane.target.id) ?? 0) + 1);
    try {
      const r = await rpcBinary<{ results: ApplyResult[] }>(lane.target.url, '/chunk/apply', encodeOrderedOps(ops), {
        targetName: lane.target.id,
        timeoutMs: this.timeoutMs,
        headers: { 'x-gfs-handle': lane.handle, 'x-gfs-version': String(lane.version), 'x-gfs-stream': this.stream, 'x-gfs-acked-through': String(lane.ackedThrough) },
      });
      results = r.results;
    } catch (e) {
      const g = e instanceof GfsError ? e : new GfsError('UNAVAILABLE', (e as Error).message);
      retryAll = retryableRpcCodes.has(g.code);
      results = ops.map(() => ({ ok: false, code: g.code, error: g.message }));
    }
    const again: ApplyOp[] = [];
    let acked = true;
    ops.forEach((op, i) => {
      const res = results[i] ?? { ok: false, code: 'UNAVAILABLE', error: 'no answer' };
      const retry = retryAll || (!res.ok && notRunCodes.has(res.code ?? ''));
      if (retry) again.push(op);
      // The answered prefix (in serial order) moves ackedThrough.
      if (retry) acked = false;
      else if (acked && op.serial === lane.ackedThrough + 1) lane.ackedThrough = op.serial;
      const p = fresh[i - resentCount];
      if (!p) return;
      if (res.ok) p.resolve();
      // A full disk keeps its code (507), so the client learns which server is full; anything else is the replica set failing.
      else p.reject(new GfsError(res.code === 'NO_SPACE' ? 'NO_SPACE' : 'UNAVAILABLE', `secondary ${lane.target.id} failed to apply: ${res.code ?? 'no answer'} ${res.error ?? ''}`.trim(), res.code === 'NO_SPACE' ? { server: lane.target.id } : undefined));
    });
    lane.failures = again.length > 0 ? lane.failures + 1 : 0;
    lane.resend.unshift(...again);
  }
}

function laneKey(target: ReplicaRef, handle: string, version: number): string {
  return `${target.id}|${handle}|${version}`;
}
