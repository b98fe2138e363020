// Lease arithmetic both sides of a lease agree on: the master counts a lease
// from when it recorded the grant; the primary counts it from when it SENT its
// question, shortened by the drift bound (shared/config.ts driftFraction), so
// the primary's expiry always falls before the master's in real time.
// Imported by master/leases.ts and chunkserver/leases.ts; imports nothing.

/**
 * The primary's own view: given the remaining time the master reported and
 * the local time at which the question was sent, the local expiry, shortened
 * by the drift bound so that a faster local clock never outlives the master.
 */
export function primaryExpiryMs(sentAtLocalMs: number, remainingMs: number, driftFraction: number): number {
  return sentAtLocalMs + Math.max(0, remainingMs * (1 - driftFraction) - 1);
}
