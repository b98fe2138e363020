import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GfsClient } from '../../client/client.js';
import { GfsError } from '../../shared/errors.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ListEntry } from '../../shared/wire.js';
import { startCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// Issue 15, item 1: a lazy delete (the 'trash' record) moved the log index by two, so log replicas,
// which count one per record, saw a gap, refused the batch ("not in sync: mutations refused until
// caught up") and re-installed the whole master state. Here: 30 `rm -r` and 30 mkdirs at once under
// 1 and 2 log replicas; no call is refused, no shadow re-installs, every shadow lists what the master
// lists; then the master is SIGKILLed, a shadow promoted, and every acknowledged create and delete holds.

interface Status {
  role: string;
  appliedIndex: number;
  logReplicas?: { inSync: number; configured: number };
  shadow?: { installs: number; lagRecords: number };
}

after(() => closeRpc());

async function listing(url: string): Promise<string[]> {
  const { entries } = await rpcJson<{ entries: ListEntry[] }>(url, '/api/list', undefined, { query: { path: '/', recursive: 'true' } });
  return entries.map((e) => `${e.type} ${e.path}`).sort();
}

for (const shadows of [1, 2]) {
  describe(`lazy deletes under ${shadows} log replica(s)`, { timeout: 180_000 }, () => {
    it('concurrent rm -r and mkdir: nothing refused, no re-install, shadows equal the master, promotion keeps every acknowledged change', async () => {
      const c = await startCluster({ chunkservers: 1, shadows, leaseMs: 1_500, heartbeatMs: 200, deadMs: 1_500, safeModeMs: 1_000 });
      try {
        await waitFor('log replicas in sync', async () => (await rpcJson<Status>(c.masterUrl, '/api/status')).logReplicas?.inSync === shadows, 15_000);
        const client = new GfsClient({ masterUrl: c.masterUrls, retry: { attempts: 1, deadlineMs: 5_000 } });
        for (let i = 0; i < 30; i++) {
          await client.mkdir(`/old${i}/sub`, { parents: true });
          await client.create(`/old${i}/sub/f`);
        }
        const installsBefore = await Promise.all(c.shadows.map(async (s) => (await rpcJson<Status>(s!.url, '/api/status')).shadow!.installs));
        const refused: string[] = [];
        const calls = Array.from({ length: 30 }, (_, i) => [
          client.delete(`/old${i}`, { recursive: true }).catch((e: GfsError) => void refused.push(`rm /old${i}: ${e.message}`)),
          client.mkdir(`/new${i}/sub`, { parents: true }).catch((e: GfsError) => void refused.push(`mkdir /new${i}: ${e.message}`)),
        ]).flat();
        await Promise.all(calls);
        assert.deepEqual(refused, [], `refused calls: ${refused.slice(0, 3).join('; ')}`);
        const want = await listing(c.masterUrl);
        for (let i = 0; i < 30; i++) {
          assert.ok(!want.includes(`dir /old${i}`), `/old${i} still listed`);
          assert.ok(want.includes(`dir /new${i}/sub`), `/new${i}/sub missing`);
        }
        // Acknowledged means applied on every log replica: no waiting.
        for (const [i, s] of c.shadows.entries()) {
          assert.deepEqual(await listing(s!.url), want, `shadow ${i} lists something else than the master`);
          const st = await rpcJson<Status>(s!.url, '/api/status');
          assert.equal(st.shadow!.installs, installsBefore[i], `shadow ${i} re-installed the master state`);
        }
        const trashBefore = (await rpcJson<{ entries: unknown[] }>(c.masterUrl, '/api/trash')).entries.length;
        assert.equal(trashBefore, 30);

        await c.kill(c.master, 'SIGKILL');
        const promoted = c.shadows[0]!.url;
        await rpcJson(promoted, '/api/promote', { force: false });
        assert.deepEqual(await listing(promoted), want, 'the promoted shadow lost an acknowledged create or delete');
        const p = new GfsClient({ masterUrl: promoted });
        assert.equal((await p.trash()).length, 30, 'deleted directories are in the promoted master trash');
        await p.undelete('/old0');
        assert.ok((await p.list('/old0/sub')).some((e) => e.name === 'f'), 'undelete on the promoted master brings the file back');
      } finally {
        await c.stop();
      }
    });
  });
}
