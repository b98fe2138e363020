// What the op log (master/oplog.ts) is told when it is opened, its bounds with their defaults,
// and what it reports (status page, /metrics): the contract between the log and the master that
// drives it (master/master.ts), apart from how the log carries it out.

import { invariant } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';

const MiB = 1024 * 1024;

export interface OpLogOptions {
  dir: string;
  /** A checkpoint is due when the current log file exceeds this. */
  checkpointLogBytes: number;
  /**
   * Called synchronously, in log order, once a record is durable; its return
   * value resolves append(). It receives a JSON round-tripped copy of the
   * record, i.e. exactly what recovery will hand back after a restart.
   */
  apply: (record: unknown) => unknown;
  log?: Logger;
  /** One batch (one write + one fdatasync) holds at most this many records. Default 100_000. */
  maxBatchRecords?: number;
  /** One batch holds at most this many frame bytes (a single record may exceed it). Default 64 MiB. */
  maxBatchBytes?: number;
  /** Appends beyond this many queued (not yet durable) records are refused with TOO_BUSY. Default 400_000. */
  maxQueuedRecords?: number;
  /** Appends beyond this many queued frame bytes are refused with TOO_BUSY. Default 256 MiB. */
  maxQueuedBytes?: number;
  /**
   * Ships a batch (records as JSON text, in log order) to the log replicas, while it is written
   * here; called serially, so every earlier batch has been applied when it runs. A batch is
   * acknowledged only when both this and the local fdatasync succeeded. If it fails the records
   * are still applied here (they are in the local log, and recovery would apply them anyway),
   * but their appends reject: the caller learns the outcome is unknown, as with a lost answer.
   */
  replicate?: (records: string[]) => Promise<void>;
  /**
   * Whether a batch given to replicate may now be on a log replica (default: whenever replicate is
   * given). On a full disk such a batch is held and retried rather than dropped (see oplog-space.ts).
   */
  hasLogReplicas?: () => boolean;
  /** Told how long each batch's fdatasync ('oplog') and each checkpoint's fsync ('checkpoint') took (metrics). */
  onFsync?: (kind: 'oplog' | 'checkpoint', seconds: number) => void;
}


export interface OpLogStats {
  /** Every fsync/fdatasync this instance issued: batches, new files, directories. */
  fsyncs: number;
  /** Records made durable by this instance (recovered ones excluded). */
  records: number;
  batches: number;
  /** Size of the current log file. */
  logBytes: number;
  logSeq: number;
  lastCheckpointSeq: number | undefined;
  lastCheckpointAtMs: number | undefined;
  /** The disk is full: appends are refused with NO_SPACE until a write succeeds again. */
  noSpace: boolean;
  /** Since when (epoch ms), while noSpace. */
  noSpaceSinceMs: number | undefined;
  /** Records refused with NO_SPACE by this instance. */
  noSpaceRefusals: number;
}

/** The queue and batch bounds (every one of them a positive integer). */
export interface OpLogLimits {
  maxBatchRecords: number;
  maxBatchBytes: number;
  maxQueuedRecords: number;
  maxQueuedBytes: number;
}

function positiveIntOr(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  invariant(Number.isSafeInteger(v) && v > 0, `${name} must be a positive integer, got ${v}`);
  return v;
}

/** The bounds `opts` asks for, defaults filled in; throws on one that is not a positive integer. */
export function oplogLimits(opts: OpLogOptions): OpLogLimits {
  return {
    maxBatchRecords: positiveIntOr(opts.maxBatchRecords, 100_000, 'maxBatchRecords'),
    maxBatchBytes: positiveIntOr(opts.maxBatchBytes, 64 * MiB, 'maxBatchBytes'),
    maxQueuedRecords: positiveIntOr(opts.maxQueuedRecords, 400_000, 'maxQueuedRecords'),
    maxQueuedBytes: positiveIntOr(opts.maxQueuedBytes, 256 * MiB, 'maxQueuedBytes'),
  };
}
