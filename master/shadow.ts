import { GfsError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { LogAppendAnswer, LogAppendReq, LogInstallReq } from '../shared/wire.js';
import { Namespace, type NamespaceSnapshot, type Op } from './core/namespace.js';
import { isOpLogRefusal, type OpLog } from './oplog.js';

// A shadow master follows its master's shipped log (master/replicas.ts is
// the sending side): each batch is made durable in the shadow's own log and
// applied before it is answered, so an acknowledged mutation is on every log
// replica. A shadow that fell behind gets the master's whole state installed
// (a checkpoint on a fresh log). Promotion (master.ts) turns it into the master.

export interface FollowerHost {
  readonly oplog: OpLog;
  readonly log: Logger;
  /** The current namespace (replaced by an install). */
  ns(): Namespace;
  replaceNamespace(ns: Namespace): void;
  /** Waits for a checkpoint under way; then starts one if the log grew enough. */
  checkpointIdle(): Promise<void>;
  maybeCheckpoint(): void;
}

export interface Following {
  masterUrl: string;
  lastContactAtMs: number | undefined;
  /** The index the master had reached, as far as this shadow heard. */
  masterIndex: number;
  /** A batch came with a gap: an install is due before anything else is accepted. */
  gap: boolean;
  /** Whole-state installs so far (a healthy shadow has none after catching up). */
  installs: number;
}

export class Follower {
  following: Following;
  /** The index of the last record handed to the local log (applied or queued). */
  private loggedIndex: number;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly host: FollowerHost,
    masterUrl: string,
    appliedIndex: number,
  ) {
    this.following = { masterUrl: masterUrl.replace(/\/+$/, ''), lastContactAtMs: undefined, masterIndex: appliedIndex, gap: false, installs: 0 };
    this.loggedIndex = appliedIndex;
  }

  private check(epoch: number, masterUrl: string): void {
    const ns = this.host.ns();
    if (epoch < ns.epoch) throw new GfsError('STALE_EPOCH', `log from a master of epoch ${epoch}; this shadow has seen epoch ${ns.epoch}`);
    this.following = { ...this.following, masterUrl: masterUrl.replace(/\/+$/, ''), lastContactAtMs: Date.now() };
  }

  /** A batch of the master's log. Durable here (own log, fsynced) and applied before the answer. */
  async acceptLog(req: LogAppendReq): Promise<LogAppendAnswer> {
    this.check(req.epoch, req.masterUrl);
    const f = this.following;
    if (req.firstIndex > this.loggedIndex + 1) {
      f.gap = true;
      throw new GfsError('LOG_GAP', `this shadow has the log up to ${this.loggedIndex}, the batch starts at ${req.firstIndex}`, { lastIndex: this.loggedIndex });
    }
    // A resent batch: what is already here is skipped (the log is append-only and identical).
    const fresh = req.records.slice(this.loggedIndex + 1 - req.firstIndex);
    const parsed: Op[] = [];
    for (const text of fresh) {
      try {
        const op = JSON.parse(text) as Op;
        if (typeof op !== 'object' || op === null || typeof op.op !== 'string') throw new Error('not an operation');
        parsed.push(op);
      } catch (e) {
        throw new GfsError('BAD_REQUEST', `log record is not an operation: ${(e as Error).message}`);
      }
    }
    for (const op of parsed) {
      this.loggedIndex++;
      // An operation the master could not apply fails here the same way: the log still holds it.
      // A record the log refused (a full disk, a broken log) is not here: the batch fails and is resent.
      this.tail = this.host.oplog.append(op).catch((e: unknown) => {
        if (isOpLogRefusal(e)) throw e;
      });
    }
    await this.tail;
    f.masterIndex = Math.max(f.masterIndex, req.firstIndex - 1 + req.records.length);
    if (parsed.length > 0 || this.loggedIndex >= f.masterIndex) f.gap = false;
    this.host.maybeCheckpoint();
    return { lastIndex: this.loggedIndex };
  }

  /** The master's whole state as of log index `index` replaces this one (catch-up after a gap or restart). */
  async installState(req: LogInstallReq): Promise<LogAppendAnswer> {
    this.check(req.epoch, req.masterUrl);
    let snap: NamespaceSnapshot;
    try {
      snap = JSON.parse(req.state) as NamespaceSnapshot;
      if (!Array.isArray(snap.nodes) || !Array.isArray(snap.chunks) || typeof snap.nextHandle !== 'string') throw new Error('not a namespace snapshot');
      snap.appliedIndex = req.index;
      Namespace.fromSnapshot(snap); // refuses a malformed state before anything is replaced
    } catch (e) {
      throw new GfsError('BAD_REQUEST', `bad state: ${(e as Error).message}`);
    }
    await this.tail;
    await this.host.checkpointIdle();
    // The state is written as a checkpoint on a fresh log: a restart recovers exactly it plus what follows.
    await this.host.oplog.checkpoint(() => snap);
    this.host.replaceNamespace(Namespace.fromSnapshot(snap));
    this.loggedIndex = req.index;
    const f = this.following;
    this.following = { ...f, masterIndex: Math.max(f.masterIndex, req.index), gap: false, installs: f.installs + 1 };
    this.host.log.info({ index: req.index, files: this.host.ns().fileCount }, 'shadow installed the master state');
    return { lastIndex: this.loggedIndex };
  }

  /** Throws unless this shadow's log is known complete (or `force`); then waits for what it accepted to be applied. */
  async readyToPromote(force: boolean): Promise<void> {
    const f = this.following;
    if (!force && (f.gap || this.loggedIndex < f.masterIndex || f.lastContactAtMs === undefined)) {
      throw new GfsError('BAD_REQUEST', `this shadow's log may be incomplete (has ${this.loggedIndex}, the master had reached ${f.masterIndex}${f.lastContactAtMs === undefined ? ', never heard from it' : ''}); use --force to promote anyway`);
    }
    await this.tail;
  }
}
