import { GfsError } from '../shared/errors.js';
import { recordBatchMaxBytes } from '../shared/record-wire.js';
import { frameRecord } from './records.js';

// A batching record appender: many framed records in one request to the
// primary, which places each on its own and answers one offset per record
// (GfsClient.appendRawBatch). A record appended while nothing is pending or
// in flight leaves at once; records appended while a batch is in flight wait
// for it (at most lingerMs when there is room for another batch) and go
// together in the next. Bounded: at most maxBatchBytes per batch, maxInFlight
// batches at once, and maxPendingBytes waiting (append() then waits too).

export interface AppenderOptions {
  /** How long a record may wait for company while a batch is in flight and there is room for another (default 0: it goes at once). */
  lingerMs?: number;
  /** Bytes of framed records in one batch at most (default and cap: one request, 1 MiB). */
  maxBatchBytes?: number;
  /** Batches in flight at once (default 1: batches land in the order they were appended). */
  maxInFlight?: number;
  /** Framed bytes waiting at most; append() waits for room beyond it (default 16 MiB). */
  maxPendingBytes?: number;
  /** False: records go as given, without the record framing (the mount's O_APPEND writes). Default true. */
  framed?: boolean;
}

/** What the appender needs of a client (GfsClient has it). */
export interface BatchAppendIo {
  appendRawBatch(path: string, records: Buffer[]): Promise<number[]>;
}

interface Waiting {
  frame: Buffer;
  resolve: (offset: number) => void;
  reject: (e: Error) => void;
}

export class RecordAppender {
  private pending: Waiting[] = [];
  private pendingBytes = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly room: (() => void)[] = [];
  private readonly lingerMs: number;
  private readonly maxBatchBytes: number;
  private readonly maxInFlight: number;
  private readonly maxPendingBytes: number;
  private readonly framed: boolean;
  /** Batches sent and records acknowledged, ever. */
  readonly counters = { batches: 0, records: 0 };

  constructor(
    private readonly io: BatchAppendIo,
    readonly path: string,
    o: AppenderOptions = {},
  ) {
    this.lingerMs = Math.max(0, o.lingerMs ?? 0);
    this.maxBatchBytes = Math.max(1, Math.min(o.maxBatchBytes ?? recordBatchMaxBytes, recordBatchMaxBytes - 4));
    this.maxInFlight = Math.max(1, o.maxInFlight ?? 1);
    this.maxPendingBytes = Math.max(this.maxBatchBytes, o.maxPendingBytes ?? 16 * 1024 * 1024);
    this.framed = o.framed ?? true;
  }

  /** Nothing waiting and nothing in flight. */
  get idle(): boolean {
    return this.pending.length === 0 && this.inFlight === 0;
  }

  /** Appends one record (framed, see client/records.ts, unless framed: false); resolves to the file offset of its frame once every replica applied it. */
  async append(payload: Buffer): Promise<number> {
    while (this.pendingBytes >= this.maxPendingBytes) await new Promise<void>((r) => this.room.push(r));
    const frame = this.framed ? frameRecord(payload) : payload;
    const p = new Promise<number>((resolve, reject) => this.pending.push({ frame, resolve, reject }));
    this.pendingBytes += frame.length;
    this.pump();
    return p;
  }

  /** The name issue 19's library gives append(). */
  write(payload: Buffer): Promise<number> {
    return this.append(payload);
  }

  /** Resolves once every record appended before the call has been answered (acknowledged or failed). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.pump(true);
    while (this.pending.length > 0 || this.inFlight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  /**
   * Sends what may leave now: with no batch in flight, at once (a lone record
   * is never delayed); with one in flight and room for another, after
   * lingerMs (or at once when a batch is full or lingerMs is 0); with no
   * room, when a batch answers (done() forces it: those records waited a
   * round trip already).
   */
  private pump(force = false): void {
    while (this.pending.length > 0 && this.inFlight < this.maxInFlight) {
      if (this.inFlight === 0 || force || this.lingerMs === 0 || this.pendingBytes >= this.maxBatchBytes) {
        this.sendOne();
        continue;
      }
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.pump(true);
      }, this.lingerMs);
      return;
    }
  }

  private sendOne(): void {
    const batch: Waiting[] = [];
    let bytes = 0;
    while (this.pending.length > 0 && (batch.length === 0 || bytes + this.pending[0]!.frame.length + 4 <= this.maxBatchBytes)) {
      const w = this.pending.shift()!;
      bytes += w.frame.length + 4;
      batch.push(w);
    }
    this.pendingBytes -= batch.reduce((s, w) => s + w.frame.length, 0);
    for (const r of this.room.splice(0)) r();
    this.inFlight++;
    this.counters.batches++;
    this.io.appendRawBatch(this.path, batch.map((w) => w.frame)).then(
      (offsets) => {
        batch.forEach((w, i) => w.resolve(offsets[i]!));
        this.counters.records += batch.length;
        this.done();
      },
      (e: unknown) => {
        const err = e instanceof Error ? e : new GfsError('INTERNAL', String(e));
        for (const w of batch) w.reject(err);
        this.done();
      },
    );
  }

  private done(): void {
    this.inFlight--;
    this.pump(true);
    if (this.pending.length === 0 && this.inFlight === 0) for (const r of this.idleWaiters.splice(0)) r();
  }
}
