import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';
import { authHeaders, rawRequest, type RawAnswer } from '../helpers/signed.js';

// Bounded resources on a chunkserver under a client that opens many data
// pushes and never completes them: pushes beyond --max-pushes or beyond the
// --push-buffer bytes get 429 at once, the push buffer and the process's
// memory stay under the bound, stalled pushes are dropped after
// --push-idle-ms and their reservations released, requests beyond
// --max-requests get 503, oversized bodies 413, and the cluster serves
// normally afterwards.

const MiB = 1024 * 1024;
const chunkSizeBytes = 4 * MiB;
const maxPushes = 8;
const pushBufferBytes = 16 * MiB;
const pushIdleMs = 2_000;
const maxRequests = 48;

interface PushState {
  usedBytes: number;
  count: number;
  active: number;
  refused: number;
}

describe('bounded push buffer and request limits', { timeout: 120_000 }, () => {
  let cluster: TestCluster | undefined;
  let cs = '';

  before(async () => {
    cluster = await startCluster({
      chunkservers: 1,
      chunkSizeBytes,
      chunkserverArgs: ['--max-pushes', String(maxPushes), '--push-buffer', String(pushBufferBytes), '--push-idle-ms', String(pushIdleMs), '--max-requests', String(maxRequests)],
    });
    cs = cluster.chunkservers[0]!.url;
  });

  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  const state = () => rpcJson<{ push: PushState; rssBytes: number }>(cs, '/debug/state');

  /** A push that declares `declared` bytes, sends `send` of them and then goes silent for stallMs. */
  function stalledPush(id: string, declared: number, send: number, stallMs: number): Promise<RawAnswer> {
    const body = randomBytes(declared);
    const target = `/push/${id}`;
    return rawRequest(cs, { method: 'PUT', target, body, headers: { 'content-type': 'application/octet-stream', ...authHeaders('PUT', target, body) }, sendBytes: send, stallMs, timeoutMs: stallMs + 10_000 });
  }

  async function drained(): Promise<void> {
    await waitFor('stalled pushes to be dropped', async () => {
      const s = (await state()).push;
      return s.active === 0 && s.usedBytes === 0;
    }, pushIdleMs * 5);
  }

  it('pushes beyond --max-pushes get 429 at once; stalled ones are dropped after the idle time', async () => {
    const n = 20;
    const answers = Array.from({ length: n }, (_, i) => stalledPush(`tiny-${i}`, 1024, 0, pushIdleMs * 3));
    await waitFor('the refusals', async () => (await state()).push.refused >= n - maxPushes, 10_000);
    const s = (await state()).push;
    assert.equal(s.active, maxPushes, 'exactly max-pushes pushes are under way');
    assert.ok(s.usedBytes <= maxPushes * 1024);
    await drained(); // the server drops them after --push-idle-ms, well before the client gives up
    const all = await Promise.all(answers);
    const byStatus = all.map((a) => a.status ?? 'closed');
    assert.equal(byStatus.filter((x) => x === 429).length, n - maxPushes, `answers: ${JSON.stringify(byStatus)}`);
    for (const a of all.filter((x) => x.status === 429)) assert.match(a.body, /"code":"TOO_BUSY"/);
  });

  it('pushes beyond the push-buffer bytes get 429, and memory stays bounded', async () => {
    const baseline = await state();
    const declared = chunkSizeBytes; // 4 MiB each: the 16 MiB buffer holds four
    const n = 16;
    const answers = Array.from({ length: n }, (_, i) => stalledPush(`big-${i}`, declared, declared - 1024, pushIdleMs * 3));
    const refusedBefore = baseline.push.refused;
    await waitFor('the refusals', async () => (await state()).push.refused - refusedBefore >= n - pushBufferBytes / declared, 15_000);
    // Everything the accepted pushes send has arrived by now (they stall 1 KiB short of their length).
    await waitFor('the accepted pushes\' bytes', async () => (await state()).push.usedBytes === pushBufferBytes, 10_000);
    const s = await state();
    assert.ok(s.push.usedBytes <= pushBufferBytes, `push buffer ${s.push.usedBytes} <= ${pushBufferBytes}`);
    assert.equal(s.push.active, pushBufferBytes / declared);
    const growthBytes = s.rssBytes - baseline.rssBytes;
    // Bounded: less than everything offered (n x declared = 64 MiB). The slack covers the refused pushes'
    // bodies, which are read and discarded (so their answers survive, shared/http.ts lingerBeforeClose)
    // and are garbage until the next collection, plus socket buffers: 30-50 MiB seen on a loaded machine.
    const slackBytes = 40 * MiB;
    assert.ok(pushBufferBytes + slackBytes < n * declared, 'the bound still proves the refused pushes are not kept');
    assert.ok(growthBytes < pushBufferBytes + slackBytes, `RSS grew by ${(growthBytes / MiB).toFixed(1)} MiB with ${n} pushes of ${declared / MiB} MiB open (bound ${pushBufferBytes / MiB} MiB + ${slackBytes / MiB} MiB slack)`);
    await drained();
    const all = await Promise.all(answers);
    assert.equal(all.filter((a) => a.status === 429).length, n - pushBufferBytes / declared, JSON.stringify(all.map((a) => a.status ?? 'closed')));
  });

  it('a push larger than a chunk gets 413 before any byte is read', async () => {
    const a = await stalledPush('too-big', chunkSizeBytes + 1, 0, 0);
    assert.equal(a.status, 413, a.body);
    const body = JSON.stringify({ handle: '0000000000000001', version: 1, pad: 'x'.repeat(300 * 1024) });
    const j = await rawRequest(cs, { method: 'POST', target: '/chunk/sync', body, headers: { 'content-type': 'application/json', ...authHeaders('POST', '/chunk/sync', body) } });
    assert.equal(j.status, 413, j.body);
  });

  it('requests beyond --max-requests get 503 while others hang', async () => {
    // Requests whose bodies never finish keep their slot until the client gives up.
    const body = JSON.stringify({ handle: '0000000000000001', version: 1 });
    const hang = Array.from({ length: maxRequests + 8 }, () =>
      rawRequest(cs, { method: 'POST', target: '/chunk/sync', body, headers: { 'content-type': 'application/json', ...authHeaders('POST', '/chunk/sync', body) }, sendBytes: 5, stallMs: 3_000, timeoutMs: 15_000 }),
    );
    const all = await Promise.all(hang);
    const busy = all.filter((a) => a.status === 503);
    assert.ok(busy.length >= 8, `503s: ${busy.length} of ${all.length}: ${JSON.stringify(all.map((a) => a.status ?? 'closed'))}`);
    assert.match(busy[0]!.body, /"code":"UNAVAILABLE"/);
    assert.ok(all.every((a) => a.status === undefined || a.status < 500 || a.status === 503));
  });

  it('the cluster still serves a normal put and get', async () => {
    await drained();
    const c = cluster!.client();
    const data = randomBytes(chunkSizeBytes + 100_000);
    await c.create('/ok', { replication: 1 });
    await c.write('/ok', 0, data);
    await c.sync('/ok');
    assert.ok((await c.read('/ok', 0, data.length)).equals(data));
  });
});
