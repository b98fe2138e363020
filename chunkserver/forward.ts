import { GfsError } from '../shared/errors.js';
import { rpcJson } from '../shared/rpc.js';
import type { ApplyOp, ReplicaRef } from '../shared/wire.js';

// The primary forwards the mutation order to each secondary. Per secondary
// and chunk, batches leave one at a time in serial order, so a secondary
// applies mutations in the order the primary assigned; mutations queued
// while a batch is in flight go together in the next one (this is what lets
// many small record appends share one round trip).

export interface ApplyResult {
  ok: boolean;
  code?: string;
  error?: string;
}

interface Pending {
  op: ApplyOp;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Lane {
  target: ReplicaRef;
  handle: string;
  version: number;
  queue: Pending[];
  busy: boolean;
}

const maxBatchOps = 1024;
/** Largest /chunk/apply body a chunkserver accepts; a batch stops taking inline ops well before it. */
export const applyBodyLimitBytes = 8 * 1024 * 1024;
const maxBatchInlineChars = applyBodyLimitBytes / 2;

/** Takes ops off the queue up to maxBatchOps and maxBatchInlineChars of inline data (at least one op). */
function takeBatch(queue: Pending[]): Pending[] {
  let n = 0;
  let chars = 0;
  while (n < queue.length && n < maxBatchOps) {
    const op = queue[n]!.op;
    const c = op.kind === 'write' ? (op.inline?.length ?? 0) : 0;
    if (n > 0 && chars + c > maxBatchInlineChars) break;
    chars += c;
    n++;
  }
  return queue.splice(0, n);
}
/** Bound on queued operations per lane; beyond it the mutation fails and the client retries. */
const maxQueuedOps = 100_000;

export class Forwarder {
  private readonly lanes = new Map<string, Lane>();

  constructor(private readonly timeoutMs: number) {}

  send(target: ReplicaRef, handle: string, version: number, op: ApplyOp): Promise<void> {
    const key = `${target.id}|${handle}|${version}`;
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { target, handle, version, queue: [], busy: false };
      this.lanes.set(key, lane);
    }
    if (lane.queue.length >= maxQueuedOps) return Promise.reject(new GfsError('TOO_BUSY', `too many mutations queued for ${target.id}`));
    const p = new Promise<void>((resolve, reject) => lane!.queue.push({ op, resolve, reject }));
    if (!lane.busy) void this.pump(key, lane);
    return p;
  }

  private async pump(key: string, lane: Lane): Promise<void> {
    lane.busy = true;
    try {
      while (lane.queue.length > 0) {
        const batch = takeBatch(lane.queue);
        try {
          const r = await rpcJson<{ results: ApplyResult[] }>(
            lane.target.url,
            '/chunk/apply',
            { handle: lane.handle, version: lane.version, ops: batch.map((b) => b.op) },
            { targetName: lane.target.id, timeoutMs: this.timeoutMs },
          );
          batch.forEach((b, i) => {
            const res = r.results[i];
            if (res?.ok) b.resolve();
            else b.reject(new GfsError('UNAVAILABLE', `secondary ${lane.target.id} failed to apply: ${res?.code ?? 'no answer'} ${res?.error ?? ''}`.trim()));
          });
        } catch (e) {
          const msg = (e as Error).message;
          for (const b of batch) b.reject(new GfsError('UNAVAILABLE', `secondary ${lane.target.id} failed: ${msg}`));
        }
      }
    } finally {
      lane.busy = false;
      if (lane.queue.length === 0) this.lanes.delete(key);
    }
  }
}
