// The master's write-ahead operation log: the group-commit writer and its public API.
//
// Files in `dir`:
//   oplog.<seq>.log        frames [u32 LE payloadLength][u32 LE crc32c(payload)][payload = UTF-8 JSON]
//   checkpoint.<seq>.json  state as of the START of log <seq>, i.e. covering every record in logs < seq
//
// Records are opaque JSON values to this module. A record is acknowledged (its
// append() resolves) only after it has been written and fdatasync'ed, and after
// the caller's synchronous apply() has run, so the in-memory state never shows
// a mutation that a crash could lose.
//
// Here: the queue, the single writer that takes bounded batches (one write and
// one fdatasync each, shipped to the log replicas meanwhile), applying them in
// log order, checkpoints' switch to a new log, exclusive sections and close.
// Beside it: the frame format and reading (oplog-scan.ts), recovery at start-up
// (oplog-recovery.ts), the checkpoint files (oplog-checkpoint.ts), the full disk
// (oplog-space.ts) and the log's refusals (oplog-refusals.ts); the shipping
// itself is master/replicas.ts.

import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { GfsError, invariant } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { pwriteFull } from '../shared/file-io.js';
import { timedFsync } from '../shared/metrics.js';
import { deleteFilesBefore, writeCheckpointFile } from './oplog-checkpoint.js';
import { oplogLimits, type OpLogLimits, type OpLogOptions, type OpLogStats } from './oplog-options.js';
import { createDurableFile, logFileName, recoverDir, type Recovery } from './oplog-recovery.js';
import { closedError, failedError, isNoSpace, refusal } from './oplog-refusals.js';
import { encodeFrame, errorMessage, FRAME_HEADER_BYTES, MAX_RECORD_BYTES } from './oplog-scan.js';
import { DiskSpace } from './oplog-space.js';

export { MAX_RECORD_BYTES };
export { checkpointFileName, LOG_NAME_RE, logFileName, truncateToolPath, type Recovery } from './oplog-recovery.js';
export { isOpLogRefusal } from './oplog-refusals.js';
export type { OpLogOptions, OpLogStats } from './oplog-options.js';

/** A checkpoint built by the caller from checkpoint `baseSeq` (none: from log 1) and the closed logs before `newSeq`, written durably. */
export interface FileCheckpointSource {
  fromFiles(job: { dir: string; baseSeq: number | undefined; newSeq: number; createdAtMs: number }): Promise<{ fsyncSeconds: number }>;
}

/** Where a checkpoint's state comes from: the live state (a snapshot function), or the files. */
export type CheckpointSource = (() => unknown) | FileCheckpointSource;

/** One append waiting in the queue (or in the batch being written). */
interface Entry {
  frame: Buffer;
  json: string;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class OpLog {
  private readonly dir: string;
  private readonly checkpointLogBytes: number;
  private readonly applyFn: (record: unknown) => unknown;
  private readonly replicate: ((records: string[]) => Promise<void>) | undefined;
  private readonly logger: Logger | undefined;
  private readonly onFsync: OpLogOptions['onFsync'];
  private readonly limits: OpLogLimits;
  /** The full disk: the held batch, the full spell, refusals (oplog-space.ts). */
  private readonly space: DiskSpace<Entry>;

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
    const hasLogReplicas = opts.hasLogReplicas ?? (() => opts.replicate !== undefined);
    this.logger = opts.log;
    this.onFsync = opts.onFsync;
    this.limits = oplogLimits(opts);
    this.space = new DiskSpace<Entry>(
      opts.dir,
      opts.log,
      () => opts.replicate !== undefined && hasLogReplicas(),
      () => {
        if (!this.closed) this.kick();
      },
    );
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
    if (this.failure) return Promise.reject(failedError(this.failure));
    if (this.closed) return Promise.reject(closedError());
    if (this.space.held) return Promise.reject(this.space.refuseAppend());

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
    if (this.queue.length >= this.limits.maxQueuedRecords || this.queuedBytes + frameBytes > this.limits.maxQueuedBytes) {
      return Promise.reject(
        refusal(new GfsError('TOO_BUSY', `oplog queue is full (${this.queue.length} records, ${this.queuedBytes} bytes)`)),
      );
    }

    const frame = encodeFrame(json, payloadBytes);
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
   * Writes a checkpoint. With a snapshot function: snapshot() is called synchronously at a moment
   * when every logged record has been applied and no other is, and must return a plain JSON object
   * describing exactly that state. With `fromFiles`: the writer only switches to a new log, and
   * fromFiles builds checkpoint <newSeq> from checkpoint <baseSeq> and the closed logs (e.g. in a
   * worker, master/checkpoint-replay.ts). Appends keep queueing meanwhile and only wait for the
   * switch to a new log file, not for the checkpoint file. A call made while one runs joins it
   * (its source is not used).
   */
  checkpoint(source: CheckpointSource): Promise<void> {
    if (this.checkpointing) return this.checkpointing;
    if (this.failure) return Promise.reject(failedError(this.failure));
    if (this.closed) return Promise.reject(new GfsError('UNAVAILABLE', 'oplog is closed'));
    // Never inside an exclusive() section: both pause the writer, and the first to finish would unpause it.
    const run = (this.exclusiveRun ?? Promise.resolve()).then(() => this.runCheckpoint(source)).finally(() => {
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
    if (this.failure) throw failedError(this.failure);
    if (this.closed) throw new GfsError('UNAVAILABLE', 'oplog is closed');
    while (this.paused) await (this.checkpointing ?? new Promise((r) => setTimeout(r, 5)));
    this.paused = true;
    const run = (async () => {
      try {
        if (this.inFlight) await this.inFlight;
        if (this.failure) throw failedError(this.failure);
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
      noSpace: this.space.full,
      noSpaceSinceMs: this.space.sinceMs,
      noSpaceRefusals: this.space.refused,
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
    this.space.abandon();
    await this.fd.close();
  }

  // ---- the writer ----

  /** Starts the next batch if nothing is in flight; the single writer keeps frames in order. */
  private kick(): void {
    if (this.inFlight || this.paused || this.failure || (this.queue.length === 0 && !this.space.held)) return;
    this.inFlight = this.runBatch();
  }

  /** The next batch: the held one (its records are on the log replicas already), else a bounded prefix of the queue. */
  private takeBatch(): { batch: Entry[]; bytes: number } {
    const held = this.space.held;
    if (held) return { batch: held.batch, bytes: held.batch.reduce((sum, e) => sum + e.frame.length, 0) };
    // The rest waits for the next batch (backpressure).
    let n = 0;
    let bytes = 0;
    while (n < this.queue.length && n < this.limits.maxBatchRecords) {
      const size = this.queue[n]!.frame.length;
      if (n > 0 && bytes + size > this.limits.maxBatchBytes) break;
      bytes += size;
      n++;
    }
    const batch = this.queue.splice(0, n);
    this.queuedBytes -= bytes;
    return { batch, bytes };
  }

  /** Ships a batch to the log replicas (a held batch was shipped already); resolves with the failure, if any. */
  private ship(batch: Entry[]): Promise<Error | undefined> {
    const held = this.space.held;
    if (held) return Promise.resolve(held.shipError);
    if (!this.replicate) return Promise.resolve(undefined);
    return this.replicate(batch.map((e) => e.json)).then(
      () => undefined,
      (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
    );
  }

  /** Writes the batch's frames at `position` and fdatasyncs them. */
  private async writeBatch(fd: FileHandle, batch: Entry[], bytes: number, position: number): Promise<void> {
    const buf = batch.length === 1 ? batch[0]!.frame : Buffer.concat(batch.map((e) => e.frame), bytes);
    // A batch of a few records is written on this thread (shared/file-io.ts): the fdatasync after it waits for the disk.
    await pwriteFull(fd, buf, position);
    await timedFsync(this.onFsync && ((seconds) => this.onFsync!('oplog', seconds)), () => fd.datasync());
    this.fsyncCount++;
  }

  private async runBatch(): Promise<void> {
    const { batch, bytes } = this.takeBatch();
    invariant(batch.length > 0 && this.queuedBytes >= 0, 'batch non-empty and queue accounting sane');
    const fd = this.fd;
    const position = this.logBytes;
    // Started before the local write so both proceed together; its failure is handled after the apply.
    const shipped = this.ship(batch);
    try {
      await this.writeBatch(fd, batch, bytes, position);
    } catch (e) {
      if (isNoSpace(e) && (await this.cutBackTo(fd, position))) {
        const shipError = await shipped;
        this.space.onFull(batch, e, shipError, this.logSeq, (err) => this.rejectQueued(err));
      } else await this.failWrite(batch, e, shipped);
      this.inFlight = undefined;
      // The next batch tries the disk again (a held batch waits for its timer instead).
      if (!this.space.held) this.kick();
      this.notifyIdle();
      return;
    }

    const shipError = await shipped;
    invariant(this.fd === fd && this.logBytes === position, 'log not switched or grown during a batch');
    this.logBytes = position + bytes;
    this.batchCount++;
    this.recordCount += batch.length;
    this.space.onWritten();
    this.applyBatch(batch, shipError);
    this.inFlight = undefined;
    this.kick();
    this.notifyIdle();
  }

  /**
   * Durable now: apply in log order, synchronously, so no other code can observe a state with only
   * part of the batch applied. A batch not on every log replica is applied but its appends reject.
   */
  private applyBatch(batch: Entry[], shipError: Error | undefined): void {
    for (const entry of batch) {
      try {
        const value = this.applyFn(JSON.parse(entry.json));
        if (shipError) entry.reject(new GfsError('UNAVAILABLE', `logged here but not on every log replica, outcome unknown: ${errorMessage(shipError)}`));
        else entry.resolve(value);
      } catch (e) {
        entry.reject(e);
      }
    }
  }

  /** After a failed write or fsync the file's contents (and the page cache's) are unknown; appending more could ack records behind a hole. */
  private async failWrite(batch: Entry[], e: unknown, shipped: Promise<unknown>): Promise<void> {
    this.failure = e instanceof Error ? e : new Error(String(e));
    await shipped;
    this.logger?.error({ err: errorMessage(e), logSeq: this.logSeq }, 'oplog: write failed; log unusable');
    const err = failedError(this.failure);
    for (const entry of batch) entry.reject(err);
    this.space.abandon();
    this.rejectQueued(failedError(this.failure));
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

  /** Refuses every queued append with `err`; returns how many there were. */
  private rejectQueued(err: Error): number {
    const rest = this.queue.splice(0);
    this.queuedBytes = 0;
    for (const entry of rest) entry.reject(err);
    return rest.length;
  }

  private notifyIdle(): void {
    if (this.inFlight || (this.queue.length > 0 && !this.failure)) return;
    const waiters = this.idleWaiters.splice(0);
    for (const w of waiters) w();
  }

  // ---- checkpoints ----

  /**
   * Steps 1 to 3 of a checkpoint, with the writer paused: wait for the batch in flight, serialise
   * the state, switch to a new log file. Returns the new log's number and the serialised state.
   */
  private async switchLog(snapshot: (() => unknown) | undefined): Promise<{ newSeq: number; createdAtMs: number; stateJson: string | undefined }> {
    // (1) No new batch may start; wait for the one in flight, whose records
    // have then been applied (apply runs inside the writer).
    this.paused = true;
    try {
      if (this.inFlight) await this.inFlight;
      if (this.failure) throw failedError(this.failure);
      invariant(this.inFlight === undefined, 'no batch in flight while paused');

      // (2) The state now covers exactly the records in logs <= logSeq.
      // Serialise it here, synchronously: snapshot() may return live objects
      // that later applies would change, and an unserialisable state must
      // fail before any log is switched (an unreadable checkpoint would let
      // step 5 delete logs that recovery still needs).
      const createdAtMs = Date.now();
      const stateJson: string | undefined = snapshot === undefined ? undefined : JSON.stringify(snapshot());
      invariant(snapshot === undefined || typeof stateJson === 'string', 'checkpoint snapshot() must return a JSON value');

      // (3) Later records go to a new log. It must be durable before any
      // record in it is acknowledged, and before the checkpoint names it.
      const newSeq = this.logSeq + 1;
      const newFd = await createDurableFile(join(this.dir, logFileName(newSeq)));
      this.fsyncCount += 2;
      const oldFd = this.fd;
      this.fd = newFd;
      this.logSeq = newSeq;
      this.logBytes = 0;
      await oldFd.close().catch((e: unknown) => this.logger?.warn({ err: errorMessage(e) }, 'oplog: closing old log failed'));
      return { newSeq, createdAtMs, stateJson };
    } finally {
      this.paused = false;
      this.kick();
    }
  }

  private async runCheckpoint(source: CheckpointSource): Promise<void> {
    const baseSeq = this.lastCheckpointSeq;
    const { newSeq, createdAtMs, stateJson } = await this.switchLog(typeof source === 'function' ? source : undefined);
    // (4) Appends run again; the checkpoint is written beside them.
    const { fsyncSeconds } =
      stateJson !== undefined
        ? { fsyncSeconds: await writeCheckpointFile(this.dir, newSeq, createdAtMs, stateJson) }
        : await (source as FileCheckpointSource).fromFiles({ dir: this.dir, baseSeq, newSeq, createdAtMs });
    this.onFsync?.('checkpoint', fsyncSeconds);
    this.fsyncCount += 2;
    this.lastCheckpointSeq = newSeq;
    this.lastCheckpointAtMs = createdAtMs;
    this.logger?.info({ logSeq: newSeq }, 'oplog: checkpoint written');
    // (5) Only now is everything before newSeq redundant.
    this.fsyncCount += await deleteFilesBefore(this.dir, newSeq, this.logger);
  }
}
