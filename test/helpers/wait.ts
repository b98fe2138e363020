// Waiting in tests: poll a condition with a deadline, never a bare sleep as synchronisation
// (docs/developer guide). Used by the integration and partition tests and by unit tests that
// wait for sockets or timers.

/** Polls cond until it returns a value other than undefined/false, or throws after deadlineMs. */
export async function waitFor<T>(what: string, cond: () => Promise<T | undefined | false> | T | undefined | false, deadlineMs = 15_000, intervalMs = 50): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
