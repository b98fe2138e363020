// Bench snapshots: latency of POST /api/snapshot for a 1 MiB and the large file, the copy-on-write write after it.
import type { GfsClient } from '../../client/client.js';
import { sha256Hex, signRequest } from '../../shared/auth.js';
import { GfsError } from '../../shared/errors.js';
import { rpcJson } from '../../shared/rpc.js';
import { secondsSince, type BenchContext } from './context.js';
import { MiB, type PieceSource } from './disk.js';
import { gfsWrite } from './data.js';
import { notImplemented, record, round, skipped } from './report.js';

async function snapshotProbe(masterUrl: string, src: string, dst: string): Promise<{ implemented: boolean; seconds?: number; error?: string; revokeWaitMs?: number }> {
  // The master's snapshot counters (when it has them) tell how much of the time went to waiting out leases on the source.
  const revokeWait = async (): Promise<number | undefined> => {
    const st = await rpcJson<{ snapshots?: { revokeWaitMs?: number } }>(masterUrl, '/api/status').catch(() => undefined);
    return st?.snapshots?.revokeWaitMs;
  };
  const w0 = await revokeWait();
  const t0 = process.hrtime.bigint();
  const snapBody = JSON.stringify({ src, dst });
  // A raw fetch (to time the request alone) signs itself like shared/rpc.ts does.
  const auth = signRequest({ method: 'POST', target: '/api/snapshot', bodySha256: sha256Hex(snapBody), from: 'bench' });
  const res = await fetch(`${masterUrl}/api/snapshot`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-gfs-from': 'bench', ...auth }, body: snapBody });
  const seconds = secondsSince(t0);
  const text = await res.text();
  if (res.status === 404 && /no such endpoint|Cannot POST/i.test(text)) return { implemented: false };
  if (res.status === 404) return { implemented: false, error: text.slice(0, 200) };
  if (res.status < 200 || res.status >= 300) return { implemented: true, error: `HTTP ${res.status} ${text.slice(0, 200)}` };
  const w1 = await revokeWait();
  return { implemented: true, seconds, ...(w0 !== undefined && w1 !== undefined ? { revokeWaitMs: w1 - w0 } : {}) };
}

/**
 * Records one snapshot: its latency (POST /api/snapshot round trip: lease
 * revocation, oplog fsync, metadata copy), then the first 1 MiB write to the
 * source (copy-on-write of its first chunk on every replica), then checks that
 * the snapshot still reads the old bytes.
 */
async function recordSnapshot(
  client: GfsClient,
  workload: string,
  src: string,
  dst: string,
  bytes: number,
  probe: Awaited<ReturnType<typeof snapshotProbe>>,
  source: PieceSource,
  more: Record<string, unknown> = {},
): Promise<void> {
  const extra: Record<string, unknown> = { ...more };
  if (probe.revokeWaitMs !== undefined) extra.leaseWaitMs = probe.revokeWaitMs;
  if (probe.error === undefined && probe.seconds !== undefined) {
    try {
      const t0 = process.hrtime.bigint();
      await client.writePiece(src, 0, 0, Buffer.alloc(MiB, 0x5a));
      extra.cowFirstWriteMs = round(secondsSince(t0) * 1000);
      const old = source.fill(Buffer.allocUnsafe(MiB), 0, MiB);
      const snap = await client.read(dst, 0, MiB);
      const now = await client.read(src, 0, MiB);
      extra.snapshotIntact = snap.equals(old) && now.equals(Buffer.alloc(MiB, 0x5a));
    } catch (e) {
      extra.cowError = `${e instanceof GfsError ? e.code + ': ' : ''}${(e as Error).message}`.slice(0, 300);
    }
  }
  record({
    workload,
    value: probe.seconds !== undefined && probe.error === undefined ? probe.seconds * 1000 : null,
    unit: 'ms',
    limit: null,
    ratio: null,
    bytes,
    ...(probe.error ? { error: probe.error } : {}),
    ...extra,
    limitNote: 'latency, lower is better; no machine ceiling defined, so limit and ratio are null',
  });
}

/**
 * snapshot-1MiB of /bench/snap-src-1MiB (written at snapSrcWrittenAt, at the
 * start of the run) and snapshot-1GiB of the seq-r3 file when it was written.
 */
export async function snapshotBench(ctx: BenchContext, snapSrcWrittenAt: number, leaseMs: number | null): Promise<void> {
  const { client, source } = ctx;
  const seqBytes = ctx.sizes.seqBytes;
  const wantSeq = ctx.wanted('seq-write-1GiB-r3');
  if (ctx.wanted('snapshot')) {
    await ctx.begin();
    // snapshot-1MiB: a fresh 1 MiB file; snapshot-1GiB: the r3 file above (quick mode: its size is in "bytes").
    const srcAgeS = round((Date.now() - snapSrcWrittenAt) / 1000);
    const probe = await snapshotProbe(ctx.masterUrl, '/bench/snap-src-1MiB', '/bench/snap-dst-1MiB');
    if (!probe.implemented) {
      notImplemented('snapshot-1MiB', 'ms');
      notImplemented('snapshot-1GiB', 'ms');
    } else {
      // A snapshot right after a write (the source chunk's lease still running), in full mode only: it may wait out the lease.
      let hot: Record<string, unknown> = { hotSnapshotMs: null, hotNote: 'snapshot right after a write: full mode only (may wait out a whole lease)' };
      if (!ctx.quick) {
        await gfsWrite(client, '/bench/snap-hot-1MiB', 3, MiB, source);
        const h = await snapshotProbe(ctx.masterUrl, '/bench/snap-hot-1MiB', '/bench/snap-hot-dst');
        hot = {
          hotSnapshotMs: h.seconds !== undefined && !h.error ? round(h.seconds * 1000) : null,
          ...(h.revokeWaitMs !== undefined ? { hotLeaseWaitMs: h.revokeWaitMs } : {}),
          hotNote: 'snapshot of a 1 MiB file written just before (its lease still running)',
          ...(h.error ? { hotError: h.error } : {}),
        };
      }
      await recordSnapshot(client, 'snapshot-1MiB', '/bench/snap-src-1MiB', '/bench/snap-dst-1MiB', MiB, probe, source, { sourceWrittenSecondsAgo: srcAgeS, leaseMs, ...hot });
      if (wantSeq) {
        await ctx.begin();
        const big = await snapshotProbe(ctx.masterUrl, '/bench/seq-r3', '/bench/snap-dst-1GiB');
        await recordSnapshot(client, 'snapshot-1GiB', '/bench/seq-r3', '/bench/snap-dst-1GiB', seqBytes, big, source, { leaseMs });
      } else record({ workload: 'snapshot-1GiB', value: null, unit: 'ms', limit: null, ratio: null, note: 'skipped: no seq-r3 file (--only)' });
    }
  } else {
    skipped('snapshot-1MiB', 'ms');
    skipped('snapshot-1GiB', 'ms');
  }
}
