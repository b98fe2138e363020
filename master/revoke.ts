import { rpcJson } from '../shared/rpc.js';
import type { MasterContext } from './context.js';

// Taking a lease back before it runs out, for a snapshot, a repair, or a replica dropped from a
// chunk: a primary that answers /chunk/revoke has stopped acting and finished every mutation it had
// started, so its lease ends now. One that does not answer keeps its lease until it runs out by
// itself; the master never grants another meanwhile.

/** The longest a revoke waits for the primary's answer. */
const revokeTimeoutMaxMs = 10_000;

/**
 * Revokes the lease on `handle` if one is live: true when its primary acknowledged (the lease is
 * dropped), false when there was none or the primary did not answer.
 */
export async function revokeLease(m: Pick<MasterContext, 'st' | 'servers' | 'opts' | 'now'>, handle: string, rpc: typeof rpcJson = rpcJson): Promise<boolean> {
  const l = m.st.leases.get(handle);
  if (!l || l.expiresAtMs <= m.now()) return false;
  const ref = m.servers.ref(l.primary);
  if (!ref) return false;
  try {
    await rpc(ref.url, '/chunk/revoke', { handle }, { targetName: l.primary, timeoutMs: Math.min(revokeTimeoutMaxMs, m.opts.leaseMs) });
  } catch {
    return false;
  }
  if (m.st.leases.get(handle) === l) m.st.leases.delete(handle);
  return true;
}
