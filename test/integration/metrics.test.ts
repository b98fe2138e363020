import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import { webToken } from '../../shared/webauth.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { scrape, type Scrape } from '../helpers/metrics.js';

// /metrics of a live master and its chunkservers after a known workload:
// the counters must add up to it (bytes written on every replica, pushes
// along the chain, requests by route, lease grants, fsyncs), the route label
// must be the route and never a path or handle; and the web token must open
// exactly the read-only web paths and nothing else.

const KiB = 1024;
const chunk = 256 * KiB;

describe('/metrics after a known workload', { timeout: 120_000 }, () => {
  let cluster: TestCluster | undefined;
  const data = randomBytes(600 * KiB); // three chunks: two full, one partial; pushed, not inline
  const record = Buffer.from('one record');
  let master: Scrape;
  let servers: Scrape[];

  before(async () => {
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes: chunk, leaseMs: 3_000 });
    assert.equal((await cluster.cli(['mkdir', '/m'])).code, 0);
    const put = await cluster.cli(['put', '-', '/m/big'], data);
    assert.equal(put.code, 0, put.stderr);
    const app = await cluster.cli(['append', '/m/log', '--create'], record);
    assert.equal(app.code, 0, app.stderr);
    const cat = await cluster.cli(['cat', '/m/big']);
    assert.equal(cat.code, 0, cat.stderr);
    assert.ok(cat.stdout.equals(data), 'cat returns what was put');
    master = await scrape(cluster.masterUrl);
    servers = await Promise.all(cluster.chunkservers.map((p) => scrape(p!.url)));
  });

  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  const total = (name: string, where: Record<string, string> = {}) => servers.reduce((a, s) => a + s.sum(name, where), 0);

  it('chunkservers: bytes written, pushed, forwarded and read match the workload', () => {
    // Every replica of every chunk holds the data: three copies of the file and of the record.
    assert.ok(total('gfs_chunk_bytes_written_total') >= 3 * (data.length + record.length), `written ${total('gfs_chunk_bytes_written_total')}`);
    // The put pushes everything down a chain of three: each hop keeps a copy and two of them forward it.
    assert.ok(total('gfs_push_bytes_received_total') >= 3 * data.length, `pushed ${total('gfs_push_bytes_received_total')}`);
    assert.ok(total('gfs_push_bytes_forwarded_total') >= 2 * data.length, `forwarded ${total('gfs_push_bytes_forwarded_total')}`);
    assert.ok(total('gfs_chunk_bytes_read_total') >= data.length, `read ${total('gfs_chunk_bytes_read_total')}`);
    assert.ok(total('gfs_reads_total', { result: 'served' }) >= 3, 'one read per chunk at least');
    // Three chunks written once each by a primary, applied by two secondaries; one append.
    assert.ok(total('gfs_mutations_total', { kind: 'write' }) >= 3);
    assert.ok(total('gfs_mutations_total', { kind: 'apply' }) >= 2 * 3 + 2);
    assert.ok(total('gfs_mutations_total', { kind: 'append' }) >= 1);
    assert.equal(total('gfs_chunks_held'), 3 * 4, 'four chunks, three replicas each');
  });

  it('chunkservers: fsyncs counted with their latency; requests counted by route', () => {
    // put makes its data durable on every replica (a sync per chunk replica).
    assert.ok(total('gfs_fsync_duration_seconds_count', { kind: 'chunk' }) >= 3 * 3, `chunk fsyncs ${total('gfs_fsync_duration_seconds_count', { kind: 'chunk' })}`);
    assert.ok(total('gfs_fsync_duration_seconds_sum', { kind: 'chunk' }) > 0);
    assert.ok(total('gfs_requests_total', { op: '/push/:dataId', status: '2xx' }) >= 3 * 3, 'one push per chunk and hop');
    assert.ok(total('gfs_requests_total', { op: '/chunk/write', status: '2xx' }) >= 3);
    assert.ok(total('gfs_requests_total', { op: '/chunk/read', status: '2xx' }) >= 3);
    for (const s of servers) {
      assert.ok(s.sum('gfs_heartbeats_total') > 0, 'heartbeats answered');
      for (const age of s.series('gfs_heartbeat_age_seconds')) assert.ok(age.value < 5, `heartbeat age ${age.value} s`);
      // The histogram's +Inf bucket is its count, op by op.
      for (const c of s.series('gfs_request_duration_seconds_count')) assert.equal(s.sum('gfs_request_duration_seconds_bucket', { ...c.labels, le: '+Inf' }), c.value);
    }
  });

  it('master: requests by route, lease grants, oplog fsyncs, cluster gauges', () => {
    assert.ok(master.sum('gfs_requests_total', { op: '/api/create', status: '2xx' }) >= 2, 'the put and the append --create');
    assert.ok(master.sum('gfs_requests_total', { op: '/api/allocate' }) >= 1);
    assert.ok(master.sum('gfs_request_duration_seconds_count', { op: '/api/lease' }) >= 1);
    assert.ok(master.sum('gfs_requests_total', { op: '/api/cs/heartbeat' }) >= 3);
    assert.ok(master.sum('gfs_lease_grants_total') >= 4, `lease grants ${master.sum('gfs_lease_grants_total')}: one per chunk written`);
    assert.ok(master.sum('gfs_chunk_allocations_total') >= 4);
    assert.ok(master.sum('gfs_oplog_fsyncs_total') > 0);
    assert.ok(master.sum('gfs_fsync_duration_seconds_count', { kind: 'oplog' }) > 0);
    assert.ok(master.sum('gfs_oplog_records_total') >= 6, 'mkdir, creates, allocations, version bumps');
    assert.equal(master.sum('gfs_files'), 2);
    assert.equal(master.sum('gfs_chunkservers', { state: 'alive' }), 3);
    assert.equal(master.sum('gfs_chunks', { state: 'healthy' }), 4);
    assert.equal(master.sum('gfs_rereplication_queue_length'), 0);
    assert.equal(master.sum('gfs_safe_mode'), 0);
    const ages = master.series('gfs_chunkserver_heartbeat_age_seconds');
    assert.deepEqual(ages.map((a) => a.labels.chunkserver).sort(), ['cs0', 'cs1', 'cs2']);
    for (const a of ages) assert.ok(a.value < 5, `${a.labels.chunkserver} heard ${a.value} s ago`);
    assert.ok(master.has('process_cpu_user_seconds_total'), 'process metrics too');
  });

  it('route labels are routes: no paths, handles or data ids', () => {
    for (const s of [master, ...servers]) {
      for (const x of s.series('gfs_requests_total')) {
        const op = x.labels.op!;
        assert.ok(op === 'none' || op.startsWith('/'), op);
        assert.ok(!/[0-9a-f]{16}/.test(op) && !op.includes('/m/'), `op label ${op} carries a handle or a path`);
      }
    }
  });

  describe('web token', () => {
    const token = webToken()!;
    const get = (url: string, headers: Record<string, string> = {}, method = 'GET') => request(url, { method, headers, headersTimeout: 10_000, bodyTimeout: 10_000 });

    it('opens /metrics and the status JSON by bearer header, and nothing else', async () => {
      assert.ok(token, 'test clusters are authenticated');
      const m = cluster!.masterUrl;
      const cs = cluster!.chunkservers[0]!.url;
      for (const url of [`${m}/metrics`, `${cs}/metrics`, `${m}/status`, `${m}/status/data`]) {
        const none = await get(url);
        await none.body.dump();
        assert.equal(none.statusCode, 401, `${url} without credentials`);
        const wrong = await get(url, { authorization: `Bearer ${'x'.repeat(token.length)}` });
        await wrong.body.dump();
        assert.equal(wrong.statusCode, 401, `${url} with a wrong token`);
      }
      const data = await get(`${m}/status/data?path=%2Fm`, { authorization: `Bearer ${token}` });
      assert.equal(data.statusCode, 200);
      const model = (await data.body.json()) as { summary: { files: number }; chunkservers: unknown[]; namespace: { entries: { path: string; chunks?: { live: string[] }[] }[] } };
      assert.equal(model.summary.files, 2);
      assert.equal(model.chunkservers.length, 3);
      const big = model.namespace.entries.find((e) => e.path === '/m/big')!;
      assert.equal(big.chunks!.length, 3);
      for (const c of big.chunks!) assert.equal(c.live.length, 3);
      // Not the client API, not debug endpoints, not chunk data, and never a mutation.
      const before = await rpcJson<{ entries: unknown[] }>(m, '/api/list', undefined, { query: { path: '/' } });
      for (const [url, method] of [
        [`${m}/api/status`, 'GET'],
        [`${m}/api/list?path=%2F`, 'GET'],
        [`${m}/debug/leases`, 'GET'],
        [`${m}/admin/faults`, 'GET'],
        [`${cs}/debug/state`, 'GET'],
        [`${cs}/chunk/read?handle=0000000000000001&offset=0&length=10`, 'GET'],
        [`${m}/api/mkdir`, 'POST'],
        [`${m}/metrics`, 'POST'],
      ] as const) {
        const r = await request(url, { method, headers: { authorization: `Bearer ${token}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) }, body: method === 'POST' ? JSON.stringify({ path: '/evil' }) : undefined });
        const body = (await r.body.json()) as { code: string };
        assert.equal(r.statusCode, 401, `${method} ${url} with the web token`);
        assert.equal(body.code, 'UNAUTHENTICATED');
      }
      const afterList = await rpcJson<{ entries: unknown[] }>(m, '/api/list', undefined, { query: { path: '/' } });
      assert.deepEqual(afterList, before, 'nothing was created');
    });

    it('?token= sets an HttpOnly cookie and redirects without the token; the cookie opens the page', async () => {
      const m = cluster!.masterUrl;
      const port = new URL(m).port;
      const login = await get(`${m}/status?path=%2Fm&token=${token}`);
      await login.body.dump();
      assert.equal(login.statusCode, 303);
      assert.equal(login.headers.location, '/status?path=%2Fm');
      const cookie = String(login.headers['set-cookie']);
      assert.match(cookie, new RegExp(`^gfs_web_${port}=${token.replace(/[-]/g, '\\-')}; Path=/; HttpOnly; SameSite=Strict$`));
      const page = await get(`${m}/status?path=%2Fm`, { cookie: cookie.split(';')[0]! });
      const html = await page.body.text();
      assert.equal(page.statusCode, 200);
      assert.match(String(page.headers['content-type']), /^text\/html/);
      assert.ok(html.includes('/m/big'), 'the namespace browser lists the file');
      const api = await get(`${m}/api/status`, { cookie: cookie.split(';')[0]! });
      await api.body.dump();
      assert.equal(api.statusCode, 401, 'the cookie is no credential for the API');
      const bad = await get(`${m}/status?token=nope`);
      await bad.body.dump();
      assert.equal(bad.statusCode, 401);
    });
  });
});
