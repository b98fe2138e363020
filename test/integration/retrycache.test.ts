import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GfsError } from '../../shared/errors.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { FileInfo } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';

// The master's retry cache (master/namespace.ts `requests`): a client resends
// a mutation whose answer it lost with the same request id, and the master
// answers it as done instead of doing it twice (no EXISTS for a create, no
// NOT_FOUND for a delete), also after a restart, since the id is logged with
// the mutation. A different id is a different call.

let c: TestCluster | undefined;
after(async () => {
  await c?.stop();
  await closeRpc();
});

async function call<T>(path: string, body: unknown, rid?: string): Promise<T | GfsError> {
  try {
    return await rpcJson<T>(c!.masterUrl, path, body, rid ? { headers: { 'x-gfs-request-id': rid } } : {});
  } catch (e) {
    if (e instanceof GfsError) return e;
    throw e;
  }
}

describe('the master retry cache', { timeout: 60_000 }, () => {
  it('answers a resent mutation as done, also after a restart; other ids are other calls', async () => {
    c = await startCluster({ chunkservers: 1 });
    const first = await call<FileInfo>('/api/create', { path: '/r' }, 'client1:call-1');
    assert.ok(!(first instanceof GfsError), String(first));
    const again = await call<FileInfo>('/api/create', { path: '/r' }, 'client1:call-1');
    assert.ok(!(again instanceof GfsError), `a resent create failed: ${String(again)}`);
    assert.equal(again.path, '/r');
    const other = await call('/api/create', { path: '/r' }, 'client1:call-2');
    assert.ok(other instanceof GfsError && other.code === 'EXISTS', 'a new call creating an existing file must fail');
    const noId = await call('/api/create', { path: '/r' });
    assert.ok(noId instanceof GfsError && noId.code === 'EXISTS');

    assert.ok(!((await call('/api/delete', { path: '/r', now: true }, 'client1:call-3')) instanceof GfsError));
    await c.restartMaster();
    await c.waitForChunkservers(1);
    // After the restart the log still knows call-3: the resent delete succeeds instead of NOT_FOUND.
    const resent = await call('/api/delete', { path: '/r', now: true }, 'client1:call-3');
    assert.ok(!(resent instanceof GfsError), `a resent delete after a restart failed: ${String(resent)}`);
    const fresh = await call('/api/delete', { path: '/r', now: true }, 'client1:call-4');
    assert.ok(fresh instanceof GfsError && fresh.code === 'NOT_FOUND');
    // An id that does not look like one is ignored (the call is not remembered).
    assert.ok(!((await call('/api/mkdir', { path: '/d' }, 'bad id!')) instanceof GfsError));
    const dup = await call('/api/mkdir', { path: '/d' }, 'bad id!');
    assert.ok(dup instanceof GfsError && dup.code === 'EXISTS');
  });

  it('a call that logs several mutations (undelete: move back, then drop its trash directory) does all of them, and a resend is answered as done', async () => {
    assert.ok(!((await call('/api/create', { path: '/u' }, 'client1:call-10')) instanceof GfsError));
    assert.ok(!((await call('/api/delete', { path: '/u' }, 'client1:call-11')) instanceof GfsError));
    const trashDirs = async () => (await rpcJson<{ entries: unknown[] }>(c!.masterUrl, '/api/list', undefined, { query: { path: '/.trash' } })).entries.length;
    assert.equal(await trashDirs(), 1);
    const back = await call('/api/undelete', { path: '/u' }, 'client1:call-12');
    assert.ok(!(back instanceof GfsError), String(back));
    assert.equal(await trashDirs(), 0, 'the second mutation of the call (the emptied trash directory) was skipped');
    const resent = await call('/api/undelete', { path: '/u' }, 'client1:call-12');
    assert.ok(!(resent instanceof GfsError), `a resent undelete failed: ${String(resent)}`);
    const fresh = await call('/api/undelete', { path: '/u' }, 'client1:call-13');
    assert.ok(fresh instanceof GfsError && fresh.code === 'NOT_FOUND');
    const st = await rpcJson<FileInfo>(c!.masterUrl, '/api/stat', undefined, { query: { path: '/u' } });
    assert.equal(st.path, '/u');
  });
});
