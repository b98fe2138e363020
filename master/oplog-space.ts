// The op log (master/oplog.ts) on a full disk. Nothing is wrong with the log then, there is just
// no room for more of it: a failed batch is cut off the file and refused with NO_SPACE, and the
// next batch tries the disk again. With log replicas a batch may already be on a replica when the
// local write fails; dropping it would leave the replicas ahead (they would skip later records as
// resent ones), so it is held and retried, without shipping it again, before anything else is
// written, and new appends are refused meanwhile. This file keeps that state: the held batch, the
// full spell (logged once) and the count of refused records.

import { invariant } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { heldAbandonedError, heldError, NO_SPACE_RETRY_MS, noSpaceError } from './oplog-refusals.js';
import { errorMessage } from './oplog-scan.js';

/** What the space guard needs of a queued append: a way to answer it. */
export interface Refusable {
  reject: (err: unknown) => void;
}

export interface HeldBatch<E> {
  batch: E[];
  /** What shipping the batch to the log replicas gave (it is not shipped again). */
  shipError: Error | undefined;
  timer: NodeJS.Timeout | undefined;
}

export class DiskSpace<E extends Refusable> {
  /** Since when (epoch ms) the disk has been full; undefined while writes succeed. */
  sinceMs: number | undefined;
  /** Records refused with NO_SPACE. */
  refused = 0;
  /**
   * A batch the log replicas may already hold but this disk had no room for. It must reach this
   * log too, so it is retried, without shipping again, before anything else is written.
   */
  held: HeldBatch<E> | undefined;

  constructor(
    private readonly dir: string,
    private readonly logger: Logger | undefined,
    /** Whether a failed batch may be on a log replica now (then it is held, not dropped). */
    private readonly mayBeShipped: () => boolean,
    /** Tries the held batch again (the log's writer, unless it is closed). */
    private readonly retry: () => void,
  ) {}

  get full(): boolean {
    return this.sinceMs !== undefined;
  }

  /** An append while a batch is held: refused at once, counted. */
  refuseAppend(): Error {
    this.refused++;
    return noSpaceError(this.dir);
  }

  /**
   * The disk had no room for `batch` (already cut off the file). Without log replicas the batch is
   * refused (NO_SPACE) and the next batch simply tries again. With them the batch is held and
   * retried every second until it fits, and the queued appends are refused; its callers are answered
   * at once (NO_SPACE, outcomeUnknown: it will be logged and applied once space returns).
   * `rejectQueued` refuses every queued append with the error given and says how many there were.
   */
  onFull(batch: E[], e: unknown, shipError: Error | undefined, logSeq: number, rejectQueued: (err: Error) => number): void {
    if (this.sinceMs === undefined) {
      this.sinceMs = Date.now();
      this.logger?.error(
        { dir: this.dir, err: errorMessage(e), logSeq, logReplicas: this.mayBeShipped() },
        'oplog: disk full; mutations are refused with NO_SPACE until space returns',
      );
    }
    if (!this.held) this.refused += batch.length;
    if (!this.held && !this.mayBeShipped()) {
      for (const entry of batch) entry.reject(noSpaceError(this.dir));
      return;
    }
    if (!this.held) {
      this.held = { batch, shipError, timer: undefined };
      const unknown = heldError(this.dir);
      for (const entry of batch) entry.reject(unknown);
    }
    const held = this.held;
    invariant(held.batch === batch, 'only the held batch runs while one is held');
    this.refused += rejectQueued(noSpaceError(this.dir));
    if (held.timer) clearTimeout(held.timer);
    held.timer = setTimeout(() => {
      held.timer = undefined;
      this.retry();
    }, NO_SPACE_RETRY_MS);
  }

  /** A batch was written: a held one is done with, and a full spell ends. */
  onWritten(): void {
    this.held = undefined;
    if (this.sinceMs !== undefined) {
      this.logger?.info({ dir: this.dir, fullForMs: Date.now() - this.sinceMs, refused: this.refused }, 'oplog: space again; accepting mutations');
      this.sinceMs = undefined;
    }
  }

  /** Gives up on a held batch (closing, or the log failed): its outcome is unknown to its callers. */
  abandon(): void {
    const held = this.held;
    if (!held) return;
    this.held = undefined;
    if (held.timer) clearTimeout(held.timer);
    const err = heldAbandonedError();
    for (const entry of held.batch) entry.reject(err);
  }
}
