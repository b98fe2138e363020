import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import { TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';
import { authHeaders, rawRequest, type RawAnswer } from '../helpers/signed.js';
import { fillDisk, mountTmpfs } from '../helpers/tmpfs.js';

// A real master whose directory is a small tmpfs that fills up: creates are answered 507
// {error, code: 'NO_SPACE'} (not INTERNAL, and the master keeps running), the status says so, the
// log says it once; after space is freed creates work again without a restart; after SIGKILL and
// a restart every acknowledged create is there and no refused one is.

test('a full master disk answers NO_SPACE and recovers when space returns', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gfs-test-'));
  const masterDir = join(dir, 'master');
  mkdirSync(masterDir);
  const mount = mountTmpfs(masterDir, 2 * 1024 * 1024);
  if ('skip' in mount) {
    rmSync(dir, { recursive: true, force: true });
    t.skip(mount.skip);
    return;
  }
  const c = new TestCluster(dir, { chunkservers: 1 });
  try {
    await c.startMaster();
    await c.startChunkserver(0);
    await c.waitForChunkservers(1);
    await waitFor('the master to leave safe mode', async () => !(await c.status()).safeMode);
    const m = c.masterUrl;
    const create = (path: string) => {
      const body = JSON.stringify({ path });
      return rawRequest(m, { method: 'POST', target: '/api/create', body, headers: { 'content-type': 'application/json', ...authHeaders('POST', '/api/create', body) } });
    };

    const acknowledged: string[] = [];
    for (let i = 0; i < 5; i++) {
      const a = await create(`/before-${i}`);
      assert.equal(a.status, 200, a.body);
      acknowledged.push(`/before-${i}`);
    }

    const filler = join(masterDir, 'filler');
    fillDisk(filler);
    // What is left of the log file's last page still takes a few records: create until refused.
    const long = 'x'.repeat(200);
    const refused: { path: string; a: RawAnswer }[] = [];
    for (let i = 0; i < 100 && refused.length < 3; i++) {
      const path = `/full-${i}-${long}`;
      const a = await create(path);
      if (a.status === 200 && refused.length === 0) acknowledged.push(path);
      else refused.push({ path, a });
    }
    assert.equal(refused.length, 3, 'creates are refused on the full disk');
    // A master with log replicas (or not told it has none) holds a batch that may be on them, and
    // logs it once space returns: its caller was told the outcome is unknown.
    const unknown = new Set<string>();
    for (const { path, a } of refused) {
      assert.equal(a.status, 507, `answer ${a.status} ${a.body.slice(0, 200)}; master log: ${readFileSync(join(dir, 'master.log'), 'utf8').slice(-1500)}`);
      const body = JSON.parse(a.body) as { error?: unknown; code?: unknown; outcomeUnknown?: unknown };
      assert.equal(body.code, 'NO_SPACE');
      assert.equal(typeof body.error, 'string');
      if (body.outcomeUnknown === true) unknown.add(path);
    }
    assert.ok(unknown.size <= 1, 'at most the first refused batch is held');
    const s = await rpcJson<{ oplog: { noSpace?: boolean } }>(m, '/api/status');
    assert.equal(s.oplog.noSpace, true);
    const fullLines = () => readFileSync(join(dir, 'master.log'), 'utf8').split('\n').filter((l) => l.includes('oplog: disk full')).length;
    assert.equal(fullLines(), 1, 'logged once');

    rmSync(filler);
    for (let i = 0; i < 3; i++) {
      const path = `/after-${i}-${long}`;
      // A held batch goes first, within a second: until then creates still get NO_SPACE.
      await waitFor(`create ${path}`, async () => (await create(path)).status === 200, 10_000);
      acknowledged.push(path);
    }
    assert.equal((await rpcJson<{ oplog: { noSpace?: boolean } }>(m, '/api/status')).oplog.noSpace, false);

    await c.restartMaster();
    await c.waitForChunkservers(1);
    const list = await rpcJson<{ entries: { path: string }[] }>(c.masterUrl, '/api/list', undefined, { query: { path: '/', recursive: '1' } });
    const paths = list.entries.map((e) => e.path).filter((p) => !unknown.has(p)).sort();
    assert.deepEqual(paths, [...acknowledged].sort(), 'every acknowledged create and no refused one');
  } finally {
    await Promise.all([c.kill(c.master), ...c.chunkservers.map((p) => c.kill(p))]);
    mount.unmount();
    rmdirSync(masterDir);
    await c.stop();
    await closeRpc();
  }
});
