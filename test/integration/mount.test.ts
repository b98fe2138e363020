import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { link, readFile, readdir, rmdir, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { GfsClient } from '../../client/client.js';
import { fuseUnavailable } from '../../client/mount.js';
import type { TestCluster } from '../helpers/cluster.js';
import { mountPerSuite, ok, q, sh } from '../helpers/mount.js';
import { waitFor } from '../helpers/wait.js';
import { scrape } from '../helpers/metrics.js';

// A real FUSE mount (`gfs mount / MNT`, a child process) over a real
// cluster with 1 MiB chunks, used by ordinary programs: ls, cat, cp, dd,
// mkdir -p, mv, rm, `echo >>` from 8 processes at once, tail -F. Skipped
// only where /dev/fuse is missing or fuse-native cannot load.

const MiB = 1024 * 1024;
const chunkSizeBytes = MiB;
const unavailable = fuseUnavailable();

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function errnoOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code;
  }
}

describe('gfs mount (FUSE)', { skip: unavailable ? `skipped: ${unavailable}` : false, timeout: 150_000 }, () => {
  const mounted = mountPerSuite({ chunkSizeBytes, prefix: 'gfs-mount-' });
  let cluster: TestCluster;
  let client: GfsClient;
  let dir: string;
  let mnt: string;
  before(() => ({ cluster, client, dir, mnt } = mounted()));

  test('ls and cat show files written with the client library', async () => {
    await client.mkdir('/lib');
    const data = Buffer.from('hello from the client library\n'.repeat(100));
    await client.create('/lib/hello.txt');
    await client.write('/lib/hello.txt', 0, data);
    const ls = await ok(`ls -la ${q(mnt)}/lib`);
    assert.match(ls, new RegExp(`-rw-r--r-- .* ${data.length} .* hello\\.txt`));
    assert.deepEqual(await readdir(mnt), ['lib']);
    assert.equal(sha(Buffer.from(await ok(`cat ${q(mnt)}/lib/hello.txt`))), sha(data));
    assert.equal(await errnoOf(readFile(join(mnt, 'lib', 'nope'))), 'ENOENT');
  });

  test('cp in and out keeps the bytes (sha256)', async () => {
    const local = join(dir, 'in.bin');
    const data = randomBytes(3 * MiB + 12345);
    writeFileSync(local, data);
    await ok(`cp ${q(local)} ${q(mnt)}/cp.bin`);
    const st = await client.stat('/cp.bin');
    assert.equal(st.sizeBytes, data.length);
    assert.equal(sha(await client.read('/cp.bin', 0, data.length)), sha(data), 'read with the client library');
    await ok(`cp ${q(mnt)}/cp.bin ${q(dir)}/out.bin`);
    assert.equal(sha(readFileSync(join(dir, 'out.bin'))), sha(data), 'copied out through the mount');
  });

  test('dd of a multi-chunk file with conv=fsync', async () => {
    await ok(`dd if=/dev/urandom of=${q(mnt)}/dd.bin bs=1M count=5 conv=fsync status=none`);
    const st = await client.stat('/dd.bin');
    assert.equal(st.sizeBytes, 5 * MiB);
    assert.equal(st.chunkCount, 5);
    const viaClient = await client.read('/dd.bin', 0, 5 * MiB);
    const viaMount = (await ok(`dd if=${q(mnt)}/dd.bin bs=1M status=none | sha256sum`)).split(' ')[0];
    assert.equal(viaMount, sha(viaClient));
    // Durable and fully replicated once fsync returned.
    const r = await client.fsck('/dd.bin');
    assert.equal(r.summary.underReplicated + r.summary.missing + r.summary.corrupt, 0, JSON.stringify(r.summary));
  });

  test('mkdir -p, mv, rm, rmdir', async () => {
    await ok(`mkdir -p ${q(mnt)}/a/b/c`);
    assert.equal((await client.stat('/a/b/c')).type, 'dir');
    await ok(`echo moved > ${q(mnt)}/a/b/c/f && mv ${q(mnt)}/a/b ${q(mnt)}/a/b2 && mv ${q(mnt)}/a/b2/c/f ${q(mnt)}/a/g`);
    assert.equal((await client.stat('/a/b2/c')).type, 'dir');
    assert.equal((await client.read('/a/g', 0, 100)).toString(), 'moved\n');
    await assert.rejects(client.stat('/a/b'), /no such file/);
    // mv onto an existing file replaces it.
    await ok(`echo new > ${q(mnt)}/a/h && mv ${q(mnt)}/a/h ${q(mnt)}/a/g`);
    assert.equal(await ok(`cat ${q(mnt)}/a/g`), 'new\n');
    assert.equal(await errnoOf(rmdir(join(mnt, 'a'))), 'ENOTEMPTY');
    await ok(`rm ${q(mnt)}/a/g && rmdir ${q(mnt)}/a/b2/c ${q(mnt)}/a/b2 ${q(mnt)}/a`);
    await assert.rejects(client.stat('/a'), /no such file/);
    assert.ok(!(await readdir(mnt)).includes('a'));
  });

  test('refused operations fail with an errno, never silently; truncate to any length', async () => {
    await ok(`echo data > ${q(mnt)}/u.txt`);
    assert.equal(await errnoOf(link(join(mnt, 'u.txt'), join(mnt, 'u.txt'))), 'EEXIST', 'a hard link over an existing name');
    assert.equal(await errnoOf(truncate(join(mnt, 'u.txt'), 2 ** 51)), 'EFBIG', 'a length past 1 PiB');
    // Extension, shrinking and truncation to zero.
    await truncate(join(mnt, 'u.txt'), 10);
    assert.deepEqual(await client.read('/u.txt', 0, 100), Buffer.from('data\n\0\0\0\0\0'));
    await truncate(join(mnt, 'u.txt'), 2);
    assert.equal(await ok(`cat ${q(mnt)}/u.txt`), 'da');
    await ok(`: > ${q(mnt)}/u.txt`);
    assert.equal((await client.stat('/u.txt')).sizeBytes, 0);
  });

  test('echo >> from 8 processes at once: whole lines, never torn', async () => {
    await client.create('/log');
    const procs = 8;
    const lines = 20;
    const pad = 'x'.repeat(150);
    const scripts = Array.from({ length: procs }, (_, p) => `for i in $(seq 1 ${lines}); do echo "p${p} l$i ${pad}" >> ${q(mnt)}/log; done`);
    const results = await Promise.all(scripts.map((s) => sh(s, 60_000)));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const viaMount = await ok(`cat ${q(mnt)}/log`);
    const st = await client.stat('/log');
    const viaClient = (await client.read('/log', 0, st.sizeBytes)).toString();
    assert.equal(viaMount, viaClient);
    const seen = new Map<string, number>();
    for (const line of viaClient.split('\n').slice(0, -1)) {
      assert.match(line, new RegExp(`^p[0-7] l[0-9]+ ${pad}$`), `torn or interleaved line: ${JSON.stringify(line.slice(0, 80))}`);
      seen.set(line, (seen.get(line) ?? 0) + 1);
    }
    assert.ok(viaClient.endsWith('\n'));
    for (let p = 0; p < procs; p++) for (let i = 1; i <= lines; i++) assert.ok(seen.has(`p${p} l${i} ${pad}`), `p${p} l${i} missing`);
  });

  test('tail -F sees appends made with the client library within seconds', async () => {
    await client.create('/tailed');
    await client.appendRaw('/tailed', Buffer.from('first\n'));
    const tail = spawn('tail', ['-F', '-n', '+1', join(mnt, 'tailed')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    tail.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('tail to print the first line', () => out.includes('first\n'), 10_000);
      const delays: number[] = [];
      for (let i = 0; i < 3; i++) {
        const line = `appended ${i} ${Date.now()}\n`;
        const t0 = Date.now();
        await client.appendRaw('/tailed', Buffer.from(line));
        await waitFor(`tail to show ${line.trim()}`, () => out.includes(line), 6_000, 20);
        delays.push(Date.now() - t0);
      }
      process.stderr.write(`tail -F latency after appendRaw: ${delays.join(', ')} ms\n`);
      assert.ok(out.startsWith('first\nappended 0 '), out);
    } finally {
      tail.kill('SIGKILL');
    }
  });

  test('ls -l of a big directory is one listing, not a stat per entry; this mount\'s own writes show at once', async () => {
    const n = 300;
    await client.batch([{ op: 'mkdir', path: '/big' }, ...Array.from({ length: n }, (_, i) => ({ op: 'create' as const, path: `/big/f${String(i).padStart(3, '0')}` }))]);
    // One file with data, written elsewhere: its size reaches listings with the next heartbeats.
    await client.write('/big/f007', 0, Buffer.alloc(12_345, 7));
    await client.sync('/big/f007');
    await waitFor('the listing to show f007\'s size', async () => (await client.list('/big')).find((e) => e.name === 'f007')?.sizeBytes === 12_345, 20_000, 100);
    const stats = async () => (await scrape(cluster.masterUrl)).sum('gfs_requests_total', { op: '/api/stat' });
    const before = await stats();
    const out = await ok(`ls -l ${q(join(mnt, 'big'))}`);
    const lines = out.trim().split('\n').filter((l) => !l.startsWith('total'));
    assert.equal(lines.length, n);
    assert.ok(lines.some((l) => / 12345 .* f007$/.test(l)), lines.find((l) => l.endsWith('f007')));
    const used = (await stats()) - before;
    assert.ok(used < 10, `ls -l of ${n} entries made ${used} stat calls`);
    // Written through this mount, then listed at once: the size is this write's, not the listing's older one.
    writeFileSync(join(mnt, 'big', 'f001'), 'x'.repeat(777));
    await ok(`ls -l ${q(join(mnt, 'big'))} > /dev/null`);
    assert.match(await ok(`ls -l ${q(join(mnt, 'big', 'f001'))}`), / 777 /);
  });

  test('gfs umount leaves nothing behind', async () => {
    const r = await cluster.cli(['umount', mnt]);
    assert.equal(r.code, 0, r.stderr);
    const code = await Promise.race([mounted().exited, new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), 15_000))]);
    assert.equal(code, 0, `mount process: ${code}; log: ${mounted().log()}`);
    assert.ok(!readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt), 'still in /proc/mounts');
    rmdirSync(mnt); // an empty directory again
    assert.ok(!mounted().log().includes('gfs mount:'), `the mount reported errors: ${mounted().log()}`);
  });
});
