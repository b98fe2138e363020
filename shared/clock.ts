import { performance } from 'node:perf_hooks';

// The monotonic clock that leases are measured with (master and
// chunkservers). Leases use durations only, never wall-clock time, so an
// offset between nodes' clocks changes nothing; what matters is the RATE at
// which each node's clock runs, bounded by defaults.clockDriftFraction between
// any two nodes. For tests, GFS_CLOCK_SKEW (a fraction, e.g. 0.004 or -0.004)
// makes this node's clock run that much fast or slow; the partition suite sets
// it per node within +-drift/2, so any two nodes stay within the bound.

export function monotonicClock(): () => number {
  const raw = process.env.GFS_CLOCK_SKEW;
  const skew = raw ? Number(raw) : 0;
  if (!Number.isFinite(skew) || Math.abs(skew) >= 0.5) throw new Error(`GFS_CLOCK_SKEW must be a small fraction, got ${raw}`);
  if (skew === 0) return () => performance.now();
  const base = performance.now();
  return () => base + (performance.now() - base) * (1 + skew);
}
