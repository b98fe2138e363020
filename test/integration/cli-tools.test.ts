import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect, type Gfs } from 'gfs';
import { humanSize } from '../../client/cli-tools.js';
import { closeRpc } from '../../shared/rpc.js';
import { cliPath, startCluster, waitFor, type TestCluster } from '../helpers/cluster.js';

// du, df, cp, tail (-f too) and completion against a real cluster, run as the
// gfs binary; -h sizes as coreutils prints them.

let c: TestCluster | undefined;
let gfs: Gfs;

describe('gfs du, df, cp, tail, truncate, completion', { timeout: 180_000 }, () => {
  before(async () => {
    c = await startCluster({ chunkservers: 3, chunkSizeBytes: 256 * 1024 });
    gfs = connect({ master: c.masterUrl });
    await gfs.mkdir('/t/d', { recursive: true });
    await gfs.writeFile('/t/a', Buffer.alloc(1500, 1));
    await gfs.writeFile('/t/d/b', Buffer.alloc(300_000, 2));
    await gfs.writeFile('/t/d/c', Buffer.alloc(5, 3));
  });
  after(async () => {
    await c?.stop();
    await closeRpc();
  });

  it('-h sizes like coreutils', () => {
    assert.deepEqual([0, 1023, 1024, 1536, 10 * 1024, 10 * 1024 + 1, 1024 * 1024 - 1, 5 * 1024 ** 3].map(humanSize), ['0', '1023', '1.0K', '1.5K', '10K', '11K', '1.0M', '5.0G']);
  });

  it('du per entry, -s totals, -h, --replicated; errors on a missing path', async () => {
    const du = await c!.cli(['du', '/t']);
    assert.equal(du.code, 0, du.stderr);
    assert.equal(du.stdout.toString(), '1500\t/t/a\n300005\t/t/d\n');
    const s = await c!.cli(['du', '-s', '-h', '/t', '/t/a']);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(s.stdout.toString(), '295K\t/t\n1.5K\t/t/a\n');
    const r = await c!.cli(['du', '-s', '--replicated', '/t/d']);
    assert.equal(r.stdout.toString(), `${300_005 * 3}\t/t/d\n`);
    const bad = await c!.cli(['du', '/nope']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^gfs: .*\/nope/);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
  });

  it('df sums the live chunkservers', async () => {
    const df = await c!.cli(['df']);
    assert.equal(df.code, 0, df.stderr);
    const [head, row] = df.stdout.toString().trim().split('\n');
    assert.match(head!, /^Filesystem\s+Bytes\s+Used\s+Avail\s+Use%\s+Servers$/);
    const cols = row!.trim().split(/\s+/);
    assert.equal(cols[0], c!.masterUrl);
    const [size, used, avail] = cols.slice(1, 4).map(Number);
    assert.ok(size! > 0 && avail! > 0 && avail! <= size! && used! >= 0, row);
    assert.equal(cols[5], '3/3');
    const h = await c!.cli(['df', '-h']);
    assert.match(h.stdout.toString().split('\n')[1]!, /\d(\.\d)?[KMGTP]\s/);
  });

  it('cp copies bytes into an independent file, refuses an existing target without -f', async () => {
    const data = randomBytes(600_000);
    await gfs.writeFile('/t/src', data);
    const cp = await c!.cli(['cp', '/t/src', '/t/copy']);
    assert.equal(cp.code, 0, cp.stderr);
    assert.ok((await gfs.readFile('/t/copy')).equals(data));
    await gfs.writeFile('/t/src', 'changed');
    assert.ok((await gfs.readFile('/t/copy')).equals(data), 'the copy does not follow its source');
    const again = await c!.cli(['cp', '/t/src', '/t/copy']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists/);
    assert.equal((await c!.cli(['cp', '-f', '/t/src', '/t/copy'])).code, 0);
    assert.equal(await gfs.readFile('/t/copy', 'utf8'), 'changed');
    const dir = await c!.cli(['cp', '/t/d', '/t/e']);
    assert.equal(dir.code, 1);
    assert.match(dir.stderr, /directory/);
    assert.deepEqual((await gfs.readdir('/t')).filter((n) => n.includes('gfs-cp')), [], 'no temporary file left');
  });

  it('tail -n, -c, and -f following appends', async () => {
    const lines = Array.from({ length: 30 }, (_, i) => `line ${i}`);
    await gfs.writeFile('/t/log', lines.join('\n') + '\n');
    const t = await c!.cli(['tail', '/t/log']);
    assert.equal(t.stdout.toString(), lines.slice(-10).join('\n') + '\n');
    assert.equal((await c!.cli(['tail', '-n', '3', '/t/log'])).stdout.toString(), lines.slice(-3).join('\n') + '\n');
    assert.equal((await c!.cli(['tail', '-c', '8', '/t/log'])).stdout.toString(), 'line 29\n'.slice(-8));
    assert.equal((await c!.cli(['tail', '-n', '0', '/t/log'])).stdout.toString(), '');
    assert.equal((await c!.cli(['tail', '-n', 'x', '/t/log'])).code, 1);

    const p = spawn(process.execPath, [cliPath, '--master', c!.masterUrl, 'tail', '-f', '-n', '1', '--interval-ms', '100', '/t/log'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    try {
      await waitFor('the last line', () => out === 'line 29\n', 30_000);
      const h = await gfs.open('/t/log', 'a');
      await h.write('more 1\nmore 2\n');
      await h.close();
      await waitFor('the appended lines', () => out === 'line 29\nmore 1\nmore 2\n', 30_000);
    } finally {
      p.kill('SIGTERM');
    }
    assert.equal(await exited, 0, 'tail -f ends cleanly on SIGTERM');
  });

  it('truncate -s shortens and extends; a bad size is one line on stderr and changes nothing', async () => {
    await gfs.writeFile('/t/cut', Buffer.alloc(300_000, 9));
    const r = await c!.cli(['truncate', '-s', '100k', '/t/cut']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await gfs.stat('/t/cut')).size, 100 * 1024);
    assert.equal((await c!.cli(['truncate', '--size', '200000', '/t/cut'])).code, 0);
    const back = await gfs.readFile('/t/cut');
    assert.equal(back.length, 200_000);
    assert.ok(back.subarray(0, 100 * 1024).every((b) => b === 9) && back.subarray(100 * 1024).every((b) => b === 0));
    // A malformed size is a usage error (the error, then commander's usage hint); a refused call is one line.
    const usage = await c!.cli(['truncate', '-s', 'ten', '/t/cut']);
    assert.equal(usage.code, 1, usage.stderr);
    assert.match(usage.stderr.split('\n')[0]!, /--size must be a size/);
    for (const bad of [['truncate', '-s', '10', '/t/missing'], ['truncate', '-s', '10', '/t/d']]) {
      const x = await c!.cli(bad);
      assert.equal(x.code, 1, `${bad.join(' ')}: ${x.stderr}`);
      assert.equal(x.stderr.trim().split('\n').length, 1, x.stderr);
    }
    assert.equal((await gfs.stat('/t/cut')).size, 200_000);
  });

  it('append creates a missing file as >> does; --no-create refuses; --help lists the exit statuses', async () => {
    const a = await c!.cli(['append', '/t/new-log', '--lines'], 'one\ntwo\n');
    assert.equal(a.code, 0, a.stderr);
    const recs = await c!.cli(['records', '/t/new-log']);
    assert.equal(recs.stdout.toString(), 'one\ntwo\n');
    const refused = await c!.cli(['append', '/t/other-log', '--no-create'], 'x\n');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /other-log/);
    assert.equal(refused.stderr.trim().split('\n').length, 1);
    await assert.rejects(gfs.stat('/t/other-log'));
    assert.equal((await c!.cli(['append', '/t/new-log', '--create'], 'three')).code, 0, 'the old flag still works');
    const help = await c!.cli(['--help']);
    assert.match(help.stdout.toString(), /Exit statuses:[\s\S]*\b3\b.*fewer replicas/);
  });

  it('records -f prints what is there, then each record appended later, once', async () => {
    await gfs.appendRecord('/t/events', 'first');
    const p = spawn(process.execPath, [cliPath, '--master', c!.masterUrl, 'records', '-f', '--interval-ms', '100', '/t/events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    try {
      await waitFor('the first record', () => out === 'first\n', 30_000);
      const app = gfs.appender('/t/events');
      await Promise.all(['a', 'b', 'c'].map((x) => app.append(x)));
      await waitFor('the appended records', () => out.split('\n').filter(Boolean).length === 4, 30_000);
      assert.deepEqual(out.split('\n').filter(Boolean).slice(1).sort(), ['a', 'b', 'c']);
    } finally {
      p.kill('SIGTERM');
    }
    assert.equal(await exited, 0, 'records -f ends cleanly on SIGTERM');
  });

  it('completion bash is a valid script naming every command', async () => {
    const r = await c!.cli(['completion', 'bash']);
    assert.equal(r.code, 0);
    const script = r.stdout.toString();
    const check = spawnSync('bash', ['-n'], { input: script });
    assert.equal(check.status, 0, `bash -n: ${check.stderr}`);
    for (const cmd of ['put', 'get', 'du', 'df', 'cp', 'tail', 'mount']) assert.ok(script.includes(` ${cmd} `) || script.includes(`${cmd})`), cmd);
    const bad = await c!.cli(['completion', 'fish']);
    assert.equal(bad.code, 1);
  });
});
