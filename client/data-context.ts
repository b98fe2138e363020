import type { ChunkAccess } from './chunk-access.js';
import type { MasterCalls } from './master-calls.js';
import type { RetryOptions } from './retry.js';

/** What the data paths (client/write-path.ts, append-path.ts, read-path.ts) share of a client. */
export interface DataContext {
  readonly masters: MasterCalls;
  readonly chunks: ChunkAccess;
  readonly clientId: string;
  /** This client's rack (GFS_RACK): replicas on it are closest. */
  readonly rack: string | undefined;
  /** Largest piece pushed and mutated at once. */
  readonly pieceBytes: number;
  /** Pieces in flight at once for large reads and writes. */
  readonly concurrency: number;
  readonly retry: Partial<RetryOptions>;
}
