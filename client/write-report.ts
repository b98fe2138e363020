import { GfsError } from '../shared/errors.js';

// What a writer learns about placement: which chunkserver a NO_SPACE answer
// names (the write then asks for a fresh placement without it), and the
// report a write or put answers: the replicas each chunk ended on against the
// file's goal, so a caller knows when a full disk left a chunk short.

/** Where a file's chunks are against its replication goal: the library's answer to "did every chunk get all its replicas?". */
export interface ReplicationReport {
  /** Replicas the file asks for. */
  goal: number;
  /** Per chunk, the chunkservers holding it (ids). */
  chunks: { index: number; replicas: string[] }[];
  /** The chunks with fewer replicas than the goal (a subset of `chunks`). */
  underReplicated: { index: number; replicas: string[] }[];
}

/** Re-placements one piece write asks for at most after full disks (NO_SPACE naming a server). */
export const maxReplacements = 3;

/** The chunkserver a NO_SPACE answer names (a chunkserver's full disk), else undefined (the master's full disk names none). */
export function fullServer(e: unknown): string | undefined {
  if (!(e instanceof GfsError) || e.code !== 'NO_SPACE') return undefined;
  const s = e.detail?.server;
  return typeof s === 'string' ? s : undefined;
}

/** The report of `chunks` (sorted by index in place) against `goal`. */
export function reportOf(goal: number, chunks: { index: number; replicas: string[] }[]): ReplicationReport {
  chunks.sort((a, b) => a.index - b.index);
  return { goal, chunks, underReplicated: chunks.filter((c) => c.replicas.length < goal) };
}
