import { crc32c } from '../shared/checksum.js';
import { defaults } from '../shared/config.js';
import { GfsError } from '../shared/errors.js';
import { rpcBinary, rpcJson } from '../shared/rpc.js';
import { encodeRecordBatch, recordBatchMaxBytes, recordBatchMaxRecords, type AppendBatchAnswer } from '../shared/record-wire.js';
import { inlineMaxBytes } from '../shared/wire.js';
import type { AppendAnswer, LeaseAnswer } from '../shared/wire.js';
import type { CachedFile } from './location-cache.js';
import type { DataContext } from './data-context.js';
import { withRetry } from './retry.js';
import { push } from './write-path.js';
import { fullServer, maxReplacements } from './write-report.js';

// Record append: the primary of the file's last chunk picks each record's
// offset, and a record that does not fit pads the chunk (on every replica)
// and goes on to the next one. At least once: a retried append may leave a
// duplicate; a retry keeps its request id, so a primary that already placed
// it answers with the same offsets.

/** Pads in one call at most: a chunk found full is padded once, so this bounds the chunks one call walks. */
const maxPaddedChunks = 64;

/** Record append of raw bytes (no framing): the system picks the offset and returns it. */
export async function appendRaw(cx: DataContext, path: string, data: Buffer): Promise<number> {
  if (data.length === 0) throw new GfsError('BAD_REQUEST', 'empty record');
  if (data.length <= inlineMaxBytes) return (await appendRawBatch(cx, path, [data]))[0]!;
  return appendPushed(cx, path, data);
}

/**
 * Record append of many raw records in as few requests as fit
 * (shared/record-wire.ts bounds a request): each record is placed on its
 * own, never straddling a chunk, and the answer has one file offset per
 * record, in order. Records above inlineMaxBytes go one by one through a
 * data push.
 */
export async function appendRawBatch(cx: DataContext, path: string, records: Buffer[]): Promise<number[]> {
  const out = new Array<number>(records.length);
  let batch: number[] = [];
  let batchBytes = 4;
  const send = async () => {
    const offs = await appendBatchRequest(cx, path, batch.map((i) => records[i]!));
    batch.forEach((i, k) => (out[i] = offs[k]!));
    batch = [];
    batchBytes = 4;
  };
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (r.length === 0) throw new GfsError('BAD_REQUEST', `record ${i} is empty`);
    if (r.length > inlineMaxBytes) {
      out[i] = await appendPushed(cx, path, r);
      continue;
    }
    if (batch.length > 0 && (batchBytes + 4 + r.length > recordBatchMaxBytes || batch.length >= recordBatchMaxRecords)) await send();
    batch.push(i);
    batchBytes += 4 + r.length;
  }
  if (batch.length > 0) await send();
  return out;
}

/** One attempt at the last chunk's primary: true when every record is placed, false when the chunk was full (padded now). */
type AppendAttempt = (at: { f: CachedFile; index: number; lease: LeaseAnswer; requestId: string }) => Promise<boolean>;

/**
 * The loop both append kinds share: lease the file's last chunk, let `attempt` send to its
 * primary; a full chunk (now padded on every replica) sends the rest on to the next chunk under a
 * new request id (`requestId_padded`); an error drops the lease and the cached locations and retries
 * the same request id. A replica whose disk is full (NO_SPACE naming its server) is left out: the
 * master drops it from the chunk (allocate's exclude, as for writes), the next lease bumps the
 * version on the others only, and the healer copies the chunk where there is room.
 */
async function appendLoop(cx: DataContext, path: string, largestBytes: number, attempt: AppendAttempt): Promise<void> {
  const requestId = cx.masters.nextRequestId();
  let handle: string | undefined;
  let leasedIndex = 0;
  let padded = 0;
  const full = new Set<string>();
  let replace = false;
  let noSpaceAnswers = 0;
  await withRetry(
    async () => {
      for (;;) {
        const f = await cx.chunks.locate(path, 0, 1);
        const index = Math.max(0, f.chunkCount - 1);
        const limitBytes = f.chunkSizeBytes / 4;
        if (largestBytes > limitBytes) throw new GfsError('RECORD_TOO_LARGE', `record of ${largestBytes} bytes exceeds the limit of ${limitBytes} (a quarter of the chunk size)`);
        const loc = await cx.chunks.chunkForWrite(path, index, replace ? full : undefined);
        replace = false;
        handle = loc.handle;
        leasedIndex = index;
        const lease = await cx.chunks.leaseFor(loc.handle, path, index);
        handle = lease.handle;
        if (await attempt({ f, index, lease, requestId: `${requestId}_${padded}` })) return;
        if (++padded > maxPaddedChunks) throw new GfsError('UNAVAILABLE', 'record append kept finding full chunks');
        await cx.chunks.nextChunk(path, index);
      }
    },
    {
      ...cx.retry,
      onError: (e) => {
        if (handle) cx.chunks.dropLease(handle, path, leasedIndex);
        cx.chunks.invalidate(path);
        const server = fullServer(e);
        if (server === undefined) return;
        noSpaceAnswers++;
        full.add(server);
        replace = true;
      },
      giveUp: (e) => fullServer(e) !== undefined && noSpaceAnswers > maxReplacements,
    },
  );
}

/** One batch of small records to the primary of the file's last chunk; the records a full chunk left over go on to the next. */
async function appendBatchRequest(cx: DataContext, path: string, records: Buffer[]): Promise<number[]> {
  const out: number[] = [];
  await appendLoop(cx, path, records.reduce((m, r) => Math.max(m, r.length), 0), async ({ f, index, lease, requestId }) => {
    const rest = records.slice(out.length);
    const body = encodeRecordBatch(rest);
    const a = await rpcBinary<AppendBatchAnswer>(lease.primary.url, '/chunk/append-batch', body, {
      targetName: lease.primary.id,
      timeoutMs: defaults.dataTimeoutMs,
      headers: { 'x-gfs-handle': lease.handle, 'x-gfs-version': String(lease.version), 'x-gfs-client': cx.clientId, 'x-gfs-request': requestId, 'x-gfs-crc32c': String(crc32c(body)) },
    });
    const placed = a.offsets.slice(0, rest.length);
    for (const o of placed) out.push(index * f.chunkSizeBytes + o);
    if (placed.length > 0) cx.chunks.grew(path, index, placed[placed.length - 1]! + rest[placed.length - 1]!.length);
    return out.length === records.length;
  });
  return out;
}

/** Record append of one large record: the data is pushed along the chain first, then the primary places it. */
async function appendPushed(cx: DataContext, path: string, data: Buffer): Promise<number> {
  let offset = -1;
  await appendLoop(cx, path, data.length, async ({ f, index, lease, requestId }) => {
    const { dataId, crc } = await push(cx, [lease.primary, ...lease.secondaries], data);
    const a = await rpcJson<AppendAnswer>(
      lease.primary.url,
      '/chunk/append',
      { handle: lease.handle, version: lease.version, dataId, crc32c: crc, sizeBytes: data.length, clientId: cx.clientId, requestId },
      { targetName: lease.primary.id, timeoutMs: defaults.dataTimeoutMs },
    );
    if (a.status !== 'ok') return false;
    cx.chunks.grew(path, index, a.offset + data.length);
    offset = index * f.chunkSizeBytes + a.offset;
    return true;
  });
  return offset;
}
