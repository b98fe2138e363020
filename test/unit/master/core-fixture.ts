import { ChunkState } from '../../../master/core/chunk-state.js';
import assert from 'node:assert/strict';
import { Namespace, type Op } from '../../../master/core/namespace.js';
import { isGfsError, type ErrorCode } from '../../../shared/errors.js';

// A master's core state with no process, disk or socket: a namespace built
// from log records (kept, so a test can rebuild the state "after a restart"
// from the records alone) and a ChunkState with registered chunkservers.

export const deadMs = 1_000;

/** As in production: the record is logged as JSON and applied from a parsed copy (kept in `log` when given). */
export function run(ns: Namespace, op: Op | undefined, log?: Op[]): void {
  if (op === undefined) return;
  const rec = JSON.parse(JSON.stringify(op)) as Op;
  log?.push(rec);
  ns.apply(JSON.parse(JSON.stringify(rec)) as Op);
}

/** fn throws a GfsError with this code. */
export function throwsCode(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (e: unknown) => isGfsError(e, code), `expected ${code}`);
}

export class CoreFixture {
  ns = new Namespace();
  st = new ChunkState(deadMs, () => 0);
  readonly log: Op[] = [];

  constructor(readonly servers: string[] = ['a', 'b', 'c'], nowMs = 0) {
    for (const id of servers) this.st.servers.upsert({ id, url: `http://${id}`, rack: `r-${id}`, capacityBytes: 1e12, usedBytes: 0, freeBytes: 1e12 }, nowMs);
  }

  /** Logs and applies a record, as the runtime does (through JSON, like the op log). */
  apply(op: Op | undefined): Op | undefined {
    if (!op) return undefined;
    const rec = JSON.parse(JSON.stringify(op)) as Op;
    this.log.push(rec);
    this.ns.apply(JSON.parse(JSON.stringify(rec)) as Op);
    return rec;
  }

  /** A file of `chunks` chunks; returns their handles. */
  file(path: string, chunks = 1, replication = 3): string[] {
    this.apply(this.ns.checkCreate(path, replication, 1));
    const op = this.apply(this.ns.checkAllocate(path, chunks - 1, 2));
    return op && op.op === 'allocate' ? op.handles : [];
  }

  /** Every server reports holding `handle` at its current version (and is listed). */
  hold(handle: string, servers = this.servers, sizeBytes = 0): void {
    const version = this.ns.chunks.get(handle)!.version;
    for (const id of servers) {
      this.st.servers.servers.get(id)!.held.set(handle, { version, sizeBytes });
      this.st.servers.addLocation(handle, id);
    }
  }

  /** Keeps every server alive at nowMs. */
  beat(nowMs: number): void {
    for (const s of this.st.servers.servers.values()) s.lastSeenMs = nowMs;
  }

  /** A master restarted: the namespace replayed from the logged records only, the live view empty. */
  restart(nowMs = 0): CoreFixture {
    const f = new CoreFixture(this.servers, nowMs);
    for (const r of this.log) f.apply(r);
    f.st.recover(f.ns);
    return f;
  }
}
