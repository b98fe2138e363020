import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFile, readFile, readdir, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c } from '../../shared/checksum.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ListEntry } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// A master killed with SIGKILL can leave a damaged tail on its newest log (a
// batch whose write or fdatasync never finished). Here the tail is damaged
// on purpose after a SIGKILL, in several ways, and the restarted master must
// come up with every mutation logged before the damage, never apply the
// damaged bytes, serve, accept new mutations, and keep those across another
// SIGKILL (new records must follow the good ones, not the garbage).

type Kind = 'file' | 'dir';
type Damage = 'garbage' | 'bad-crc-frame' | 'huge-length' | 'truncate-last-record';

const N = 60;

/** A frame exactly as the oplog writes it: [u32 LE length][u32 LE crc32c][JSON]. */
function frame(record: unknown, crcXor = 0): Buffer {
  const payload = Buffer.from(JSON.stringify(record), 'utf8');
  const header = Buffer.alloc(8);
  header.writeUInt32LE(payload.length, 0);
  header.writeUInt32LE((crc32c(payload) ^ crcXor) >>> 0, 4);
  return Buffer.concat([header, payload]);
}

/** Offsets of each whole, checksum-valid frame from the start of a log, then the offset where they end. */
function frameOffsets(b: Buffer): number[] {
  const out = [0];
  let pos = 0;
  while (pos + 8 <= b.length) {
    const len = b.readUInt32LE(pos);
    if (len === 0 || pos + 8 + len > b.length || crc32c(b.subarray(pos + 8, pos + 8 + len)) !== b.readUInt32LE(pos + 4)) break;
    pos += 8 + len;
    out.push(pos);
  }
  return out;
}

async function runLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

describe('master recovery from a damaged log tail', { timeout: 120_000 }, () => {
  const clusters: TestCluster[] = [];

  after(async () => {
    await Promise.all(clusters.map((c) => c.stop()));
    await closeRpc();
  });

  async function scenario(damage: Damage, opts: { checkpointFirst?: boolean } = {}): Promise<void> {
    const c = await startCluster({ chunkservers: 0, ...(opts.checkpointFirst ? { checkpointBytes: 2_000 } : {}) });
    clusters.push(c);
    try {
      const masterDir = join(c.dir, 'master');
      const port = c.master.port;
      const call = <T>(endpoint: string, body?: unknown, query?: Record<string, string>) =>
        rpcJson<T>(c.masterUrl, endpoint, body, { query, targetName: 'master', timeoutMs: 10_000 });
      const model = new Map<string, Kind>();
      const listing = async () => {
        const r = await waitFor('the master to list /', () => call<{ entries: ListEntry[] }>('/api/list', undefined, { path: '/', recursive: '1' }), 20_000);
        return r.entries.map((e) => `${e.type} ${e.path}`).sort();
      };
      const expected = () => [...model].map(([p, k]) => `${k} ${p}`).sort();

      // N acknowledged mutations, several in flight at once so batches hold many records.
      await call('/api/mkdir', { path: '/t' });
      model.set('/t', 'dir');
      const ids = Array.from({ length: N }, (_, i) => i);
      await runLimited(ids, 8, async (i) => {
        await call('/api/create', { path: `/t/f${i}` });
        model.set(`/t/f${i}`, 'file');
      });
      await runLimited(ids, 8, async (i) => {
        if (i % 3 === 0) {
          await call('/api/rename', { src: `/t/f${i}`, dst: `/t/g${i}` });
          model.delete(`/t/f${i}`);
          model.set(`/t/g${i}`, 'file');
        } else if (i % 3 === 1) {
          await call('/api/delete', { path: `/t/f${i}` });
          model.delete(`/t/f${i}`);
        }
      });
      await call('/api/mkdir', { path: '/t/deep/er', parents: true });
      model.set('/t/deep', 'dir').set('/t/deep/er', 'dir');
      if (opts.checkpointFirst) {
        await call('/api/checkpoint', {});
        const names = await readdir(masterDir);
        assert.ok(names.some((n) => /^checkpoint\.\d+\.json$/.test(n)), `a checkpoint exists (${names.join(', ')})`);
      }
      // The last record in the log, alone in its batch: nothing else logs on a master without chunkservers.
      await call('/api/create', { path: '/t/last' });
      model.set('/t/last', 'file');
      assert.deepEqual(await listing(), expected(), 'the live master lists every acknowledged mutation');

      await c.kill(c.master, 'SIGKILL');
      const logs = (await readdir(masterDir)).filter((n) => /^oplog\.\d+\.log$/.test(n)).sort();
      const newest = join(masterDir, logs[logs.length - 1]!);
      const size = (await stat(newest)).size;
      const offsets = frameOffsets(await readFile(newest));
      assert.ok(offsets.length >= 2 && offsets[offsets.length - 1] === size, `${newest} holds whole records only`);
      switch (damage) {
        case 'garbage':
          await appendFile(newest, randomBytes(137));
          break;
        case 'bad-crc-frame':
          // A whole, well-formed record whose checksum does not match: never applied.
          await appendFile(newest, frame({ op: 'create', path: '/t/ghost', replication: 3, t: Date.now() }, 0x1));
          break;
        case 'huge-length':
          await appendFile(newest, Buffer.concat([Buffer.from([0xf0, 0xff, 0xff, 0x7f, 0, 0, 0, 0]), randomBytes(40)]));
          break;
        case 'truncate-last-record':
          // The final record (create /t/last) loses its last bytes: it and only it is gone.
          await truncate(newest, size - 3);
          model.delete('/t/last');
          break;
      }

      await c.startMaster(port);
      assert.deepEqual(await listing(), expected(), `after ${damage}: every mutation before the damaged tail, and nothing else`);
      await waitFor('the master to log the dropped tail', async () => (await readFile(join(c.dir, 'master.log'), 'utf8')).includes('dropping torn tail'), 10_000);
      assert.equal((await stat(newest)).size, damage === 'truncate-last-record' ? offsets[offsets.length - 2] : size, 'exactly the damaged bytes were cut off');

      // The recovered master accepts mutations, and they survive another SIGKILL.
      await call('/api/create', { path: '/t/after1' });
      await call('/api/rename', { src: '/t/after1', dst: '/t/after2' });
      await call('/api/mkdir', { path: '/t/afterdir' });
      await call('/api/delete', { path: '/t/deep', recursive: true });
      if (damage === 'truncate-last-record') await call('/api/create', { path: '/t/last' });
      model.set('/t/after2', 'file').set('/t/afterdir', 'dir').set('/t/last', 'file');
      model.delete('/t/deep');
      model.delete('/t/deep/er');
      assert.deepEqual(await listing(), expected(), `after ${damage}: new mutations are applied`);
      await c.kill(c.master, 'SIGKILL');
      await c.startMaster(port);
      assert.deepEqual(await listing(), expected(), `after ${damage} and a second SIGKILL: old and new mutations all there`);
      const st = await call<{ type: string }>('/api/stat', undefined, { path: '/t/after2' });
      assert.equal(st.type, 'file');
    } finally {
      await c.stop();
    }
  }

  it('random garbage appended to the newest log is dropped', () => scenario('garbage'));
  it('a whole frame with a bad checksum is never applied', () => scenario('bad-crc-frame'));
  it('a frame header claiming a huge length is dropped', () => scenario('huge-length'));
  it('a truncated final record is dropped and everything before it kept', () => scenario('truncate-last-record'));
  it('garbage after a checkpoint: checkpoint plus the good tail', () => scenario('garbage', { checkpointFirst: true }));
});
