import { crc32c } from '../shared/checksum.js';
import { GfsError } from '../shared/errors.js';
import type { AppendAnswer, AppendReq, ApplyOp, ApplyReq, WriteAnswer, WriteReq } from '../shared/wire.js';
import { placeRecord } from './append.js';
import type { ApplyResult, Forwarder } from './forward.js';
import type { LeaseTable } from './leases.js';
import type { PushBuffer } from './push.js';
import type { ReplicaStore } from './store.js';

// Mutations. As primary: check the lease, take the pushed data, assign the
// next serial number, apply locally, forward the order to every secondary
// and answer success only when all of them applied it. As secondary: apply
// what the primary ordered, in the order it arrives (the forwarder keeps it
// in serial order). Each client request id is applied at most once while
// this primary lives: a retry gets the earlier answer.

/** Remembered request ids, for at-most-once answers to retried mutations (bounded). */
const maxRememberedRequests = 100_000;

export interface MutatorOptions {
  store: ReplicaStore;
  push: PushBuffer;
  leases: LeaseTable;
  forwarder: Forwarder;
  chunkSizeBytes: number;
}

export class Mutator {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly serials = new Map<string, number>();
  private readonly done = new Map<string, Promise<unknown>>();
  readonly counters = { writes: 0, appends: 0, pads: 0, applied: 0, duplicates: 0, refusedNoLease: 0 };

  constructor(private readonly o: MutatorOptions) {}

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

  private nextSerial(handle: string): number {
    const s = (this.serials.get(handle) ?? 0) + 1;
    this.serials.set(handle, s);
    return s;
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

  /** The mutation's data: inline in the request, or taken from the push buffer. */
  private takeData(src: { dataId?: string; inline?: string }, sizeBytes: number, crc?: number): Buffer {
    if (src.inline !== undefined) {
      const data = Buffer.from(src.inline, 'base64');
      if (data.length !== sizeBytes) throw new GfsError('BAD_REQUEST', `inline data has ${data.length} bytes, not ${sizeBytes}`);
      if (crc !== undefined && crc32c(data) !== crc) throw new GfsError('BAD_REQUEST', 'inline data does not match its checksum');
      return data;
    }
    const dataId = src.dataId!;
    const d = this.o.push.take(dataId);
    if (!d) throw new GfsError('UNKNOWN_DATA', `no pushed data ${dataId} (expired or never pushed)`);
    if (d.data.length !== sizeBytes) throw new GfsError('BAD_REQUEST', `pushed data ${dataId} has ${d.data.length} bytes, not ${sizeBytes}`);
    if (crc !== undefined && d.crc32c !== crc) throw new GfsError('BAD_REQUEST', `pushed data ${dataId} does not match its checksum`);
    return d.data;
  }

  private checkVersion(handle: string, version: number): void {
    const info = this.o.store.info(handle);
    if (!info) throw new GfsError('NOT_FOUND', `no replica of ${handle} here`);
    if (info.version !== version) throw new GfsError('STALE_VERSION', `replica of ${handle} is at version ${info.version}, request is for ${version}`);
  }

  private async forwardAll(handle: string, version: number, secondaries: { id: string; url: string; rack: string }[], op: ApplyOp): Promise<void> {
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

  async write(req: WriteReq): Promise<WriteAnswer> {
    return this.once(req.clientId, req.requestId, () => this.track(req.handle, this.writeAsPrimary(req)));
  }

  private async writeAsPrimary(req: WriteReq): Promise<WriteAnswer> {
    {
      this.checkVersion(req.handle, req.version);
      if (req.offset + req.sizeBytes > this.o.chunkSizeBytes) throw new GfsError('OUT_OF_RANGE', `write past the end of the chunk`);
      const lease = await this.o.leases.ensure(req.handle, req.version);
      const data = this.takeData(req, req.sizeBytes, req.crc32c);
      let forwarded!: Promise<void>;
      const chunkSizeBytes = await this.serialize(req.handle, async () => {
        this.o.leases.check(req.handle, req.version);
        this.o.leases.acted(req.handle, req.version); // the primary log (chunkserver/leases.ts)
        const serial = this.nextSerial(req.handle);
        const len = await this.o.store.write(req.handle, req.offset, data, req.version);
        // Queued while still serialized: secondaries receive orders in serial order.
        forwarded = this.forwardAll(req.handle, req.version, lease.secondaries, { kind: 'write', serial, offset: req.offset, dataId: req.dataId, inline: req.inline, sizeBytes: req.sizeBytes });
        return len;
      });
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
      const data = this.takeData(req, req.sizeBytes, req.crc32c);
      let forwarded!: Promise<void>;
      const answer = await this.serialize(req.handle, async (): Promise<AppendAnswer> => {
        this.o.leases.check(req.handle, req.version);
        this.o.leases.acted(req.handle, req.version); // the primary log (chunkserver/leases.ts)
        const len = this.o.store.info(req.handle)!.sizeBytes;
        const place = placeRecord(len, data.length, this.o.chunkSizeBytes);
        const serial = this.nextSerial(req.handle);
        if (place.kind === 'too-large') throw new GfsError('RECORD_TOO_LARGE', `record of ${data.length} bytes exceeds the limit of ${place.maxBytes}`);
        if (place.kind === 'pad') {
          await this.o.store.pad(req.handle, place.toSizeBytes, req.version);
          forwarded = this.forwardAll(req.handle, req.version, lease.secondaries, { kind: 'pad', serial, toSizeBytes: place.toSizeBytes });
          this.counters.pads++;
          return { status: 'chunk-full' };
        }
        await this.o.store.write(req.handle, place.offset, data, req.version);
        forwarded = this.forwardAll(req.handle, req.version, lease.secondaries, { kind: 'write', serial, offset: place.offset, dataId: req.dataId, inline: req.inline, sizeBytes: data.length });
        return { status: 'ok', offset: place.offset };
      });
      await forwarded;
      if (answer.status === 'ok') this.counters.appends++;
      return answer;
    }
  }

  /** Secondary: apply the primary's order. One result per op, in order. */
  async apply(req: ApplyReq): Promise<{ results: ApplyResult[] }> {
    this.checkVersion(req.handle, req.version);
    return this.serialize(req.handle, async () => {
      const results: ApplyResult[] = [];
      for (const op of req.ops) {
        try {
          if (op.kind === 'write') {
            const data = this.takeData(op, op.sizeBytes);
            await this.o.store.write(req.handle, op.offset, data, req.version);
          } else {
            await this.o.store.pad(req.handle, op.toSizeBytes, req.version);
          }
          this.counters.applied++;
          results.push({ ok: true });
        } catch (e) {
          const g = e instanceof GfsError ? e : new GfsError('INTERNAL', (e as Error).message);
          results.push({ ok: false, code: g.code, error: g.message });
        }
      }
      return { results };
    });
  }
}

