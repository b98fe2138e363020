// The master's write-ahead operation log: group commit, checkpoints, recovery.
//
// Files in `dir`:
//   oplog.<seq>.log        frames [u32 LE payloadLength][u32 LE crc32c(payload)][payload = UTF-8 JSON]
//   checkpoint.<seq>.json  state as of the START of log <seq>, i.e. covering every record in logs < seq
//
// Records are opaque JSON values to this module. A record is acknowledged (its
// append() resolves) only after it has been written and fdatasync'ed, and after
// the caller's synchronous apply() has run, so the in-memory state never shows
// a mutation that a crash could lose.

import { open as openFile, readdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { TextFile } from 'lowdb/node';
import { crc32c } from '../shared/checksum.js';
import { GfsError, invariant } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { timedFsync } from '../shared/metrics.js';
import { checkpointFileName, CHECKPOINT_NAME_RE, createDurableFile, fsyncDir, LOG_NAME_RE, logFileName, recoverDir, type Recovery } from './oplog-recovery.js';
import { errorMessage, FRAME_HEADER_BYTES, MAX_RECORD_BYTES } from './oplog-scan.js';

export { MAX_RECORD_BYTES };
export { checkpointFileName, LOG_NAME_RE, logFileName, truncateToolPath, type Recovery } from './oplog-recovery.js';

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
   * given). On a full disk such a batch is held and retried rather than dropped (see refuseForSpace).
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


interface Entry {
  frame: Buffer;
  json: string;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}


/** The checkpoint document around an already-serialised state (same shape as CheckpointFile). */
function checkpointText(logSeq: number, createdAtMs: number, stateJson: string): string {
  return `{"complete":true,"logSeq":${logSeq},"createdAtMs":${createdAtMs},"state":${stateJson}}`;
}

function errnoCode(e: unknown): unknown {
  return typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
}

function isEnoent(e: unknown): boolean {
  return errnoCode(e) === 'ENOENT';
}

/** A full disk or an exhausted quota: nothing wrong with the log, just no room for more of it. */
function isNoSpace(e: unknown): boolean {
  return errnoCode(e) === 'ENOSPC' || errnoCode(e) === 'EDQUOT';
}

/** Errors the op log itself refuses an append with (as opposed to what the caller's apply threw). */
const refusals = new WeakSet<object>();

function refusal(e: GfsError): GfsError {
  refusals.add(e);
  return e;
}

/**
 * True when an append was refused by the log (not written: full disk, full queue, closed, unusable),
 * false when the record is in the log and only apply() failed. A log replica must pass the first
 * kind on to its master and may ignore the second (the master's apply failed the same way).
 */
export function isOpLogRefusal(e: unknown): boolean {
  return typeof e === 'object' && e !== null && refusals.has(e);
}

/** How long a batch already shipped to log replicas waits before its local write is tried again. */
const NO_SPACE_RETRY_MS = 1_000;

function positiveIntOr(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  invariant(Number.isSafeInteger(v) && v > 0, `${name} must be a positive integer, got ${v}`);
  return v;
}

export class OpLog {
  private readonly dir: string;
  private readonly checkpointLogBytes: number;
  private readonly applyFn: (record: unknown) => unknown;
  private readonly replicate: ((records: string[]) => Promise<void>) | undefined;
  private readonly hasLogReplicas: () => boolean;
  private readonly logger: Logger | undefined;
  private readonly onFsync: OpLogOptions['onFsync'];
  private readonly maxBatchRecords: number;
  private readonly maxBatchBytes: number;
  private readonly maxQueuedRecords: number;
  private readonly maxQueuedBytes: number;

  private fd: FileHandle;
  private logSeq: number;
  private logBytes: number;

  /** Appended, not yet handed to a batch; FIFO = log order = apply order. */
  private queue: Entry[] = [];
  private queuedBytes = 0;
  private inFlight: Promise<void> | undefined;
  /** Set by checkpoint() while it switches log files: appends queue, no batch starts. */
  private paused = false;
  /** Set once a write or fsync failed: the file's contents are unknown, so nothing more may be logged. */
  private failure: Error | undefined;
  private closed = false;
  private checkpointing: Promise<void> | undefined;
  private exclusiveRun: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];

  private fsyncCount = 0;
  private recordCount = 0;
  private batchCount = 0;
  private lastCheckpointSeq: number | undefined;
  private lastCheckpointAtMs: number | undefined;
  private noSpaceSinceMs: number | undefined;
  private noSpaceRefusals = 0;
  /**
   * A batch the log replicas may already hold but this disk had no room for. It must reach this
   * log too (dropping it would leave the replicas ahead, skipping later records as resent ones),
   * so it is retried, without shipping again, before anything else is written.
   */
  private held: { batch: Entry[]; shipError: Error | undefined; timer: NodeJS.Timeout | undefined } | undefined;

  private constructor(
    opts: OpLogOptions,
    fd: FileHandle,
    logSeq: number,
    logBytes: number,
    checkpointSeq: number | undefined,
    checkpointAtMs: number | undefined,
    fsyncs: number,
  ) {
    this.dir = opts.dir;
    this.checkpointLogBytes = opts.checkpointLogBytes;
    this.applyFn = opts.apply;
    this.replicate = opts.replicate;
    this.hasLogReplicas = opts.hasLogReplicas ?? (() => opts.replicate !== undefined);
    this.logger = opts.log;
    this.onFsync = opts.onFsync;
    this.maxBatchRecords = positiveIntOr(opts.maxBatchRecords, 100_000, 'maxBatchRecords');
    this.maxBatchBytes = positiveIntOr(opts.maxBatchBytes, 64 * MiB, 'maxBatchBytes');
    this.maxQueuedRecords = positiveIntOr(opts.maxQueuedRecords, 400_000, 'maxQueuedRecords');
    this.maxQueuedBytes = positiveIntOr(opts.maxQueuedBytes, 256 * MiB, 'maxQueuedBytes');
    this.fd = fd;
    this.logSeq = logSeq;
    this.logBytes = logBytes;
    this.lastCheckpointSeq = checkpointSeq;
    this.lastCheckpointAtMs = checkpointAtMs;
    this.fsyncCount = fsyncs;
  }

  /**
   * Opens or creates `dir` and recovers: the newest complete checkpoint plus
   * every record of the logs it does not cover, in order. Does not call apply
   * for them; the caller loads `recovery.checkpoint` and replays `recovery.records`.
   */
  static async open(opts: OpLogOptions): Promise<{ oplog: OpLog; recovery: Recovery }> {
    invariant(typeof opts.dir === 'string' && opts.dir.length > 0, 'oplog dir must be a non-empty string');
    invariant(
      Number.isFinite(opts.checkpointLogBytes) && opts.checkpointLogBytes > 0,
      `checkpointLogBytes must be positive, got ${opts.checkpointLogBytes}`,
    );
    const r = await recoverDir(opts.dir, opts.log);
    opts.log?.info(
      { dir: opts.dir, logSeq: r.logSeq, checkpointSeq: r.checkpoint?.logSeq, records: r.records.length, droppedTailBytes: r.droppedTailBytes },
      'oplog: recovered',
    );
    const oplog = new OpLog(opts, r.fd, r.logSeq, r.logBytes, r.checkpoint?.logSeq, r.checkpoint?.createdAtMs, r.fsyncs);
    return { oplog, recovery: { checkpoint: r.checkpoint?.state, records: r.records, droppedTailBytes: r.droppedTailBytes } };
  }
  /**
   * Logs a record. Resolves with apply(record)'s return value once the record
   * is written and fdatasync'ed and apply has run. Rejects if the write fails
   * (the log is then unusable), if apply throws (that record only: it IS in
   * the log and will come back on recovery), if the record is not JSON or too
   * large, or with TOO_BUSY if the queue is full.
   */
  append(record: unknown): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failedError());
    if (this.closed) return Promise.reject(refusal(new GfsError('UNAVAILABLE', 'oplog is closed')));
    if (this.held) {
      this.noSpaceRefusals++;
      return Promise.reject(this.noSpaceError());
    }

    // Serialise now, not at write time: the caller may mutate the object later.
    let json: string | undefined;
    try {
      json = JSON.stringify(record);
    } catch (e) {
      return Promise.reject(refusal(new GfsError('BAD_REQUEST', `oplog record is not JSON-serializable: ${errorMessage(e)}`)));
    }
    if (typeof json !== 'string') {
      return Promise.reject(refusal(new GfsError('BAD_REQUEST', 'oplog record is not JSON-serializable')));
    }
    const payloadBytes = Buffer.byteLength(json, 'utf8');
    if (payloadBytes > MAX_RECORD_BYTES) {
      return Promise.reject(
        refusal(new GfsError('RECORD_TOO_LARGE', `oplog record of ${payloadBytes} bytes exceeds ${MAX_RECORD_BYTES}`)),
      );
    }
    const frameBytes = FRAME_HEADER_BYTES + payloadBytes;
    // The hard bound: past it, waiting longer would only grow memory.
    if (this.queue.length >= this.maxQueuedRecords || this.queuedBytes + frameBytes > this.maxQueuedBytes) {
      return Promise.reject(
        refusal(new GfsError('TOO_BUSY', `oplog queue is full (${this.queue.length} records, ${this.queuedBytes} bytes)`)),
      );
    }

    const frame = Buffer.allocUnsafe(frameBytes);
    frame.writeUInt32LE(payloadBytes, 0);
    const written = frame.write(json, FRAME_HEADER_BYTES, 'utf8');
    invariant(written === payloadBytes, 'frame payload length matches its byteLength');
    frame.writeUInt32LE(crc32c(frame.subarray(FRAME_HEADER_BYTES)), 4);

    return new Promise<unknown>((resolve, reject) => {
      this.queue.push({ frame, json, resolve, reject });
      this.queuedBytes += frameBytes;
      this.kick();
    });
  }

  /** True when the current log file has grown past checkpointLogBytes. */
  needsCheckpoint(): boolean {
    return this.logBytes > this.checkpointLogBytes;
  }

  /**
   * Writes a checkpoint. snapshot() is called synchronously at a moment when
   * every logged record has been applied and no other is, and must return a
   * plain JSON object describing exactly that state. Appends keep queueing
   * meanwhile and only wait for the switch to a new log file, not for the
   * checkpoint file. A call made while one runs joins it (its snapshot is not called).
   */
  checkpoint(snapshot: () => unknown): Promise<void> {
    if (this.checkpointing) return this.checkpointing;
    if (this.failure) return Promise.reject(this.failedError());
    if (this.closed) return Promise.reject(new GfsError('UNAVAILABLE', 'oplog is closed'));
    // Never inside an exclusive() section: both pause the writer, and the first to finish would unpause it.
    const run = (this.exclusiveRun ?? Promise.resolve()).then(() => this.runCheckpoint(snapshot)).finally(() => {
      this.checkpointing = undefined;
    });
    this.checkpointing = run;
    return run;
  }

  /**
   * Runs fn while no batch is being written or applied (appends queue meanwhile), so the
   * state it sees is exactly every logged record applied: a consistent point to copy.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.failure) throw this.failedError();
    if (this.closed) throw new GfsError('UNAVAILABLE', 'oplog is closed');
    while (this.paused) await (this.checkpointing ?? new Promise((r) => setTimeout(r, 5)));
    this.paused = true;
    const run = (async () => {
      try {
        if (this.inFlight) await this.inFlight;
        if (this.failure) throw this.failedError();
        return await fn();
      } finally {
        this.paused = false;
        this.exclusiveRun = undefined;
        this.kick();
      }
    })();
    this.exclusiveRun = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  get stats(): OpLogStats {
    return {
      fsyncs: this.fsyncCount,
      records: this.recordCount,
      batches: this.batchCount,
      logBytes: this.logBytes,
      logSeq: this.logSeq,
      lastCheckpointSeq: this.lastCheckpointSeq,
      lastCheckpointAtMs: this.lastCheckpointAtMs,
      noSpace: this.noSpaceSinceMs !== undefined,
      noSpaceSinceMs: this.noSpaceSinceMs,
      noSpaceRefusals: this.noSpaceRefusals,
    };
  }

  /**
   * Refuses new appends, lets those already made finish (they resolve or
   * reject as usual), waits for a running checkpoint, then closes the file.
   */
  close(): Promise<void> {
    this.closing ??= this.runClose();
    return this.closing;
  }

  private async runClose(): Promise<void> {
    this.closed = true;
    if (this.checkpointing) await this.checkpointing.catch(() => undefined);
    if (this.inFlight || this.queue.length > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
    invariant(this.queue.length === 0 && this.inFlight === undefined, 'oplog idle at close');
    this.clearHeld();
    await this.fd.close();
  }

  // ---- internals ----

  private failedError(): GfsError {
    return refusal(new GfsError('INTERNAL', `oplog is unusable after a failed write: ${errorMessage(this.failure)}`));
  }

  /** Starts the next batch if nothing is in flight; the single writer keeps frames in order. */
  private kick(): void {
    if (this.inFlight || this.paused || this.failure || (this.queue.length === 0 && !this.held)) return;
    this.inFlight = this.runBatch();
  }

  private async runBatch(): Promise<void> {
    const held = this.held;
    let batch: Entry[];
    let bytes: number;
    if (held) {
      // Its records are on the log replicas already: written here first, not shipped again.
      batch = held.batch;
      bytes = batch.reduce((sum, e) => sum + e.frame.length, 0);
    } else {
      // Take a bounded prefix: the rest waits for the next batch (backpressure).
      let n = 0;
      bytes = 0;
      while (n < this.queue.length && n < this.maxBatchRecords) {
        const size = this.queue[n]!.frame.length;
        if (n > 0 && bytes + size > this.maxBatchBytes) break;
        bytes += size;
        n++;
      }
      batch = this.queue.splice(0, n);
      this.queuedBytes -= bytes;
    }
    invariant(batch.length > 0 && this.queuedBytes >= 0, 'batch non-empty and queue accounting sane');

    const fd = this.fd;
    const position = this.logBytes;
    // Started before the local write so both proceed together; its failure is handled after the apply.
    const shipped: Promise<Error | undefined> = held
      ? Promise.resolve(held.shipError)
      : this.replicate
        ? this.replicate(batch.map((e) => e.json)).then(
            () => undefined,
            (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
          )
        : Promise.resolve(undefined);
    try {
      const buf = batch.length === 1 ? batch[0]!.frame : Buffer.concat(batch.map((e) => e.frame), bytes);
      let off = 0;
      while (off < buf.length) {
        const { bytesWritten } = await fd.write(buf, off, buf.length - off, position + off);
        invariant(bytesWritten > 0, 'write makes progress');
        off += bytesWritten;
      }
      await timedFsync(this.onFsync && ((seconds) => this.onFsync!('oplog', seconds)), () => fd.datasync());
      this.fsyncCount++;
    } catch (e) {
      if (isNoSpace(e) && (await this.cutBackTo(fd, position))) await this.refuseForSpace(batch, e, await shipped);
      else await this.failWrite(batch, e, shipped);
      this.inFlight = undefined;
      // The next batch tries the disk again (a held batch waits for its timer instead).
      if (!this.held) this.kick();
      this.notifyIdle();
      return;
    }

    const shipError = await shipped;
    invariant(this.fd === fd && this.logBytes === position, 'log not switched or grown during a batch');
    this.logBytes = position + bytes;
    this.batchCount++;
    this.recordCount += batch.length;
    if (held) this.held = undefined;
    if (this.noSpaceSinceMs !== undefined) {
      this.logger?.info({ dir: this.dir, fullForMs: Date.now() - this.noSpaceSinceMs, refused: this.noSpaceRefusals }, 'oplog: space again; accepting mutations');
      this.noSpaceSinceMs = undefined;
    }
    // Durable now: apply in log order, synchronously, so no other code can
    // observe a state with only part of the batch applied.
    for (const entry of batch) {
      try {
        const value = this.applyFn(JSON.parse(entry.json));
        if (shipError) entry.reject(new GfsError('UNAVAILABLE', `logged here but not on every log replica, outcome unknown: ${errorMessage(shipError)}`));
        else entry.resolve(value);
      } catch (e) {
        entry.reject(e);
      }
    }
    this.inFlight = undefined;
    this.kick();
    this.notifyIdle();
  }

  /** After a failed write or fsync the file's contents (and the page cache's) are unknown; appending more could ack records behind a hole. */
  private async failWrite(batch: Entry[], e: unknown, shipped: Promise<unknown>): Promise<void> {
    this.failure = e instanceof Error ? e : new Error(String(e));
    await shipped;
    this.logger?.error({ err: errorMessage(e), logSeq: this.logSeq }, 'oplog: write failed; log unusable');
    const err = this.failedError();
    for (const entry of batch) entry.reject(err);
    this.clearHeld();
    this.rejectQueued(this.failedError());
  }

  /**
   * Removes a failed batch's bytes, so the file again ends with the last acknowledged record. A
   * shorter file needs no new space. False when even that fails: then the log is unusable.
   */
  private async cutBackTo(fd: FileHandle, position: number): Promise<boolean> {
    try {
      await fd.truncate(position);
      return true;
    } catch (e) {
      this.logger?.error({ err: errorMessage(e), logSeq: this.logSeq, position }, 'oplog: cannot cut a failed batch off the log');
      return false;
    }
  }

  /**
   * The disk is full. Without log replicas the batch is refused (NO_SPACE) and the next batch simply
   * tries again. With them the batch may be on a replica already, so it is held and retried every
   * second until it fits, and new appends are refused meanwhile; its callers are answered at once
   * (NO_SPACE, outcomeUnknown: it will be logged and applied once space returns). Logged once per full spell.
   */
  private async refuseForSpace(batch: Entry[], e: unknown, shipError: Error | undefined): Promise<void> {
    if (this.noSpaceSinceMs === undefined) {
      this.noSpaceSinceMs = Date.now();
      this.logger?.error(
        { dir: this.dir, err: errorMessage(e), logSeq: this.logSeq, logReplicas: this.replicate !== undefined && this.hasLogReplicas() },
        'oplog: disk full; mutations are refused with NO_SPACE until space returns',
      );
    }
    if (!this.held) this.noSpaceRefusals += batch.length;
    if (!this.held && !(this.replicate && this.hasLogReplicas())) {
      for (const entry of batch) entry.reject(this.noSpaceError());
      return;
    }
    if (!this.held) {
      this.held = { batch, shipError, timer: undefined };
      const unknown = refusal(new GfsError('NO_SPACE', `the master's disk is full (${this.dir}); this mutation may be on the log replicas already and will then be logged and applied here once space returns: outcome unknown until then`, { retryAfterMs: NO_SPACE_RETRY_MS, outcomeUnknown: true }));
      for (const entry of batch) entry.reject(unknown);
    }
    const held = this.held;
    invariant(held.batch === batch, 'only the held batch runs while one is held');
    this.noSpaceRefusals += this.queue.length;
    this.rejectQueued(this.noSpaceError());
    if (held.timer) clearTimeout(held.timer);
    held.timer = setTimeout(() => {
      held.timer = undefined;
      if (!this.closed) this.kick();
    }, NO_SPACE_RETRY_MS);
  }

  private rejectQueued(err: GfsError): void {
    const rest = this.queue.splice(0);
    this.queuedBytes = 0;
    for (const entry of rest) entry.reject(err);
  }

  /** Gives up on a held batch (closing, or the log failed): its outcome is unknown to its callers. */
  private clearHeld(): void {
    const held = this.held;
    if (!held) return;
    this.held = undefined;
    if (held.timer) clearTimeout(held.timer);
    const err = refusal(new GfsError('UNAVAILABLE', 'oplog closed while waiting for disk space; the record may be on the log replicas, outcome unknown'));
    for (const entry of held.batch) entry.reject(err);
  }

  private noSpaceError(): GfsError {
    return refusal(new GfsError('NO_SPACE', `the master's disk is full: no room to log the mutation in ${this.dir}; free space there and retry`, { retryAfterMs: NO_SPACE_RETRY_MS }));
  }

  private notifyIdle(): void {
    if (this.inFlight || (this.queue.length > 0 && !this.failure)) return;
    const waiters = this.idleWaiters.splice(0);
    for (const w of waiters) w();
  }

  private async runCheckpoint(snapshot: () => unknown): Promise<void> {
    // (1) No new batch may start; wait for the one in flight, whose records
    // have then been applied (apply runs inside the writer).
    this.paused = true;
    let newSeq: number;
    let stateJson: string;
    let createdAtMs: number;
    try {
      if (this.inFlight) await this.inFlight;
      if (this.failure) throw this.failedError();
      invariant(this.inFlight === undefined, 'no batch in flight while paused');

      // (2) The state now covers exactly the records in logs <= logSeq.
      // Serialise it here, synchronously: snapshot() may return live objects
      // that later applies would change, and an unserialisable state must
      // fail before any log is switched (an unreadable checkpoint would let
      // step 5 delete logs that recovery still needs).
      createdAtMs = Date.now();
      const json: string | undefined = JSON.stringify(snapshot());
      invariant(typeof json === 'string', 'checkpoint snapshot() must return a JSON value');
      stateJson = json;

      // (3) Later records go to a new log. It must be durable before any
      // record in it is acknowledged, and before the checkpoint names it.
      newSeq = this.logSeq + 1;
      const path = join(this.dir, logFileName(newSeq));
      const newFd = await createDurableFile(path);
      this.fsyncCount += 2;
      const oldFd = this.fd;
      this.fd = newFd;
      this.logSeq = newSeq;
      this.logBytes = 0;
      await oldFd.close().catch((e: unknown) => this.logger?.warn({ err: errorMessage(e) }, 'oplog: closing old log failed'));
    } finally {
      this.paused = false;
      this.kick();
    }

    // (4) Appends run again; the checkpoint is written beside them. lowdb
    // writes a temp file and renames it, but does not fsync: do it here.
    const path = join(this.dir, checkpointFileName(newSeq));
    try {
      await new TextFile(path).write(checkpointText(newSeq, createdAtMs, stateJson));
    } catch (e) {
      // On a full disk a half-written temp file would keep the space the log needs. Its name is
      // lowdb's (steno's): .<name>.tmp beside the file.
      await unlink(join(this.dir, `.${checkpointFileName(newSeq)}.tmp`)).catch(() => undefined);
      throw e;
    }
    const fh = await openFile(path, 'r');
    const syncStart = process.hrtime.bigint();
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncDir(this.dir);
    this.onFsync?.('checkpoint', Number(process.hrtime.bigint() - syncStart) / 1e9);
    this.fsyncCount += 2;
    this.lastCheckpointSeq = newSeq;
    this.lastCheckpointAtMs = createdAtMs;
    this.logger?.info({ logSeq: newSeq }, 'oplog: checkpoint written');

    // (5) Only now is everything before newSeq redundant.
    await this.deleteBefore(newSeq);
  }

  private async deleteBefore(seq: number): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      this.logger?.warn({ err: errorMessage(e) }, 'oplog: listing for cleanup failed');
      return;
    }
    let deleted = 0;
    for (const name of names) {
      const m = LOG_NAME_RE.exec(name) ?? CHECKPOINT_NAME_RE.exec(name);
      if (!m || Number(m[1]) >= seq) continue;
      try {
        await unlink(join(this.dir, name));
        deleted++;
      } catch (e) {
        // Harmless to keep: recovery ignores files older than the newest checkpoint.
        if (!isEnoent(e)) this.logger?.warn({ name, err: errorMessage(e) }, 'oplog: deleting old file failed');
      }
    }
    if (deleted > 0) {
      try {
        await fsyncDir(this.dir);
        this.fsyncCount++;
      } catch (e) {
        this.logger?.warn({ err: errorMessage(e) }, 'oplog: fsync of directory after cleanup failed');
      }
    }
  }
}

