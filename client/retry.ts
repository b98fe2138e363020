import { GfsError, isRetryable } from '../shared/errors.js';

// Bounded retries for client operations: every loop has a maximum number of
// attempts and a maximum total time; waits grow exponentially but honour a
// server's retryAfterMs (lease pending, safe mode, busy).

export interface RetryOptions {
  attempts: number;
  deadlineMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Called after a failure, before the wait (e.g. to drop cached locations). */
  onError?: (e: unknown, attempt: number) => void;
  /** Called after onError: true stops retrying an error that would otherwise be retried. */
  giveUp?: (e: unknown) => boolean;
}

export const defaultRetry: RetryOptions = { attempts: 12, deadlineMs: 120_000, baseDelayMs: 50, maxDelayMs: 2_000 };

export function retryAfterMs(e: unknown): number | undefined {
  if (e instanceof GfsError && e.detail && typeof e.detail.retryAfterMs === 'number') return e.detail.retryAfterMs;
  return undefined;
}

export async function withRetry<T>(fn: (attempt: number) => Promise<T>, o: Partial<RetryOptions> = {}): Promise<T> {
  const opts = { ...defaultRetry, ...o };
  const start = Date.now();
  let lastErr: unknown;
  for (let attempt = 0; attempt < opts.attempts; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      lastErr = e;
      if (!isRetryable(e)) throw e;
      opts.onError?.(e, attempt);
      if (opts.giveUp?.(e)) throw e;
      const hinted = retryAfterMs(e);
      // Waiting out a lease is not a failure: it does not use up attempts.
      if (e instanceof GfsError && (e.code === 'LEASE_PENDING' || e.code === 'SAFE_MODE')) attempt--;
      const backoff = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.max(0, attempt));
      const waitMs = hinted !== undefined ? Math.min(hinted + 10, 10_000) : backoff * (0.5 + Math.random() / 2);
      if (Date.now() + waitMs - start > opts.deadlineMs) break;
      await new Promise((r) => setTimeout(r, waitMs));
    }
  }
  throw lastErr;
}
