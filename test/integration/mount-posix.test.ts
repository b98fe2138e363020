import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { lstat, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { GfsClient } from '../../client/client.js';
import { fuseUnavailable } from '../../client/mount.js';
import { fuseBinding } from '../../client/mount-binding.js';
import { cliPath, type TestCluster } from '../helpers/cluster.js';
import { mountPerSuite, ok, q, sh } from '../helpers/mount.js';
import { waitFor } from '../helpers/wait.js';

// POSIX metadata through a real FUSE mount (issue 20): tar x of a tree with
// modes, an executable, symlinks (relative and absolute) and mtimes (one past
// 2038), compared with the source by diff -r and stat; chmod, chown, touch -d
// seen by stat and gfs stat; ctime moving on chmod; ENAMETOOLONG; all of it
// still there after a master SIGKILL and restart. Skipped only where
// /dev/fuse is missing or fuse-native cannot load.

const MiB = 1024 * 1024;
const unavailable = fuseUnavailable();
/**
 * With fuse-native's own binding (no C compiler where gfs was built) utimens gets atime twice and
 * libfuse drops a utimens of one time, and the caller's uid is unknown: tar's mtimes cannot be kept
 * (the comparison leaves them out) and new entries belong to the mount's user.
 */
const fixedBinding = !unavailable && fuseBinding() === 'patched';

/**
 * `stat -c '%n %f %s %h %Y'` of every entry under dir (type+mode in hex, size, links, mtime in s); a
 * directory's size and link count are its file system's own, left out.
 */
async function statLines(dir: string, withMtime = fixedBinding): Promise<string[]> {
  const out = await ok(`cd ${q(dir)} && find . -mindepth 1 | LC_ALL=C sort | xargs -d '\\n' stat -c '%n %f %s %h %Y %F'`);
  return out
    .trim()
    .split('\n')
    .map((l) => {
      const [n, f, s, h, y, ...kind] = l.split(' ');
      const dir = kind.join(' ') === 'directory';
      return `${n} ${f} ${dir ? '-' : s} ${dir ? '-' : h}${withMtime ? ` ${y}` : ''}`;
    });
}

describe('gfs mount: modes, owners, times, symlinks (FUSE)', { skip: unavailable ? `skipped: ${unavailable}` : false, timeout: 300_000 }, () => {
  const mounted = mountPerSuite({ chunkSizeBytes: MiB, prefix: 'gfs-mount-posix-', allowOther: true });
  let cluster: TestCluster;
  let client: GfsClient;
  let dir: string;
  let src: string;
  let mnt: string;

  const gfs = (args: string[]) => ok(`${q(process.execPath)} ${q(cliPath)} --master ${q(cluster.masterUrl)} ${args.map(q).join(' ')}`);

  before(async () => {
    // --allow-other: a second user (setpriv) reaches the mount too.
    ({ cluster, client, dir, mnt } = mounted());
    src = join(dir, 'src');

    // The source tree: several modes, an executable, a private directory, links of both kinds, mtimes old and past 2038.
    mkdirSync(join(src, 'sub', 'deep'), { recursive: true });
    writeFileSync(join(src, 'plain.txt'), 'plain\n');
    writeFileSync(join(src, 'secret'), 'secret\n');
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\necho ran\n');
    writeFileSync(join(src, 'sub', 'data.bin'), Buffer.alloc(70_000, 7));
    writeFileSync(join(src, 'sub', 'deep', 'group-rw'), 'g\n');
    writeFileSync(join(src, 'future'), 'from 2100\n');
    await ok(
      [
        `cd ${q(src)}`,
        'export TZ=UTC',
        'chmod 0644 plain.txt',
        'chmod 0600 secret',
        'chmod 0755 run.sh',
        'chmod 0664 sub/deep/group-rw',
        'chmod 0700 sub/deep',
        'chmod 0750 sub',
        'ln -s sub/data.bin rel-link',
        'ln -s /nonexistent/absolute/target abs-link',
        'ln -s sub dir-link',
        'ln sub/data.bin hard-data',
        "touch -d '2001-02-03 04:05:06' plain.txt secret sub/data.bin",
        "touch -d '2100-01-01 00:00:01' future",
        "touch -h -d '2010-10-10 10:10:10' rel-link abs-link dir-link",
        "touch -d '2005-05-05 05:05:05' sub/deep sub",
      ].join(' && '),
    );
  });

  test('tar x of a tree keeps contents, modes, types, sizes, hard links and mtimes (diff -r, stat)', async (t) => {
    if (!fixedBinding) t.diagnostic('fuse-native\'s own binding: mtimes set by tar are not compared (npm run build builds the fixed one where cc, Node headers and libfuse2 are)');
    await ok(`tar cf ${q(dir)}/src.tar -C ${q(src)} .`);
    mkdirSync(join(mnt, 'x'));
    await ok(`tar xf ${q(dir)}/src.tar -C ${q(mnt)}/x`);
    await ok(`diff -r --no-dereference ${q(src)} ${q(mnt)}/x`);
    assert.deepEqual(await statLines(join(mnt, 'x')), await statLines(src));
    assert.equal(await ok(`${q(mnt)}/x/run.sh`), 'ran\n', 'the executable runs from the mount');
    assert.equal(await readlink(join(mnt, 'x', 'rel-link')), 'sub/data.bin');
    assert.equal(await readlink(join(mnt, 'x', 'abs-link')), '/nonexistent/absolute/target');
    assert.equal(readFileSync(join(mnt, 'x', 'rel-link')).length, 70_000, 'a relative link is followed by the kernel');
    // The hard link is one file under two names (tar made it with link(2)).
    const [h1, h2] = await Promise.all([client.stat('/x/hard-data'), client.stat('/x/sub/data.bin')]);
    assert.deepEqual([h1.nlink, h1.ino !== undefined && h1.ino === h2.ino], [2, true]);
    // Through the CLI, without the mount.
    const st = JSON.parse(await gfs(['stat', '/x/future'])) as { mode: number; mtimeMs: number };
    assert.equal(st.mode, 0o644);
    if (fixedBinding) assert.equal(new Date(st.mtimeMs).toISOString(), '2100-01-01T00:00:01.000Z');
    const ls = await gfs(['ls', '-l', '/x']);
    assert.match(ls, /^lrwxrwxrwx +- +\S+ +\S+ +12 \S+ rel-link -> sub\/data\.bin$/m);
    assert.match(ls, /^-rwxr-xr-x +\d+ +root +root +19 \S+ run\.sh$/m);
    assert.match(ls, fixedBinding ? /^drwxr-x--- +- +root +root +\d+ 2005-05-05T\S+ sub\/$/m : /^drwxr-x--- +- +root +root +\d+ \S+ sub\/$/m);
  });

  test('cp -a keeps contents, modes, links (hard ones too) and mtimes; rsync -aH twice: the second run transfers nothing', async (t) => {
    await ok(`cp -a ${q(src)} ${q(mnt)}/cpa`);
    await ok(`diff -r --no-dereference ${q(src)} ${q(mnt)}/cpa`);
    assert.deepEqual(await statLines(join(mnt, 'cpa')), await statLines(src));
    if ((await sh('command -v rsync')).code !== 0) {
      t.diagnostic('rsync is not installed here (.ci/run installs it): the rsync half is not run');
      return;
    }
    const stats = (out: string) => Number(/Number of regular files transferred: (\d+)/.exec(out)?.[1] ?? NaN);
    assert.equal(stats(await ok(`rsync -aH --stats ${q(src)}/ ${q(mnt)}/rs/`)), 6, 'the first run copies every regular file (6)');
    await ok(`diff -r --no-dereference ${q(src)} ${q(mnt)}/rs`);
    assert.deepEqual(await statLines(join(mnt, 'rs')), await statLines(src));
    // rsync skips a file whose size and mtime match: only with mtimes kept exactly (the fixed binding) is there nothing to send.
    if (fixedBinding) assert.equal(stats(await ok(`rsync -aH --stats ${q(src)}/ ${q(mnt)}/rs/`)), 0, 'the second run finds every file up to date');
  });

  test('chmod, chown, touch -d: seen by stat through the mount and by gfs stat; ctime moves on chmod', async () => {
    const f = join(mnt, 'attrs.txt');
    await writeFile(f, 'attrs\n');
    const before = await lstat(f);
    assert.equal(before.mode & 0o7777, 0o644 & ~process.umask());
    await waitFor('the clock to move past the file\'s ctime', () => Date.now() > before.ctimeMs + 5, 5_000);
    await ok(`chmod 4751 ${q(f)}`);
    const afterChmod = await lstat(f);
    assert.equal(afterChmod.mode & 0o7777, 0o4751);
    assert.ok(afterChmod.ctimeMs > before.ctimeMs, `ctime moved on chmod (${before.ctimeMs} -> ${afterChmod.ctimeMs})`);
    await ok(`chown 1234:5678 ${q(f)}`);
    const afterChown = await lstat(f);
    assert.deepEqual([afterChown.uid, afterChown.gid], [1234, 5678]);
    assert.equal(afterChown.mode & 0o7777, 0o751, 'chown dropped set-uid');
    await ok(`TZ=UTC touch -d '2099-12-31 23:59:58.5' ${q(f)}`);
    assert.equal(await ok(`stat -c '%Y %a %u %g' ${q(f)}`), `${Date.UTC(2099, 11, 31, 23, 59, 58) / 1000} 751 1234 5678\n`);
    const st = JSON.parse(await gfs(['stat', '/attrs.txt'])) as { mode: number; uid: number; gid: number; mtimeMs: number; atimeMs: number };
    assert.deepEqual([st.mode, st.uid, st.gid, st.mtimeMs, st.atimeMs], [0o751, 1234, 5678, Date.UTC(2099, 11, 31, 23, 59, 58, 500), Date.UTC(2099, 11, 31, 23, 59, 58, 500)]);
    // And the other way round: a chmod through the CLI is seen by the mount (no cache hides it for long).
    await gfs(['chmod', '600', '/attrs.txt']);
    await waitFor('the mount to show the CLI\'s chmod', async () => ((await lstat(f)).mode & 0o7777) === 0o600, 5_000);
    // A write moves mtime to now.
    await writeFile(f, 'again\n', { flag: 'a' });
    assert.ok(Math.abs((await lstat(f)).mtimeMs - Date.now()) < 60_000, 'mtime moved on write');
  });

  test('mkdir and create honour the mode given after the umask; symlink and readlink', async () => {
    await ok(`umask 027 && mkdir ${q(mnt)}/m && touch ${q(mnt)}/m/f && mkdir -m 0711 ${q(mnt)}/m/x`);
    assert.equal((await lstat(join(mnt, 'm'))).mode & 0o7777, 0o750);
    assert.equal((await lstat(join(mnt, 'm', 'f'))).mode & 0o7777, 0o640);
    assert.equal((await lstat(join(mnt, 'm', 'x'))).mode & 0o7777, 0o711);
    await ok(`ln -s ../attrs.txt ${q(mnt)}/m/l`);
    assert.ok((await lstat(join(mnt, 'm', 'l'))).isSymbolicLink());
    assert.equal(await readlink(join(mnt, 'm', 'l')), '../attrs.txt');
    await ok(`${q(process.execPath)} ${q(cliPath)} --master ${q(cluster.masterUrl)} ln -s ${q('/a/target/'.padEnd(300, 'x'))} /m/cli-link`);
    assert.equal(await readlink(join(mnt, 'm', 'cli-link')), '/a/target/'.padEnd(300, 'x'));
  });

  test('new entries belong to the calling process; a set-gid directory passes on its group; git works', async (t) => {
    await ok(`mkdir ${q(mnt)}/pub && chmod 1777 ${q(mnt)}/pub && setpriv --reuid 65534 --regid 65534 --clear-groups touch ${q(mnt)}/pub/nobody`);
    const st = await lstat(join(mnt, 'pub', 'nobody'));
    if (fixedBinding) assert.deepEqual([st.uid, st.gid], [65534, 65534], 'the caller\'s uid and gid (FUSE context)');
    else t.diagnostic(`fuse-native's own binding: the file belongs to the mount's user (${st.uid}:${st.gid})`);
    await ok(`mkdir ${q(mnt)}/sg && chown 0:50 ${q(mnt)}/sg && chmod 2775 ${q(mnt)}/sg && touch ${q(mnt)}/sg/f && mkdir ${q(mnt)}/sg/d`);
    assert.equal(await ok(`stat -c '%g %a' ${q(mnt)}/sg/f ${q(mnt)}/sg/d`), '50 644\n50 2755\n');
    const git = 'git -c user.email=t@example.com -c user.name=t';
    await ok(`cd ${q(mnt)} && git init -q repo && cd repo && echo x > x && chmod +x x && ${git} add x && ${git} commit -qm first && ${git} fsck --strict`);
    assert.match(await ok(`cd ${q(mnt)}/repo && git log --oneline && git ls-files -s`), /first\n100755 /);
  });

  test('with --allow-other the kernel checks another user against the modes: EACCES, sticky directories, chmod of another\'s file', { skip: fixedBinding ? false : 'fuse-native\'s own binding: access is not checked (the caller is unknown)' }, async () => {
    const as = (cmd: string) => sh(`setpriv --reuid 65534 --regid 65534 --clear-groups sh -c ${q(cmd)}`);
    await ok(`mkdir ${q(mnt)}/perm && echo open > ${q(mnt)}/perm/open && echo secret > ${q(mnt)}/perm/secret && chmod 600 ${q(mnt)}/perm/secret && touch ${q(mnt)}/pub/roots`);
    assert.equal((await as(`cat ${q(mnt)}/perm/open`)).stdout, 'open\n', 'a 0644 file is readable by anyone');
    assert.match((await as(`cat ${q(mnt)}/perm/secret`)).stderr, /Permission denied/);
    assert.match((await as(`touch ${q(mnt)}/perm/new`)).stderr, /Permission denied/, 'no write permission on a 0755 root directory');
    assert.match((await as(`rm -f ${q(mnt)}/perm/open`)).stderr, /Permission denied/);
    assert.match((await as(`rm -f ${q(mnt)}/pub/roots`)).stderr, /Operation not permitted/, 'sticky: another user\'s file stays');
    assert.match((await as(`chmod 777 ${q(mnt)}/perm/open`)).stderr, /Operation not permitted/);
    assert.equal((await as(`echo mine > ${q(mnt)}/pub/mine && chmod 600 ${q(mnt)}/pub/mine && cat ${q(mnt)}/pub/mine && rm ${q(mnt)}/pub/mine`)).stdout, 'mine\n', 'in a 1777 directory: create, chmod, read, remove its own');
    await lstat(join(mnt, 'pub', 'roots'));
  });

  test('truncate to a smaller non-zero size, then read back; ctime moves on chmod, chown, write, truncate and unlink (of the directory)', async () => {
    const f = join(mnt, 'cut.bin');
    const data = Buffer.alloc(3 * MiB + 4321);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    await writeFile(f, data);
    const ctimeAfter = async (cmd: string): Promise<void> => {
      const before = (await lstat(f)).ctimeMs;
      await waitFor('the clock to move past the ctime', () => Date.now() > before + 5, 5_000);
      await ok(cmd);
      await waitFor(`ctime to move on ${cmd}`, async () => (await lstat(f)).ctimeMs > before, 5_000);
    };
    await ctimeAfter(`truncate -s ${MiB + 100} ${q(f)}`);
    assert.equal((await lstat(f)).size, MiB + 100);
    assert.ok(readFileSync(f).equals(data.subarray(0, MiB + 100)), 'the bytes kept read back');
    await ctimeAfter(`truncate -s 3000 ${q(f)}`);
    await ctimeAfter(`truncate -s 5000 ${q(f)}`);
    const back = readFileSync(f);
    assert.ok(back.subarray(0, 3000).equals(data.subarray(0, 3000)) && back.subarray(3000).every((b) => b === 0), 'the tail after a cut and an extension is zeros, never the old bytes');
    await ctimeAfter(`chmod 600 ${q(f)}`);
    await ctimeAfter(`chown 12:34 ${q(f)}`);
    await ctimeAfter(`echo more >> ${q(f)}`);
    // unlink moves the directory's ctime (and mtime).
    const dirBefore = (await lstat(mnt)).ctimeMs;
    await waitFor('the clock to move past the directory\'s ctime', () => Date.now() > dirBefore + 5, 5_000);
    await ok(`rm ${q(f)}`);
    await waitFor('the directory\'s ctime to move on unlink', async () => (await lstat(mnt)).ctimeMs > dirBefore, 5_000);
  });

  test('special files: mkfifo, mknod devices and a bound socket keep their types, modes and numbers; the kernel does their I/O', async () => {
    const d = join(mnt, 'special');
    await ok(`mkdir ${q(d)} && mkfifo -m 0620 ${q(d)}/pipe && mknod -m 0666 ${q(d)}/null c 1 3 && mknod ${q(d)}/loop b 7 1`);
    const kinds = `stat -c '%n|%F|%a|%t:%T' ${q(d)}/pipe ${q(d)}/null ${q(d)}/loop`;
    const want = [`${d}/pipe|fifo|620|0:0`, `${d}/null|character special file|666|1:3`, `${d}/loop|block special file|644|7:1`].join('\n') + '\n';
    assert.equal(await ok(kinds), want);
    // The FIFO carries bytes between two processes (the kernel's pipe; gfs keeps only the name).
    assert.equal(await ok(`(echo through-the-fifo > ${q(d)}/pipe &) && cat ${q(d)}/pipe`), 'through-the-fifo\n');
    // A unix socket bound to a path in the mount, and a client that connects to it by that path.
    const sock = join(d, 'sock');
    const echo = `const net=require('net'),fs=require('fs');const s=net.createServer(c=>c.pipe(c)).listen(${JSON.stringify(sock)},()=>{const kind=fs.lstatSync(${JSON.stringify(sock)}).isSocket();const c=net.connect(${JSON.stringify(sock)},()=>c.end('ping'));let got='';c.on('data',b=>got+=b);c.on('close',()=>{console.log(got,kind);s.close()})})`;
    assert.equal(await ok(`${q(process.execPath)} -e ${q(echo)}`), 'ping true\n', 'echoed through the socket, which stat shows as a socket');
    // Node removes its socket file on close; python's stays, as a bound socket's name does.
    await ok(`python3 -c ${q(`import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)})`)}`);
    assert.equal(await ok(`stat -c '%F' ${q(sock)}`), 'socket\n');
    // gfs ls -l shows them as ls does: type letter, and major, minor for devices.
    const ls = await gfs(['ls', '-l', '/special']);
    assert.match(ls, /^prw--w---- .* 0 .*pipe$/m);
    assert.match(ls, /^crw-rw-rw- .* 1, 3 .*null$/m);
    assert.match(ls, /^brw-r--r-- .* 7, 1 .*loop$/m);
    assert.match(ls, /^s.* sock$/m);
    // tar keeps them; the copies have the same types, modes and numbers.
    await ok(`tar cf ${q(dir)}/special.tar -C ${q(d)} pipe null loop && mkdir ${q(mnt)}/special-copy && tar xf ${q(dir)}/special.tar -C ${q(mnt)}/special-copy`);
    assert.equal(await ok(kinds.replaceAll(d, join(mnt, 'special-copy'))), want.replaceAll(d, join(mnt, 'special-copy')));
    // Removed like any name.
    await ok(`rm ${q(d)}/loop ${q(sock)}`);
    assert.equal((await sh(`stat ${q(d)}/loop`)).code, 1);
  });

  test('hard links: nlink, a write through one name read through the other, unlink of one keeps the data, rename between names of one file, gfs ln, snapshots', async () => {
    const d = join(mnt, 'hard');
    const links = (...names: string[]) => ok(`stat -c '%h' ${names.map((n) => q(join(d, n))).join(' ')}`);
    // The kernel keeps a name's attributes for the attribute timeout (1 s): a count changed through another name shows after it.
    const linksSoon = (want: string, ...names: string[]) => waitFor(`${names.join(', ')} to show ${want.trim()} names`, async () => (await links(...names)) === want, 5_000);
    await ok(`mkdir ${q(d)} && printf one > ${q(d)}/a && ln ${q(d)}/a ${q(d)}/b`);
    assert.equal(await links('b'), '2\n');
    await linksSoon('2\n2\n', 'a', 'b');
    await ok(`printf two >> ${q(d)}/b`);
    assert.equal(readFileSync(join(d, 'a'), 'utf8'), 'onetwo', 'written through b, read through a');
    // rename(2) from one name of a file to another of the same file does nothing: both stay.
    await ok(`python3 -c ${q(`import os; os.rename(${JSON.stringify(join(d, 'a'))}, ${JSON.stringify(join(d, 'b'))})`)}`);
    await linksSoon('2\n2\n', 'a', 'b');
    // A link to a directory is refused (EPERM), and so is a name that exists (EEXIST).
    const dirLink = await sh(`python3 -c ${q(`import os; os.link(${JSON.stringify(d)}, ${JSON.stringify(join(mnt, 'hard-dir'))})`)}`);
    assert.match(dirLink.stderr, /Operation not permitted/);
    assert.match((await sh(`ln ${q(d)}/a ${q(d)}/b`)).stderr, /File exists/);
    // Without the mount: gfs ln makes a third name; gfs stat shows the count and the shared ino.
    await gfs(['ln', '/hard/a', '/hard/c']);
    const [a, c] = await Promise.all([client.stat('/hard/a'), client.stat('/hard/c')]);
    assert.deepEqual([c.nlink, c.ino, c.sizeBytes], [3, a.ino, 6]);
    const bad = await sh(`${q(process.execPath)} ${q(cliPath)} --master ${q(cluster.masterUrl)} ln /hard /hard2`);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /directory cannot have a hard link/);
    // A snapshot keeps the names of one file as one file, apart from the original.
    await client.snapshot('/hard', '/hard-snap');
    const [sa, sb] = await Promise.all([client.stat('/hard-snap/a'), client.stat('/hard-snap/b')]);
    assert.deepEqual([sa.nlink, sa.ino === sb.ino, sa.ino !== a.ino], [3, true, true]);
    // Unlink of two names: the data stays under the third, whose count drops.
    await ok(`rm ${q(d)}/a ${q(d)}/c`);
    await linksSoon('1\n', 'b');
    assert.equal(readFileSync(join(d, 'b'), 'utf8'), 'onetwo');
    assert.equal(readFileSync(join(mnt, 'hard-snap', 'a'), 'utf8'), 'onetwo', 'the snapshot is its own');
  });

  test('a name over 255 bytes is ENAMETOOLONG; 255 bytes works', async () => {
    const r = await sh(`touch ${q(join(mnt, 'n'.repeat(256)))}`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /File name too long/);
    await assert.rejects(writeFile(join(mnt, 'é'.repeat(128)), 'x'), (e: NodeJS.ErrnoException) => e.code === 'ENAMETOOLONG');
    await ok(`touch ${q(join(mnt, 'n'.repeat(255)))}`);
    assert.equal((await client.stat('/' + 'n'.repeat(255))).type, 'file');
  });

  test('everything is still there after a master SIGKILL and restart', async () => {
    const beforeTree = await statLines(join(mnt, 'x'));
    const attrsCmd = `stat -c '%f %u %g %Y %t:%T' ${q(mnt)}/attrs.txt ${q(mnt)}/m/f ${q(mnt)}/m/l ${q(mnt)}/special/pipe ${q(mnt)}/special/null`;
    const beforeAttrs = await ok(attrsCmd);
    await cluster.restartMaster();
    await waitFor('the master to leave safe mode', async () => !(await cluster.status()).safeMode, 30_000);
    await waitFor('the mount to show the tree again', async () => JSON.stringify(await statLines(join(mnt, 'x')).catch(() => [])) === JSON.stringify(beforeTree), 30_000);
    assert.deepEqual(await statLines(join(mnt, 'x')), await statLines(src));
    assert.equal(await ok(attrsCmd), beforeAttrs);
    assert.equal(await readlink(join(mnt, 'x', 'rel-link')), 'sub/data.bin');
    await ok(`diff -r --no-dereference ${q(src)} ${q(mnt)}/x`);
  });
});
