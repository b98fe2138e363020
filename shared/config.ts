// Defaults shared by the three programs. Units are last in every name.

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** A byte count for people: 1023 B, 1.5 KiB, 64.0 MiB, ... */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

export const defaults = {
  masterPort: 7070,
  masterUrl: 'http://127.0.0.1:7070',
  chunkSizeBytes: 64 * MiB,
  /** Checksum granularity: one crc32c per block of this size. */
  checksumBlockBytes: 64 * 1024,
  replication: 3,
  leaseMs: 60_000,
  heartbeatMs: 1_000,
  /** A chunkserver silent this long is considered dead. */
  chunkserverDeadMs: 10_000,
  /** Largest piece a client pushes and mutates at once; bounds push buffers. */
  pushPieceBytes: 8 * MiB,
  /** Total pushed-but-unused bytes a chunkserver will hold before refusing pushes. */
  pushBufferBytes: 512 * MiB,
  /** Pushes a chunkserver receives at once; more get 429. */
  maxPushes: 64,
  /** Pushed data not used by a mutation within this time is dropped. */
  pushExpiryMs: 60_000,
  /** Operation log size that triggers a checkpoint. */
  checkpointLogBytes: 64 * MiB,
  /** RPC timeouts. */
  rpcTimeoutMs: 10_000,
  dataTimeoutMs: 60_000,
  /** A master that restarted waits this long for chunkserver reports (safe mode). */
  safeModeMs: 5_000,
  /** Deleted files stay in the trash (undelete possible) this long. */
  trashGraceMs: 3 * 24 * 3600 * 1000,
  /** Clock drift bound between nodes, as a fraction of elapsed time. */
  clockDriftFraction: 0.01,
} as const;

/** The environment variable a daemon flag can also be set with: --lease-ms -> GFS_LEASE_MS (shared/settings.ts). */
export function envName(long: string): string {
  return 'GFS_' + long.replace(/^--/, '').toUpperCase().replace(/-/g, '_');
}

export function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${v}`);
  return n;
}

export function masterUrlFromEnv(flag?: string): string {
  return (flag ?? process.env.GFS_MASTER ?? defaults.masterUrl).replace(/\/+$/, '');
}
