import { crc32c } from '../shared/checksum.js';
import { GfsError } from '../shared/errors.js';
import { pushCrcBlockBytes, type AppendAnswer, type AppendReq, type ChunkTruncateReq, type WriteAnswer, type WriteReq } from '../shared/wire.js';
import type { OrderedOp } from '../shared/record-wire.js';
import { maxRecordBytes, placeRecord, planGroup, type GroupBounds } from './append.js';
import { AppendGroups, type WaitingAppend } from './append-groups.js';
import type { GivenCrcs } from './checksum-plan.js';
import type { ApplyResult, Forwarder } from './forward.js';
import type { LeaseTable } from './leases.js';
import type { PushBuffer } from './push.js';
import { notRunCodes, SerialOrder } from './serial-order.js';
import type { ReplicaStore } from './store.js';

// Mutations. As primary: check the lease, take the pushed data, apply
// locally, assign the next serial number of the (chunk, version), forward the
// order to every secondary and answer success only when all of them applied
// it. Small record appends go in groups (chunkserver/append-groups.ts): one
// write and one serial for every record that arrived while the group before
// was under way. As secondary: apply what the primary ordered in serial
// order, whatever order the requests arrive in (chunkserver/serial-order.ts).
// Each client request id is applied at most once while this primary lives: a
// retry gets the earlier answer.

/** Remembered request ids, for at-most-once answers to retried mutations (bounded). */
const maxRememberedRequests = 100_000;
/** One append group at most: bounded so a group's forward stays well inside a secondary's apply body limit (forward.ts). */
export const appendGroupBounds: GroupBounds = { maxRecords: 8192, maxBytes: 2 * 1024 * 1024 };

export interface MutatorOptions {
  store: ReplicaStore;
  push: PushBuffer;
  leases: LeaseTable;
  forwarder: Forwarder;
  chunkSizeBytes: number;
  /** As secondary: how long a serial waits for the ones before it (below the primary's forward timeout). */
  gapTimeoutMs: number;
}

export class Mutator {
  private readonly chains = new Map<string, Promise<unknown>>();
  /** Per handle, the last serial assigned and its version: a new version starts a fresh serial space. */
  private readonly serials = new Map<string, { version: number; last: number }>();
  private readonly done = new Map<string, Promise<unknown>>();
  readonly counters = { writes: 0, appends: 0, pads: 0, truncates: 0, applied: 0, duplicates: 0, refusedNoLease: 0, applyRequests: 0 };
  readonly order: SerialOrder;
  readonly groups: AppendGroups;

  constructor(private readonly o: MutatorOptions) {
    this.order = new SerialOrder({ gapTimeoutMs: o.gapTimeoutMs });
    this.groups = new AppendGroups((handle, version, pending) => this.commitGroup(handle, version, pending));
  }

  /** Runs fn after every earlier mutation of handle on this server has run (local order = serial order). */
  private serialize<T>(handle: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(handle) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.chains.set(handle, tail);
    void tail.then(() => {
      if (this.chains.get(handle) === tail) this.chains.delete(handle);
    });
    return next;
  }

  private nextSerial(handle: string, version: number): number {
    const prev = this.serials.get(handle);
    const last = prev && prev.version === version ? prev.last : 0;
    this.serials.set(handle, { version, last: last + 1 });
    return last + 1;
  }

  /** Refuses (before anything is applied or ordered) when a secondary's forward lane is full. */
  private checkRoom(handle: string, version: number, secondaries: { id: string; url: string; rack: string }[]): void {
    if (!this.o.forwarder.hasRoom(secondaries, handle, version)) throw new GfsError('TOO_BUSY', `too many mutations of ${handle} queued for the secondaries`);
  }

  private once<T>(clientId: string, requestId: string, fn: () => Promise<T>): Promise<T> {
    const key = `${clientId}/${requestId}`;
    const prev = this.done.get(key);
    if (prev) {
      this.counters.duplicates++;
      return prev as Promise<T>;
    }
    const p = fn();
    this.done.set(key, p);
    // A failed request may be retried under the same id and must then run again.
    p.catch(() => this.done.delete(key));
    if (this.done.size > maxRememberedRequests) this.done.delete(this.done.keys().next().value!);
    return p;
  }

  /**
   * The mutation's data: in the request's binary body, inline in it, or taken from the push buffer (with
   * the block crcs it arrived with). `release` gives a push buffer slot back once the data is written.
   */
  private takeData(src: { dataId?: string; inline?: string; data?: Buffer }, sizeBytes: number, crc?: number): { data: Buffer; given?: GivenCrcs; release: () => void } {
    if (src.data !== undefined) {
      if (src.data.length !== sizeBytes) throw new GfsError('BAD_REQUEST', `data has ${src.data.length} bytes, not ${sizeBytes}`);
      return { data: src.data, release: () => undefined };
    }
    if (src.inline !== undefined) {
      const data = Buffer.from(src.inline, 'base64');
      if (data.length !== sizeBytes) throw new GfsError('BAD_REQUEST', `inline data has ${data.length} bytes, not ${sizeBytes}`);
      if (crc !== undefined && crc32c(data) !== crc) throw new GfsError('BAD_REQUEST', 'inline data does not match its checksum');
      return { data, release: () => undefined };
    }
    const dataId = src.dataId!;
    const d = this.o.push.take(dataId);
    if (!d) throw new GfsError('UNKNOWN_DATA', `no pushed data ${dataId} (expired or never pushed)`);
    if (d.data.length !== sizeBytes || (crc !== undefined && d.crc32c !== crc)) {
      d.release();
      if (d.data.length !== sizeBytes) throw new GfsError('BAD_REQUEST', `pushed data ${dataId} has ${d.data.length} bytes, not ${sizeBytes}`);
      throw new GfsError('BAD_REQUEST', `pushed data ${dataId} does not match its checksum`);
    }
    // Applied straight from the push buffer (no copy); the caller releases its slot once written.
    return { data: d.data, given: { crcs: d.blockCrcs, blockBytes: pushCrcBlockBytes }, release: d.release };
  }

  private checkVersion(handle: string, version: number): void {
    const info = this.o.store.require(handle);
    if (info.version !== version) throw new GfsError('STALE_VERSION', `replica of ${handle} is at version ${info.version}, request is for ${version}`);
  }

  private async forwardAll(handle: string, version: number, secondaries: { id: string; url: string; rack: string }[], op: OrderedOp): Promise<void> {
    await Promise.all(secondaries.map((s) => this.o.forwarder.send(s, handle, version, op)));
  }

  /** Mutations under way as primary, by handle: a revocation waits for them. */
  private readonly active = new Map<string, Set<Promise<unknown>>>();

  private track<T>(handle: string, p: Promise<T>): Promise<T> {
    let set = this.active.get(handle);
    if (!set) this.active.set(handle, (set = new Set()));
    set.add(p);
    const done = () => {
      set!.delete(p);
      if (set!.size === 0 && this.active.get(handle) === set) this.active.delete(handle);
    };
    p.then(done, done);
    return p;
  }

  /**
   * Gives the lease on handle back (the master revokes it for a snapshot):
   * no new mutation starts as primary, and the answer comes only after every
   * mutation already under way has finished on all replicas, so the master
   * may treat the lease as ended at once.
   */
  async revoke(handle: string, timeoutMs: number): Promise<void> {
    this.o.leases.revoke(handle);
    const pending = [...(this.active.get(handle) ?? [])];
    if (pending.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    const r = await Promise.race([Promise.allSettled(pending), timedOut]);
    clearTimeout(timer);
    if (r === 'timeout') throw new GfsError('TIMEOUT', `mutations on ${handle} still under way`);
  }

  /** A write; `data` carries the bytes of a binary request (routes.ts), else they are inline or pushed. */
  async write(req: WriteReq & { data?: Buffer }): Promise<WriteAnswer> {
    return this.once(req.clientId, req.requestId, () => this.track(req.handle, this.writeAsPrimary(req)));
  }

  private async writeAsPrimary(req: WriteReq & { data?: Buffer }): Promise<WriteAnswer> {
    {
      this.checkVersion(req.handle, req.version);
      if (req.offset + req.sizeBytes > this.o.chunkSizeBytes) throw new GfsError('OUT_OF_RANGE', `write past the end of the chunk`);
      const lease = await this.o.leases.ensure(req.handle, req.version);
      const { data, given, release } = this.takeData(req, req.sizeBytes, req.crc32c);
      let forwarded!: Promise<void>;
      let chunkSizeBytes: number;
      try {
        chunkSizeBytes = await this.serialize(req.handle, async () => {
          this.o.leases.check(req.handle, req.version);
          this.o.leases.acted(req.handle, req.version); // the primary log (chunkserver/leases.ts)
          this.checkRoom(req.handle, req.version, lease.secondaries);
          const len = await this.o.store.write(req.handle, req.offset, data, req.version, given);
          // Numbered only once applied here (a failure leaves no gap), and queued while still serialized.
          const serial = this.nextSerial(req.handle, req.version);
          // A pushed piece goes on by its id (each secondary has its own copy), so the slot can go back now.
          forwarded = this.forwardAll(req.handle, req.version, lease.secondaries, dataOp(serial, req.offset, req.sizeBytes, data, req.dataId));
          return len;
        });
      } finally {
        release(); // written here (or failed): the secondaries apply their own copies
      }
      await forwarded;
      this.counters.writes++;
      return { ok: true as const, chunkSizeBytes };
    }
  }

  async append(req: AppendReq): Promise<AppendAnswer> {
    return this.once(req.clientId, req.requestId, () => this.track(req.handle, this.appendAsPrimary(req)));
  }

  private async appendAsPrimary(req: AppendReq): Promise<AppendAnswer> {
    {
      this.checkVersion(req.handle, req.version);
      const lease = await this.o.leases.ensure(req.handle, req.version);
      const { data, given, release } = this.takeData(req, req.sizeBytes, req.crc32c);
      if (req.dataId === undefined) {
        // Small (inline) data: with the other small appends, in a group (no push slot to give back).
        const offsets = await this.appendGrouped(req.handle, req.version, [data]);
        return offsets.length > 0 ? { status: 'ok', offset: offsets[0]! } : { status: 'chunk-full' };
      }
      let forwarded!: Promise<void>;
      const answer = await this.serialize(req.handle, async (): Promise<AppendAnswer> => {
        this.o.leases.check(req.handle, req.version);
        this.o.leases.acted(req.handle, req.version); // the primary log (chunkserver/leases.ts)
        const len = this.o.store.info(req.handle)!.sizeBytes;
        const place = placeRecord(len, data.length, this.o.chunkSizeBytes);
        if (place.kind === 'too-large') throw new GfsError('RECORD_TOO_LARGE', `record of ${data.length} bytes exceeds the limit of ${place.maxBytes}`);
        this.checkRoom(req.handle, req.version, lease.secondaries);
        if (place.kind === 'pad') {
          await this.o.store.pad(req.handle, place.toSizeBytes, req.version);
          const serial = this.nextSerial(req.handle, req.version);
          forwarded = this.forwardAll(req.handle, req.version, lease.secondaries, { kind: 'pad', serial, toSizeBytes: place.toSizeBytes });
          this.counters.pads++;
          return { status: 'chunk-full' };
        }
        await this.o.store.write(req.handle, place.offset, data, req.version, given);
        const serial = this.nextSerial(req.handle, req.version);
        forwarded = this.forwardAll(req.handle, req.version, lease.secondaries, dataOp(serial, place.offset, data.length, data, req.dataId));
        return { status: 'ok', offset: place.offset };
      }).finally(release); // written, padded past, or failed: the secondaries apply their own copies
      await forwarded;
      if (answer.status === 'ok') this.counters.appends++;
      return answer;
    }
  }

  /** Sets the chunk's length exactly on every replica (a file truncated to within this chunk), ordered with its other mutations. */
  async truncate(req: ChunkTruncateReq): Promise<{ ok: true; chunkSizeBytes: number }> {
    return this.once(req.clientId, req.requestId, () =>
      this.track(
        req.handle,
        (async () => {
          this.checkVersion(req.handle, req.version);
          if (req.toSizeBytes > this.o.chunkSizeBytes) throw new GfsError('OUT_OF_RANGE', `length ${req.toSizeBytes} is past the chunk size ${this.o.chunkSizeBytes}`);
          const lease = await this.o.leases.ensure(req.handle, req.version);
          let forwarded!: Promise<void>;
          const len = await this.serialize(req.handle, async () => {
            this.o.leases.check(req.handle, req.version);
            this.o.leases.acted(req.handle, req.version); // the primary log (chunkserver/leases.ts)
            this.checkRoom(req.handle, req.version, lease.secondaries);
            const n = await this.o.store.setLength(req.handle, req.toSizeBytes, req.version);
            const serial = this.nextSerial(req.handle, req.version);
            forwarded = this.forwardAll(req.handle, req.version, lease.secondaries, { kind: 'truncate', serial, toSizeBytes: req.toSizeBytes });
            return n;
          });
          await forwarded;
          this.counters.truncates++;
          return { ok: true as const, chunkSizeBytes: len };
        })(),
      ),
    );
  }

  /**
   * A batch of records from one client request (POST /chunk/append-batch):
   * the offsets of the records placed, in order; the ones after them found
   * the chunk full (it is padded now) and go to the next chunk.
   */
  async appendBatch(req: { handle: string; version: number; clientId: string; requestId: string; records: Buffer[] }): Promise<{ offsets: number[] }> {
    return this.once(req.clientId, req.requestId, () =>
      this.track(
        req.handle,
        (async () => {
          this.checkVersion(req.handle, req.version);
          await this.o.leases.ensure(req.handle, req.version);
          return { offsets: await this.appendGrouped(req.handle, req.version, req.records) };
        })(),
      ),
    );
  }

  private appendGrouped(handle: string, version: number, records: Buffer[]): Promise<number[]> {
    const max = maxRecordBytes(this.o.chunkSizeBytes);
    for (const r of records) if (r.length > max) throw new GfsError('RECORD_TOO_LARGE', `record of ${r.length} bytes exceeds the limit of ${max}`);
    return this.groups.submit(handle, version, records);
  }

  /**
   * One group of appends (AppendGroups calls it while no other group of the
   * chunk is under way): placed at the chunk's end, written with one write,
   * padded if a record did not fit, ordered to the secondaries, and answered
   * when all of them applied it. Returns how many requests it took.
   */
  private async commitGroup(handle: string, version: number, pending: WaitingAppend[]): Promise<number> {
    let batch: WaitingAppend[] = [];
    let offsets: number[][] = [];
    let forwarded: Promise<unknown> = Promise.resolve();
    try {
      await this.serialize(handle, async () => {
        try {
          this.o.leases.check(handle, version);
        } catch (e) {
          batch = pending.splice(0);
          throw e;
        }
        this.o.leases.acted(handle, version); // the primary log (chunkserver/leases.ts)
        const secondaries = this.o.leases.get(handle)!.secondaries;
        const plan = planGroup(this.o.store.require(handle).sizeBytes, this.o.chunkSizeBytes, pending.map((w) => w.sizes), appendGroupBounds);
        batch = pending.splice(0, plan.taken);
        offsets = plan.offsets;
        this.checkRoom(handle, version, secondaries);
        const sends: Promise<void>[] = [];
        if (plan.writeBytes > 0) {
          const parts: Buffer[] = [];
          batch.forEach((w, i) => parts.push(...w.records.slice(0, offsets[i]!.length)));
          const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts, plan.writeBytes);
          await this.o.store.write(handle, plan.writeOffset, data, version);
          const serial = this.nextSerial(handle, version);
          sends.push(this.forwardAll(handle, version, secondaries, { kind: 'write', serial, offset: plan.writeOffset, sizeBytes: data.length, data }));
        }
        if (plan.padTo !== undefined) {
          await this.o.store.pad(handle, plan.padTo, version);
          const serial = this.nextSerial(handle, version);
          sends.push(this.forwardAll(handle, version, secondaries, { kind: 'pad', serial, toSizeBytes: plan.padTo }));
          this.counters.pads++;
        }
        for (const p of sends) p.catch(() => undefined); // awaited below, unless a later step failed first
        forwarded = Promise.all(sends);
      });
      await forwarded;
    } catch (e) {
      for (const w of batch) w.reject(e as Error);
      return batch.length;
    }
    batch.forEach((w, i) => {
      this.counters.appends += offsets[i]!.length;
      w.resolve(offsets[i]!);
    });
    return batch.length;
  }

  /**
   * Secondary: apply the primary's order, one result per op. Ops run in
   * serial order across requests; once one is held back too long (or
   * refused for want of room) the rest of the request, which comes after it,
   * gets the same answer and is sent again by the primary.
   */
  async apply(req: OrderedOps): Promise<{ results: ApplyResult[] }> {
    try {
      return await this.applyInOrder(req);
    } finally {
      this.counters.applyRequests++;
    }
  }

  private async applyInOrder(req: OrderedOps): Promise<{ results: ApplyResult[] }> {
    this.checkVersion(req.handle, req.version);
    const space = `${req.handle}@${req.version}/${req.stream ?? '-'}`;
    const results: ApplyResult[] = [];
    let notRun: ApplyResult | undefined;
    for (const op of req.ops) {
      const r = notRun ?? (await this.order.submit(space, op.serial, req.ackedThrough ?? 0, () => this.serialize(req.handle, () => this.applyOne(req.handle, req.version, op))));
      results.push(r);
      if (!r.ok && notRunCodes.has(r.code ?? '')) notRun = r;
    }
    return { results };
  }

  private async applyOne(handle: string, version: number, op: OrderedOp): Promise<ApplyResult> {
    try {
      if (op.kind === 'write') {
        const { data, given, release } = this.takeData(op, op.sizeBytes);
        try {
          await this.o.store.write(handle, op.offset, data, version, given);
        } finally {
          release();
        }
      } else if (op.kind === 'pad') {
        await this.o.store.pad(handle, op.toSizeBytes, version);
      } else {
        await this.o.store.setLength(handle, op.toSizeBytes, version);
      }
      this.counters.applied++;
      return { ok: true };
    } catch (e) {
      const g = e instanceof GfsError ? e : new GfsError('INTERNAL', (e as Error).message);
      return { ok: false, code: g.code, error: g.message };
    }
  }
}

/** What a secondary is asked to apply: the primary's ops for one chunk at one version, from its serial space. */
export interface OrderedOps {
  handle: string;
  version: number;
  ops: OrderedOp[];
  stream?: string;
  ackedThrough?: number;
}

/** A write to forward: pushed data by its id (each secondary holds its own copy), else the bytes themselves. */
function dataOp(serial: number, offset: number, sizeBytes: number, data: Buffer, dataId: string | undefined): OrderedOp {
  return dataId !== undefined ? { kind: 'write', serial, offset, sizeBytes, dataId } : { kind: 'write', serial, offset, sizeBytes, data };
}
