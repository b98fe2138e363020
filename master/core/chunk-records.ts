import { invariant } from '../../shared/errors.js';
import type { Namespace, Op } from './namespace.js';

// The records that change chunks rather than names: allocation at a file's
// end, reserved handles, copy-on-write copies, version bumps and who took
// them; and the reference counting that lets a chunk go when no file (or
// snapshot) holds it. Part of the namespace's deterministic apply
// (master/core/namespace.ts), kept apart as its own idea.

export type ChunkRecord = Extract<Op, { op: 'allocate' | 'reserve' | 'cow' | 'version' | 'bumped' | 'took' }>;

/** Applies a record that changes chunks: allocation, handles, copy-on-write, versions and who took them. */
export function applyChunkRecord(ns: Namespace, op: ChunkRecord): void {
  switch (op.op) {
    case 'allocate': {
      const f = ns.getFile(op.path);
      invariant(f.chunks.length === op.fromIndex, `allocate at ${op.fromIndex} but ${op.path} has ${f.chunks.length} chunks`);
      for (const h of op.handles) {
        invariant(!ns.chunks.has(h), `handle ${h} allocated twice`);
        ns.chunks.set(h, { version: op.version, refCount: 1 });
        f.chunks.push(h);
        const n = BigInt('0x' + h);
        if (n >= ns.nextHandle) ns.nextHandle = n + 1n;
      }
      // A write is known to the master only when it allocates (approximate: a write inside an
      // allocated chunk moves mtime only when the writer says so, as the mount does at flush).
      [f.mtimeMs, f.mtimeNs, f.ctimeMs, f.ctimeNs] = [op.t, 0, op.t, 0];
      return;
    }
    case 'reserve': {
      const n = BigInt('0x' + op.handle);
      if (n >= ns.nextHandle) ns.nextHandle = n + 1n;
      return;
    }
    case 'cow': {
      const f = ns.getFile(op.path);
      invariant(f.chunks[op.index] === op.oldHandle, `cow of ${op.path}[${op.index}]: expected ${op.oldHandle}, found ${f.chunks[op.index]}`);
      invariant(!ns.chunks.has(op.newHandle), `handle ${op.newHandle} allocated twice`);
      ns.chunks.set(op.newHandle, { version: op.version, refCount: 1 });
      f.chunks[op.index] = op.newHandle;
      unrefChunk(ns, op.oldHandle);
      const n = BigInt('0x' + op.newHandle);
      if (n >= ns.nextHandle) ns.nextHandle = n + 1n;
      return;
    }
    case 'version': {
      const c = ns.chunks.get(op.handle);
      if (c && op.version > c.version) c.version = op.version;
      if (op.pendingFrom !== undefined) ns.pendingBumps.set(op.handle, op.pendingFrom);
      else {
        // Adopted from a replica that had a newer version than the log: who took it is unknown.
        ns.pendingBumps.delete(op.handle);
        ns.took.delete(op.handle);
      }
      return;
    }
    case 'bumped': {
      if (ns.chunks.get(op.handle)?.version === op.version) {
        ns.pendingBumps.delete(op.handle);
        if (op.servers !== undefined) ns.took.set(op.handle, { version: op.version, servers: new Set(op.servers) });
      }
      return;
    }
    case 'took': {
      // Only joins a known set: a chunk never bumped (still at its first version) has none, and
      // a set of just the clone would make every other replica look stale.
      const t = ns.took.get(op.handle);
      if (t && t.version === op.version) t.servers.add(op.server);
      return;
    }
  }
}

/** One reference fewer to chunk h (a file dropped it); with none left the chunk is gone from every table. */
export function unrefChunk(ns: Namespace, h: string): void {
  const c = ns.chunks.get(h);
  invariant(c && c.refCount > 0, `unref of unknown chunk ${h}`);
  if (--c.refCount === 0) {
    ns.chunks.delete(h);
    ns.pendingBumps.delete(h);
    ns.took.delete(h);
  }
}
