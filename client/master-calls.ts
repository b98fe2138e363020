import { GfsError } from '../shared/errors.js';
import { rpcJson } from '../shared/rpc.js';
import { withRetry, type RetryOptions } from './retry.js';

// The client's side of talking to the master: which of several master URLs
// answers (the master, its shadows, a promoted shadow), epochs that only go
// up, and one request id for every attempt of a mutation so the master's
// retry cache answers a retry of one it already did.

/** Master routes that only read: a shadow master may answer them (master/replicas.ts). */
export const readOnlyRoutes = new Set(['/api/list', '/api/stat', '/api/chunks', '/api/fsck', '/api/trash', '/api/status', '/api/config']);

/** How long reads stay with the shadow that answered when the master did not (retrying it first costs a timeout each). */
const readFallbackMs = 10_000;

export class MasterCalls {
  /** The first master URL (the usual master). */
  readonly masterUrl: string;
  readonly masterUrls: string[];
  /** When the last read was answered by a shadow: how stale it said it was (ms), else undefined. */
  lastShadowRead: { url: string; stalenessMs: number | undefined } | undefined;
  /** The highest master epoch any answer carried: answers from lower epochs (a failed-over master) are refused. */
  private maxEpoch = 0;
  /** Index in masterUrls of the last master that answered as master. */
  private preferred = 0;
  /** After the master failed to answer a read: where reads go first (a shadow), and until when. */
  private readFallback: { index: number; untilMs: number } | undefined;
  private requestSeq = 0;

  constructor(
    masterUrl: string,
    private readonly clientId: string,
    private readonly retry: Partial<RetryOptions>,
  ) {
    this.masterUrls = masterUrl
      .split(',')
      .map((u) => u.trim().replace(/\/+$/, ''))
      .filter(Boolean);
    if (this.masterUrls.length === 0) throw new GfsError('BAD_REQUEST', 'no master URL');
    this.masterUrl = this.masterUrls[0]!;
  }

  /** A call retried on transient errors; a mutation keeps one request id across its attempts. */
  call<T>(path: string, body?: unknown, query?: Record<string, string>, readOnly = readOnlyRoutes.has(path)): Promise<T> {
    const rid = readOnly ? undefined : `${this.clientId}:${this.nextRequestId()}`;
    return withRetry(() => this.once<T>(path, body, query, rid), { ...this.retry, attempts: 6 });
  }

  /**
   * One request to the master. With several master URLs: the one that last answered as master
   * first, then the others; a read may be answered by a shadow; a mutation a shadow refuses
   * (READ_ONLY) or an answer from an older epoch moves on to the next URL.
   */
  async once<T>(path: string, body?: unknown, query?: Record<string, string>, rid?: string): Promise<T> {
    const headers = rid ? { 'x-gfs-request-id': rid } : undefined;
    if (this.masterUrls.length === 1) return rpcJson<T>(this.masterUrl, path, body, { query, headers, targetName: 'master', onHeaders: (h) => this.noteEpoch(h) });
    const readOnly = readOnlyRoutes.has(path);
    const fb = readOnly && this.readFallback && this.readFallback.untilMs > Date.now() ? this.readFallback.index : undefined;
    const start = fb ?? this.preferred;
    let lastErr: unknown;
    for (let k = 0; k < this.masterUrls.length; k++) {
      const i = (start + k) % this.masterUrls.length;
      const url = this.masterUrls[i]!;
      const heard = { epoch: 0, role: 'master', stalenessMs: undefined as number | undefined };
      try {
        const out = await rpcJson<T>(url, path, body, { query, headers, targetName: 'master', onHeaders: (h) => Object.assign(heard, answerHeaders(h)) });
        this.noteAnswer(i, url, heard, readOnly, k > 0);
        return out;
      } catch (e) {
        if (heard.epoch > 0 && heard.epoch >= this.maxEpoch && heard.role === 'master') this.maxEpoch = heard.epoch;
        const moveOn = !(e instanceof GfsError) || ['UNAVAILABLE', 'TIMEOUT', 'READ_ONLY', 'STALE_EPOCH'].includes(e.code);
        if (!moveOn) throw e;
        lastErr = e;
      }
    }
    // No master answered (yet: a shadow may be promoted): retryable.
    throw new GfsError('UNAVAILABLE', `no master answered: ${lastErr instanceof Error ? lastErr.message : String(lastErr)}`, { retryAfterMs: 500 });
  }

  /** An answer from masterUrls[i]: refused when its epoch is older than one seen; else remembered as where to go next. */
  private noteAnswer(i: number, url: string, heard: { epoch: number; role: string; stalenessMs: number | undefined }, readOnly: boolean, failedOver: boolean): void {
    if (heard.epoch < this.maxEpoch) throw new GfsError('STALE_EPOCH', `${url} answered for master epoch ${heard.epoch}, older than ${this.maxEpoch}`);
    this.maxEpoch = Math.max(this.maxEpoch, heard.epoch);
    if (heard.role === 'master') {
      this.preferred = i;
      this.lastShadowRead = undefined;
    } else if (readOnly) this.lastShadowRead = { url, stalenessMs: heard.stalenessMs };
    if (readOnly && failedOver) this.readFallback = { index: i, untilMs: Date.now() + readFallbackMs };
  }

  private noteEpoch(h: Record<string, string | string[] | undefined>): void {
    const e = Number(h['x-gfs-epoch'] ?? 0) || 0;
    if (e > this.maxEpoch) this.maxEpoch = e;
  }

  nextRequestId(): string {
    return `${Date.now().toString(36)}-${(this.requestSeq++).toString(36)}`;
  }
}

function answerHeaders(h: Record<string, string | string[] | undefined>): { epoch: number; role: string; stalenessMs: number | undefined } {
  const st = Number(h['x-gfs-staleness-ms']);
  return { epoch: Number(h['x-gfs-epoch'] ?? 0) || 0, role: String(h['x-gfs-role'] ?? 'master'), stalenessMs: Number.isFinite(st) ? st : undefined };
}
