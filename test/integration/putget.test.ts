import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ChunksAnswer, FileInfo } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';

// put/get/cat/stat through the `gfs` CLI (separate processes) against a real
// cluster on 127.0.0.1 with a small chunk size, at the sizes where chunk
// boundaries bite, and with several writers at once.

const MiB = 1024 * 1024;
const chunk = 1 * MiB;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('put/get through the CLI', { timeout: 150_000 }, () => {
  let cluster: TestCluster | undefined;
  let local: string;

  before(async () => {
    local = mkdtempSync(join(tmpdir(), 'gfs-putget-'));
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes: chunk, leaseMs: 3_000, heartbeatMs: 200, deadMs: 2_000 });
  });

  after(async () => {
    await cluster?.stop();
    rmSync(local, { recursive: true, force: true });
    await closeRpc();
  });

  async function gfs(args: string[]): Promise<Buffer> {
    const r = await cluster!.cli(args);
    assert.equal(r.code, 0, `gfs ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  const files = new Map<string, { remote: string; data: Buffer }>();

  /** get, stat, cat --replica of every listed replica, stat: all must agree with what was put. CLI calls run in parallel. */
  async function verify(name: string): Promise<void> {
    const { remote, data } = files.get(name)!;
    const dst = join(local, `${name}.out`);
    const loc = await rpcJson<ChunksAnswer>(cluster!.masterUrl, '/api/chunks', { path: remote, startIndex: 0, count: 100 });
    assert.equal(loc.chunks.length, Math.ceil(data.length / chunk), `${name}: chunk count`);
    const ids = new Set<string>();
    for (const c of loc.chunks) {
      assert.equal(c.replicas.length, 3, `${name}: chunk ${c.index} has ${c.replicas.length} replicas listed, not 3`);
      for (const r of c.replicas) ids.add(r.id);
    }
    // Plain `cat` (the library's read path, where `get` reads piece by piece) only for the multi-chunk file.
    const withCat = data.length > 2 * chunk;
    const [, statOut, cat, ...replicas] = await Promise.all([
      gfs(['get', remote, dst]),
      gfs(['stat', remote]),
      withCat ? gfs(['cat', remote]) : Promise.resolve(undefined),
      ...[...ids].map((id) => gfs(['cat', '--replica', id, remote])),
    ]);
    const got = readFileSync(dst);
    assert.equal(got.length, data.length, `${name}: get returned ${got.length} bytes, not ${data.length}`);
    assert.equal(sha256(got), sha256(data), `${name}: get returned different bytes`);
    if (cat) assert.equal(sha256(cat), sha256(data), `${name}: cat returned different bytes`);
    const stat = JSON.parse(statOut!.toString('utf8')) as FileInfo;
    assert.equal(stat.type, 'file');
    assert.equal(stat.sizeBytes, data.length, `${name}: stat size`);
    assert.equal(stat.chunkCount, Math.ceil(data.length / chunk), `${name}: stat chunk count`);
    [...ids].forEach((id, i) => {
      const b = replicas[i]!;
      assert.equal(b.length, data.length, `${name}: replica ${id} length`);
      assert.equal(sha256(b), sha256(data), `${name}: replica ${id} holds different bytes`);
    });
  }

  const sizes: [string, number][] = [
    ['empty', 0],
    ['one-byte', 1],
    ['chunk-minus-1', chunk - 1],
    ['chunk', chunk],
    ['chunk-plus-1', chunk + 1],
    ['three-and-a-half-chunks', 3.5 * chunk],
  ];

  it(`puts files of ${sizes.map(([, n]) => n).join(', ')} bytes`, async () => {
    await gfs(['mkdir', '-p', '/putget']);
    for (const [name, n] of sizes) {
      const data = randomBytes(n);
      files.set(name, { remote: `/putget/${name}`, data });
      writeFileSync(join(local, `${name}.in`), data);
    }
    // Separate processes, a few at a time.
    await Promise.all(sizes.map(([name]) => gfs(['put', join(local, `${name}.in`), files.get(name)!.remote])));
  });

  for (const [name, n] of sizes) {
    it(`reads back ${n} bytes (${name}) with get, cat, stat and cat --replica of every replica`, async () => {
      assert.ok(files.has(name), 'the put step failed');
      await verify(name);
    });
  }

  it('4 concurrent writers (separate CLI processes) to different files', async () => {
    await gfs(['mkdir', '-p', '/many']);
    const sizesBytes = [2.5 * chunk, 2 * chunk + 12_345, chunk + 7, 3 * chunk];
    const many = sizesBytes.map((n, i) => ({ src: join(local, `w${i}.in`), remote: `/many/w${i}`, data: randomBytes(n) }));
    for (const f of many) writeFileSync(f.src, f.data);
    const results = await Promise.all(many.map((f) => cluster!.cli(['put', f.src, f.remote])));
    results.forEach((r, i) => assert.equal(r.code, 0, `writer ${i} failed: ${r.stderr}`));
    // Read back in this process (the writers were the point here, and each CLI process costs start-up CPU).
    const client = cluster!.client();
    for (const f of many) {
      const st = await client.stat(f.remote);
      assert.equal(st.sizeBytes, f.data.length, `${f.remote}: stat size`);
      const got = await client.read(f.remote, 0, f.data.length + 1);
      assert.equal(got.length, f.data.length, `${f.remote}: length`);
      assert.equal(sha256(got), sha256(f.data), `${f.remote}: content`);
    }
    const ls = (await gfs(['ls', '/many'])).toString('utf8').trim().split('\n').sort();
    assert.deepEqual(ls, ['w0', 'w1', 'w2', 'w3']);
  });

  it('get of a missing file fails with a one-line reason and a non-zero exit', async () => {
    const r = await cluster!.cli(['get', '/putget/missing', join(local, 'missing.out')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^gfs: .+\n$/);
  });
});
