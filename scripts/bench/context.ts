// What every bench workload is given: the cluster, a client, the run's mode and sizes, and the progress line.
import type { GfsClient } from '../../client/client.js';
import type { BenchCluster } from './cluster.js';
import type { PieceSource } from './disk.js';

export interface BenchContext {
  cluster: BenchCluster;
  client: GfsClient;
  masterUrl: string;
  /** The run's temp dir (raw-disk probes go here). */
  dir: string;
  quick: boolean;
  verboseWorkers: boolean;
  sizes: { seqBytes: number; creates: Record<number, number>; appends: Record<number, number> };
  chunkSizeBytes: number;
  source: PieceSource;
  /** Whether --only selects this workload. */
  wanted(name: string): boolean;
  /** Before each workload: restarts any daemon that died. */
  begin(): Promise<void>;
}

export const secondsSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;
export const progress = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
