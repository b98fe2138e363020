import { GfsError } from '../shared/errors.js';
import type { RwLock } from '../shared/rwlock.js';

// What the replica store keeps in memory per replica, and the checks on the
// arguments of its public calls (shared by the store's parts).

export type ReplicaState = 'creating' | 'live' | 'deleting';

export interface Replica {
  readonly handle: string;
  state: ReplicaState;
  version: number;
  sizeBytes: number;
  /** crc per block; entries past ceil(sizeBytes / blockBytes) are meaningless. Grows on demand. */
  crcs: Uint32Array;
  /** Mutated since the last successful sync(). */
  dirty: boolean;
  /** The sync in flight, so a concurrent sync() waits for it instead of returning early. */
  syncing: Promise<void> | undefined;
  /** Found corrupt (marked on disk): never served or mutated again, only deleted. */
  corrupt: boolean;
  readonly lock: RwLock;
}

export function notFound(handle: string): GfsError {
  return new GfsError('NOT_FOUND', `no replica of chunk ${handle} here`);
}

export function corruptError(handle: string): GfsError {
  return new GfsError('CORRUPT', `replica of chunk ${handle} here is corrupt (waiting for the master to delete it)`, { handle });
}

export function checkVersion(version: unknown): number {
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
    throw new GfsError('BAD_REQUEST', `invalid chunk version: ${String(version)}`);
  }
  return version;
}

export function checkByteCount(name: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new GfsError('OUT_OF_RANGE', `${name} must be a non-negative integer, got ${String(n)}`);
  }
  return n;
}

/** A mutation ordered at one version must not land at another (see ReplicaStore.write). */
export function checkAtVersion(rep: { handle: string; version: number }, atVersion: number | undefined): void {
  if (atVersion !== undefined && rep.version !== atVersion) {
    throw new GfsError('STALE_VERSION', `replica of ${rep.handle} is at version ${rep.version}, the mutation was ordered at ${atVersion}`, { version: rep.version });
  }
}
