import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GfsError } from '../../shared/errors.js';
import { rpcJson } from '../../shared/rpc.js';
import { maxBatchOps, type BatchAnswer, type BatchOp, type ListEntry } from '../../shared/wire.js';
import { clusterPerSuite, type TestCluster } from '../helpers/cluster.js';

// POST /api/batch (master/batch.ts) with a real master: each operation is
// answered on its own; operations on related paths run in the order given;
// unrelated ones share fsyncs; a resent batch is answered from the retry cache
// without doing anything twice; bad input changes nothing; `gfs mkdir` and
// `gfs rm` of many paths try every path and exit 1 naming each one refused.

let c: () => TestCluster;

const status = async () => rpcJson<{ oplog: { fsyncs: number; records: number } }>(c().masterUrl, '/api/status');
const names = async (path: string) => (await rpcJson<{ entries: ListEntry[] }>(c().masterUrl, '/api/list', undefined, { query: { path } })).entries.map((e) => e.name).sort();
const batch = (ops: BatchOp[], rid?: string) => rpcJson<BatchAnswer>(c().masterUrl, '/api/batch', { ops }, rid ? { headers: { 'x-gfs-request-id': rid } } : {});

describe('namespace batches', { timeout: 120_000 }, () => {
  c = clusterPerSuite({ chunkservers: 1 });

  it('answers each operation on its own, in the order given where paths are related', async () => {
    const ops: BatchOp[] = [
      { op: 'mkdir', path: '/b' },
      ...Array.from({ length: 20 }, (_, i): BatchOp => ({ op: 'create', path: `/b/f${i}` })),
      { op: 'create', path: '/b/f3' }, // exists by now: refused, the rest stand
      { op: 'delete', path: '/nothing-here' },
      { op: 'rename', src: '/b/f0', dst: '/b/renamed' },
      { op: 'stat', path: '/b/renamed' },
      { op: 'delete', path: '/b/f1', now: true },
      { op: 'mkdir', path: '/b/deep/er' }, // no parent, no -p
      { op: 'mkdir', path: '/b/deep/er', parents: true },
    ];
    const { results } = await batch(ops);
    assert.equal(results.length, ops.length);
    const byIndex = (i: number) => results[i]!;
    assert.ok(results.slice(0, 21).every((r) => r.ok), `mkdir and creates: ${JSON.stringify(results.slice(0, 21).filter((r) => !r.ok))}`);
    const info = byIndex(1);
    assert.ok(info.ok && info.info?.path === '/b/f0' && info.info.type === 'file', 'a create answers with the file');
    const dup = byIndex(21);
    assert.ok(!dup.ok && dup.code === 'EXISTS', `second create of /b/f3: ${JSON.stringify(dup)}`);
    const missing = byIndex(22);
    assert.ok(!missing.ok && missing.code === 'NOT_FOUND', `delete of a missing path: ${JSON.stringify(missing)}`);
    assert.ok(byIndex(23).ok, 'rename');
    const st = byIndex(24);
    assert.ok(st.ok && st.info?.path === '/b/renamed', `stat after the rename in the same batch: ${JSON.stringify(st)}`);
    assert.ok(byIndex(25).ok, 'delete --now');
    const noParent = byIndex(26);
    assert.ok(!noParent.ok && noParent.code === 'NOT_FOUND', `mkdir without its parent: ${JSON.stringify(noParent)}`);
    assert.ok(byIndex(27).ok, 'mkdir -p');
    const want = ['deep', 'renamed', ...Array.from({ length: 18 }, (_, i) => `f${i + 2}`)].sort();
    assert.deepEqual(await names('/b'), want);
  });

  it('unrelated creates share fsyncs, and a resent batch does nothing twice', async () => {
    await batch([{ op: 'mkdir', path: '/g' }]);
    const n = 300;
    const ops = Array.from({ length: n }, (_, i): BatchOp => ({ op: 'create', path: `/g/f${i}` }));
    const s0 = await status();
    const first = await batch(ops, 'batchtest:call-1');
    assert.ok(first.results.every((r) => r.ok));
    const s1 = await status();
    assert.equal(s1.oplog.records - s0.oplog.records, n, 'one op-log record per create');
    const fsyncs = s1.oplog.fsyncs - s0.oplog.fsyncs;
    console.log(`# ${n} creates in one batch: ${fsyncs} fsyncs`);
    assert.ok(fsyncs <= n / 10, `${fsyncs} fsyncs for ${n} creates in one batch: they did not share`);

    const again = await batch(ops, 'batchtest:call-1');
    assert.ok(again.results.every((r) => r.ok), `a resent batch was refused: ${JSON.stringify(again.results.find((r) => !r.ok))}`);
    assert.equal((await status()).oplog.records, s1.oplog.records, 'a resent batch logged something again');
    const other = await batch(ops.slice(0, 1), 'batchtest:call-2');
    assert.ok(!other.results[0]!.ok && other.results[0]!.code === 'EXISTS', 'a new call is a new call');
    assert.equal((await names('/g')).length, n);
  });

  it('refuses bad input whole, changing nothing', async () => {
    const s0 = await status();
    const refused = async (body: unknown) => {
      const e = await rpcJson(c().masterUrl, '/api/batch', body).then(() => undefined, (x: unknown) => x);
      assert.ok(e instanceof GfsError && e.status === 400 && e.code === 'BAD_REQUEST', `expected 400 BAD_REQUEST for ${JSON.stringify(body).slice(0, 80)}: ${String(e)}`);
    };
    await refused({ ops: [] });
    await refused({ ops: Array.from({ length: maxBatchOps + 1 }, (_, i) => ({ op: 'mkdir', path: `/x${i}` })) });
    await refused({ ops: [{ op: 'mkdir', path: '/ok' }, { op: 'chmod', path: '/x' }] });
    await refused({ ops: [{ op: 'create', path: '/ok', replication: 0 }] });
    await refused({ ops: [{ op: 'mkdir', path: '/ok', extra: 1 }] });
    assert.equal((await status()).oplog.records, s0.oplog.records);
    assert.ok(!(await names('/')).includes('ok'));
  });

  it('gfs mkdir and gfs rm try every path and name each one refused', async () => {
    const made = await c().cli(['mkdir', '/m1', '/m2', '/m1', '/nope/m3']);
    assert.equal(made.code, 1, `exit status ${made.code}`);
    const lines = made.stderr.trim().split('\n');
    assert.equal(lines.length, 2, `one line per refused path: ${made.stderr}`);
    assert.ok(lines.some((l) => l.includes('/m1')) && lines.some((l) => l.includes('/nope')), made.stderr);
    const root = await names('/');
    assert.ok(root.includes('m1') && root.includes('m2'));
    const ok = await c().cli(['mkdir', '/m4', '/m5']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr, '');
    const rm = await c().cli(['rm', '-r', '/m1', '/m2', '/m4', '/gone']);
    assert.equal(rm.code, 1);
    assert.ok(rm.stderr.includes('/gone') && rm.stderr.trim().split('\n').length === 1, rm.stderr);
    const after = await names('/');
    for (const p of ['m1', 'm2', 'm4']) assert.ok(!after.includes(p), `${p} still there`);
    assert.ok(after.includes('m5'));
  });
});
