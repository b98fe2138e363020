import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from './log.js';

// Connection and request admission, before any authentication: what one
// remote address can hold of a daemon's sockets. Without it a single local
// process opened 19,900 connections, each with half a request line, and new
// clients got ECONNRESET until those closed, with nothing logged.
//
//   per address   at most maxPerAddress open connections from one remote
//                 address (known peers exempt); more are closed at once.
//   total         at most maxTotal open connections; the last reservedForPeers
//                 of them only for known peers (chunkservers, other masters),
//                 so a flood from strangers cannot cut the cluster's own links.
//   first request a new connection must deliver its first request's headers
//                 (TLS handshake included) within firstHeadersMs, or it is
//                 closed. Only the first: an idle keep-alive connection of a
//                 real client has proven itself and keeps node's own timeouts.
//   bad signature requests failing authentication are counted per address;
//                 past a burst (100, then 10 a second), that address's requests
//                 are refused with 429 before their credentials or body are
//                 looked at, until it slows down. Known peers are exempt: an
//                 address shared with a stranger must not cut a chunkserver off.
//
// Every refusal counts in `stats` (exported as gfs_connections_refused_total
// and friends) and is logged, at most one line per logEveryMs, summing what
// happened since the previous line.

export type RefusalReason = 'per_address' | 'total' | 'header_timeout';

export interface AdmissionOptions {
  /** Open connections one remote address may hold (known peers exempt). Default 256 (GFS_MAX_CONNECTIONS_PER_ADDRESS). */
  maxPerAddress?: number;
  /** Open connections in all. Default 8192. */
  maxTotal?: number;
  /** Of maxTotal, how many only known peers may use. Default 512. */
  reservedForPeers?: number;
  /** A new connection's first request headers must arrive within this. Default 5 s (GFS_FIRST_HEADERS_MS). */
  firstHeadersMs?: number;
  /** Addresses of known peers (chunkservers, other masters); more can be added with allowPeer(). */
  peers?: string[];
  /** Failed authentications one address may burst before being refused. Default 100. */
  authFailBurst?: number;
  /** Failed authentications per second one address may sustain. Default 10. */
  authFailPerSec?: number;
  /** At most one refusal log line per this interval. Default 10 s. */
  logEveryMs?: number;
}

export interface AdmissionStats {
  openConnections: number;
  refused: Record<RefusalReason, number>;
  /** Requests that failed authentication. */
  unauthenticated: number;
  /** Requests refused because their address failed authentication too often. */
  authRateLimited: number;
}

/** Most distinct addresses whose failed authentications are remembered (bounds memory under spoofed floods). */
const maxTrackedAddresses = 4096;

/** '::ffff:127.0.0.1' and '127.0.0.1' are the same peer. */
export function normalAddress(a: string | undefined): string {
  if (!a) return 'unknown';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

function positiveEnv(name: string): number | undefined {
  const v = Number(process.env[name]);
  return Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

export class Admission {
  readonly maxPerAddress: number;
  readonly maxTotal: number;
  readonly reservedForPeers: number;
  readonly firstHeadersMs: number;
  private readonly authFailBurst: number;
  private readonly authFailPerSec: number;
  private readonly logEveryMs: number;
  private readonly peers = new Set<string>();
  private readonly perAddress = new Map<string, number>();
  private open = 0;
  private readonly refused: Record<RefusalReason, number> = { per_address: 0, total: 0, header_timeout: 0 };
  private unauthenticated = 0;
  private authRateLimited = 0;
  private readonly authBuckets = new Map<string, Bucket>();
  /** Raw sockets still waiting for their first request, with the timer that closes them. */
  private readonly awaitingFirst = new WeakMap<Socket, NodeJS.Timeout>();
  // Refusals since the last log line, by reason and by address (bounded: see note()).
  private pending: { count: Record<string, number>; addresses: Map<string, number> } = { count: {}, addresses: new Map() };
  private lastLogMs = 0;
  private logTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    o: AdmissionOptions = {},
  ) {
    this.maxPerAddress = o.maxPerAddress ?? positiveEnv('GFS_MAX_CONNECTIONS_PER_ADDRESS') ?? 256;
    this.maxTotal = o.maxTotal ?? 8192;
    this.reservedForPeers = o.reservedForPeers ?? 512;
    this.firstHeadersMs = o.firstHeadersMs ?? positiveEnv('GFS_FIRST_HEADERS_MS') ?? 5_000;
    this.authFailBurst = o.authFailBurst ?? 100;
    this.authFailPerSec = o.authFailPerSec ?? 10;
    this.logEveryMs = o.logEveryMs ?? 10_000;
    if (!(this.reservedForPeers >= 0 && this.reservedForPeers < this.maxTotal && this.maxPerAddress > 0 && this.firstHeadersMs > 0))
      throw new Error(`bad admission limits: ${JSON.stringify({ maxPerAddress: this.maxPerAddress, maxTotal: this.maxTotal, reservedForPeers: this.reservedForPeers, firstHeadersMs: this.firstHeadersMs })}`);
    for (const p of o.peers ?? []) this.allowPeer(p);
  }

  /** Marks an address as a known peer: exempt from the per-address cap, may use the reserved connections. */
  allowPeer(address: string): void {
    this.peers.add(normalAddress(address));
  }

  isPeer(address: string): boolean {
    return this.peers.has(normalAddress(address));
  }

  get stats(): AdmissionStats {
    return { openConnections: this.open, refused: { ...this.refused }, unauthenticated: this.unauthenticated, authRateLimited: this.authRateLimited };
  }

  /** Applies the connection limits to a listening (or about to listen) server. */
  attach(server: Server): void {
    // Node's own cap is the backstop for peers; its drops (no 'connection' event) count as 'total'.
    server.maxConnections = this.maxTotal;
    server.on('drop', (d?: { remoteAddress?: string }) => this.refuse('total', normalAddress(d?.remoteAddress)));
    server.on('connection', (sock: Socket) => this.onConnection(sock));
    server.on('request', (req: { socket: Socket }) => this.firstRequestArrived(req.socket));
  }

  private onConnection(sock: Socket): void {
    const addr = normalAddress(sock.remoteAddress);
    const peer = this.peers.has(addr);
    const fromAddr = this.perAddress.get(addr) ?? 0;
    let reason: RefusalReason | undefined;
    if (!peer && fromAddr >= this.maxPerAddress) reason = 'per_address';
    else if (!peer && this.open >= this.maxTotal - this.reservedForPeers) reason = 'total';
    else if (this.open >= this.maxTotal) reason = 'total';
    if (reason) {
      this.refuse(reason, addr);
      sock.destroy();
      return;
    }
    this.open++;
    this.perAddress.set(addr, fromAddr + 1);
    const timer = setTimeout(() => {
      this.refuse('header_timeout', addr);
      sock.destroy();
    }, this.firstHeadersMs);
    timer.unref();
    this.awaitingFirst.set(sock, timer);
    sock.once('close', () => {
      clearTimeout(timer);
      this.open--;
      const n = (this.perAddress.get(addr) ?? 1) - 1;
      if (n > 0) this.perAddress.set(addr, n);
      else this.perAddress.delete(addr);
    });
  }

  private firstRequestArrived(sock: Socket): void {
    // With TLS the request's socket wraps the raw one the timer belongs to.
    const raw = (sock as Socket & { _parent?: Socket })._parent ?? sock;
    const timer = this.awaitingFirst.get(raw);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.awaitingFirst.delete(raw);
  }

  /**
   * Before a request's credentials are checked: false (refuse it with 429) when its address has
   * failed authentication faster than allowed. Reading the bucket costs no tokens.
   */
  mayAuthenticate(address: string, nowMs = Date.now()): boolean {
    const addr = normalAddress(address);
    const b = this.authBuckets.get(addr);
    if (!b || this.peers.has(addr)) return true;
    if (this.refill(b, nowMs) >= 1) return true;
    this.authRateLimited++;
    this.note('auth_rate_limited', addr);
    return false;
  }

  /** A request from address failed authentication. */
  authFailed(address: string, nowMs = Date.now()): void {
    this.unauthenticated++;
    const addr = normalAddress(address);
    let b = this.authBuckets.get(addr);
    if (!b) {
      if (this.authBuckets.size >= maxTrackedAddresses) this.forgetRestedBuckets(nowMs);
      b = { tokens: this.authFailBurst, atMs: nowMs };
      this.authBuckets.set(addr, b);
    }
    b.tokens = Math.max(0, this.refill(b, nowMs) - 1);
  }

  private refill(b: Bucket, nowMs: number): number {
    b.tokens = Math.min(this.authFailBurst, b.tokens + ((nowMs - b.atMs) / 1000) * this.authFailPerSec);
    b.atMs = nowMs;
    return b.tokens;
  }

  /** Drops buckets that are full again (they say nothing), else the oldest, so the map stays bounded. */
  private forgetRestedBuckets(nowMs: number): void {
    for (const [a, b] of this.authBuckets) if (this.refill(b, nowMs) >= this.authFailBurst) this.authBuckets.delete(a);
    while (this.authBuckets.size >= maxTrackedAddresses) this.authBuckets.delete(this.authBuckets.keys().next().value!);
  }

  private refuse(reason: RefusalReason, addr: string): void {
    this.refused[reason]++;
    this.note(reason, addr);
  }

  /** Counts a refusal for the next log line; logs now if the last line is old enough, else once the interval is up. */
  private note(reason: string, addr: string): void {
    this.pending.count[reason] = (this.pending.count[reason] ?? 0) + 1;
    const a = this.pending.addresses;
    if (a.has(addr) || a.size < 16) a.set(addr, (a.get(addr) ?? 0) + 1);
    if (this.logTimer) return;
    const waitMs = this.lastLogMs + this.logEveryMs - Date.now();
    if (waitMs <= 0) this.flushLog();
    else {
      this.logTimer = setTimeout(() => this.flushLog(), waitMs);
      this.logTimer.unref();
    }
  }

  private flushLog(): void {
    this.logTimer = undefined;
    this.lastLogMs = Date.now();
    const { count, addresses } = this.pending;
    this.pending = { count: {}, addresses: new Map() };
    this.log.warn(
      { refused: count, byAddress: Object.fromEntries(addresses), openConnections: this.open, maxPerAddress: this.maxPerAddress, maxTotal: this.maxTotal, firstHeadersMs: this.firstHeadersMs },
      'admission: refused connections or requests before authentication',
    );
  }
}
