import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect, type Gfs } from 'gfs';
import { closeRpc } from '../../shared/rpc.js';
import { startCluster, waitFor, type TestCluster } from '../helpers/cluster.js';

// The examples in examples/ run as a user would run them (node examples/X.mjs,
// master and secret from the environment) against a real cluster, and their
// results are checked: word count in the MapReduce shape, the log shipper
// across a SIGKILL and restart, and streaming a file in and out.

const examples = resolve(import.meta.dirname, '../../../examples');
let c: TestCluster | undefined;
let gfs: Gfs;
let dir: string;
const children = new Set<ChildProcess>();

function start(script: string, args: string[]): { proc: ChildProcess; done: Promise<{ code: number | null; out: string; err: string }> } {
  const proc = spawn(process.execPath, [join(examples, script), ...args], { env: { ...process.env, GFS_MASTER: c!.masterUrl }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const done = new Promise<{ code: number | null; out: string; err: string }>((res) =>
    proc.on('exit', (code) => {
      children.delete(proc);
      res({ code, out, err });
    }),
  );
  return { proc, done };
}

async function runExample(script: string, args: string[]): Promise<string> {
  const r = await start(script, args).done;
  assert.equal(r.code, 0, `${script} ${args.join(' ')} exited ${r.code}: ${r.err}`);
  return r.out;
}

describe('examples', { timeout: 300_000 }, () => {
  before(async () => {
    c = await startCluster({ chunkservers: 3, chunkSizeBytes: 1024 * 1024 });
    gfs = connect({ master: c.masterUrl });
    dir = mkdtempSync(join(tmpdir(), 'gfs-examples-'));
  });
  after(async () => {
    for (const p of children) p.kill('SIGKILL');
    await c?.stop();
    await closeRpc();
    rmSync(dir, { recursive: true, force: true });
  });

  it('wordcount.mjs: mappers record-append to shared files, reducers rename their output into place', async () => {
    const vocab = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta', 'iota', 'kappa'];
    const want = new Map<string, number>();
    await gfs.mkdir('/wc/in', { recursive: true });
    for (let f = 0; f < 7; f++) {
      const ws = Array.from({ length: 2000 + f * 100 }, (_, i) => vocab[(i * 7 + f * 3 + ((i * i) % 11)) % vocab.length]!);
      for (const w of ws) want.set(w, (want.get(w) ?? 0) + 1);
      await gfs.writeFile(`/wc/in/doc${f}.txt`, ws.join(f % 2 ? '\n' : ' '));
    }
    const out = await runExample('wordcount.mjs', ['/wc/in', '/wc/out', '--mappers', '3', '--reducers', '2']);
    assert.match(out, /7 files, 3 mappers, 2 reducers/);
    assert.deepEqual(await gfs.readdir('/wc/out'), ['part-0', 'part-1'], 'the outputs, and nothing left of the intermediate files');
    const got = new Map<string, number>();
    for (const part of ['part-0', 'part-1']) {
      for (const line of (await gfs.readFile(`/wc/out/${part}`, 'utf8')).split('\n').filter(Boolean)) {
        const [w, n] = line.split('\t');
        assert.ok(!got.has(w!), `${w} in two parts`);
        got.set(w!, Number(n));
      }
    }
    assert.deepEqual([...got].sort(), [...want].sort());
  });

  it('logship.mjs: every line once, in order, across a SIGKILL and a restart', async () => {
    const local = join(dir, 'app.log');
    const state = join(dir, 'ship.state');
    writeFileSync(local, '');
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i} ${randomBytes(6).toString('hex')}`);
    const shipped = async () => {
      const out: string[] = [];
      for await (const r of gfs.records('/ship/app')) out.push(r.payload.toString());
      return out;
    };
    await gfs.mkdir('/ship');
    let s = start('logship.mjs', [local, '/ship/app', state]);
    appendFileSync(local, lines.slice(0, 150).join('\n') + '\n');
    await waitFor('the first 150 lines shipped', async () => (await shipped()).length >= 150, 60_000, 200);
    // Killed mid-stream: more lines arrive while it is down, and it resumes from its saved offset.
    appendFileSync(local, lines.slice(150, 220).join('\n') + '\n');
    s.proc.kill('SIGKILL');
    await s.done;
    appendFileSync(local, lines.slice(220).join('\n') + '\n');
    s = start('logship.mjs', [local, '/ship/app', state]);
    await waitFor('all 300 lines shipped', async () => (await shipped()).length >= lines.length, 60_000, 200);
    s.proc.kill('SIGTERM');
    assert.equal((await s.done).code, 0);
    assert.deepEqual(await shipped(), lines, 'every line once, in order');
    assert.equal(JSON.parse(readFileSync(state, 'utf8')).offset, readFileSync(local).length);
  });

  it('streamcopy.mjs: a file in and out with pipeline(), byte for byte', async () => {
    const src = join(dir, 'big.bin');
    const back = join(dir, 'big.back');
    const data = randomBytes(6 * 1024 * 1024 + 12345);
    writeFileSync(src, data);
    assert.match(await runExample('streamcopy.mjs', ['put', src, '/big.bin']), new RegExp(`put: ${data.length} bytes`));
    assert.match(await runExample('streamcopy.mjs', ['get', '/big.bin', back]), new RegExp(`get: ${data.length} bytes`));
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(readFileSync(back)), sha(data));
    const bad = await start('streamcopy.mjs', ['get', '/missing', back]).done;
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^streamcopy: .*missing/);
  });
});
