// Bench re-replication: how fast the cluster copies a dead chunkserver's chunks back to their goal.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from './context.js';
import { gfsWrite } from './data.js';
import { MiB, rawWrite } from './disk.js';
import { ratio, record, round } from './report.js';

/**
 * rereplicate-MBps: a fourth chunkserver joins, a file is written at
 * replication 3, then one of its holders is SIGKILLed. Timed from the kill
 * until fsck reports every chunk back at its goal; the figure is the bytes
 * cloned (master counter) per second of the clone phase (after the master
 * declared the server dead), and also over the whole time from the kill.
 * Limit: raw write + fdatasync of the same bytes on the same disk.
 */
export async function rereplicateBench(ctx: BenchContext, totalBytes: number): Promise<void> {
  const { cluster, client, source } = ctx;
  await ctx.begin();
  await cluster.addChunkserver();
  const path = '/bench/rerep';
  await gfsWrite(client, path, 3, totalBytes, source);
  const chunks = await client.locate(path, 0, 10_000, true);
  const counts = new Map<string, number>();
  for (const c of chunks.chunks.values()) for (const r of c.replicas) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
  const [victim, held] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]!;
  const rawPath = join(cluster.dir, 'raw-rerep.bin');
  const limitMBps = rawWrite(rawPath, Math.min(totalBytes, 256 * MiB), client.pieceBytes, source).bytesPerSec / 1e6;
  rmSync(rawPath, { force: true });
  const before = (await cluster.status()) as unknown as { counters: { clonedBytes: number } };
  const t0 = Date.now();
  await cluster.killChunkserver(victim);
  let deadAt = 0;
  for (;;) {
    const s = (await cluster.status()) as unknown as { chunkservers: { id: string; alive: boolean }[]; chunks: { underReplicated: number; missing: number }; counters: { clonedBytes: number } };
    if (!deadAt && s.chunkservers.find((c) => c.id === victim)?.alive === false) deadAt = Date.now();
    if (deadAt && s.chunks.underReplicated === 0 && s.chunks.missing === 0) {
      const end = Date.now();
      const bytes = s.counters.clonedBytes - before.counters.clonedBytes;
      const cloneSeconds = Math.max(0.001, (end - deadAt) / 1000);
      const value = round(bytes / 1e6 / cloneSeconds);
      record({
        workload: 'rereplicate-MBps',
        value,
        unit: 'MB/s',
        limit: round(limitMBps),
        ratio: ratio(value, limitMBps),
        chunksOnVictim: held,
        clonedBytes: bytes,
        detectSeconds: round((deadAt - t0) / 1000),
        cloneSeconds: round(cloneSeconds),
        totalSeconds: round((end - t0) / 1000),
        MBpsIncludingDetection: round(bytes / 1e6 / ((end - t0) / 1000)),
        note: 'clone phase: from the master marking the server dead to every chunk back at its goal',
      });
      return;
    }
    if (Date.now() - t0 > 600_000) throw new Error('re-replication did not finish within 10 minutes');
    await new Promise((r) => setTimeout(r, 200));
  }
}
