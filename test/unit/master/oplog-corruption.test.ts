import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpLog, logFileName, truncateToolPath } from '../../../master/oplog.js';
import { isGfsError } from '../../../shared/errors.js';

// Replay never wedges and never drops acknowledged records silently: a bad record in the middle of
// the newest log (good records behind it) stops start-up with an error naming the file, the byte
// offset and the command that cuts the log there; a torn tail (nothing good behind the bad bytes)
// is still cut off at start-up. The tool cuts only at a record boundary and keeps the cut bytes.

interface Rec {
  id: number;
  data: string;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gfs-oplog-corrupt-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const open = (dir: string) => OpLog.open({ dir, checkpointLogBytes: 1 << 30, apply: () => undefined });

/** Writes records 0..n-1; returns the byte offset where each one starts, and the file size. */
async function logOf(dir: string, n: number): Promise<{ starts: number[]; size: number; path: string }> {
  const { oplog } = await open(dir);
  const starts: number[] = [];
  for (let id = 0; id < n; id++) {
    starts.push(oplog.stats.logBytes);
    await oplog.append({ id, data: 'abcdefgh'.repeat(4) });
  }
  const size = oplog.stats.logBytes;
  await oplog.close();
  return { starts, size, path: join(dir, logFileName(1)) };
}

async function damage(path: string, fn: (buf: Buffer) => void): Promise<void> {
  const buf = await readFile(path);
  fn(buf);
  await writeFile(path, buf);
}

function runTool(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [truncateToolPath, ...args], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function recoveredIds(dir: string): Promise<number[]> {
  const { oplog, recovery } = await open(dir);
  await oplog.close();
  return recovery.records.map((r) => (r as Rec).id);
}

for (const [what, hit] of [
  ['a flipped payload byte (crc mismatch)', (buf: Buffer, at: number) => void (buf[at + 12] ^= 0x01)],
  ['a damaged length field', (buf: Buffer, at: number) => buf.writeUInt32LE(0xfffffff0, at)],
  ['a zeroed frame header', (buf: Buffer, at: number) => buf.fill(0, at, at + 8)],
] as const) {
  test(`corruption in the middle of the newest log (${what}) refuses to start and names offset and tool`, async () => {
    await withDir(async (dir) => {
      const { starts, size, path } = await logOf(dir, 10);
      const bad = starts[4]!;
      await damage(path, (buf) => hit(buf, bad));
      const before = await readFile(path);
      await assert.rejects(open(dir), (e: unknown) => {
        assert.ok(isGfsError(e, 'CORRUPT'), String(e));
        const msg = (e as Error).message;
        assert.ok(msg.includes(path), msg);
        assert.match(msg, new RegExp(`corrupt at byte offset ${bad} `));
        assert.ok(msg.includes(`node ${truncateToolPath} --dir ${dir} --at ${bad}`), msg);
        return true;
      });
      assert.deepEqual(await readFile(path), before, 'the refused start changed nothing');
      assert.equal((await stat(path)).size, size);
    });
  });
}

test('a torn tail (nothing good after the bad bytes) is still dropped at start-up', async () => {
  await withDir(async (dir) => {
    const { starts, path } = await logOf(dir, 6);
    // The last record half-written, then the zeroes a crash can leave in the extended file.
    await damage(path, (buf) => buf.fill(0, starts[5]! + 10));
    const { oplog, recovery } = await open(dir);
    assert.deepEqual(recovery.records.map((r) => (r as Rec).id), [0, 1, 2, 3, 4]);
    assert.ok(recovery.droppedTailBytes > 0);
    assert.equal((await stat(path)).size, starts[5]);
    await oplog.close();
  });
});

test('the tool cuts at the offset the error names, keeps the cut bytes, and the master starts', async () => {
  await withDir(async (dir) => {
    const { starts, path } = await logOf(dir, 10);
    const bad = starts[4]!;
    await damage(path, (buf) => void (buf[bad + 12] ^= 0x01));
    const damaged = await readFile(path);
    let command = '';
    await assert.rejects(open(dir), (e: unknown) => {
      command = /run: node (\S+ --dir \S+ --at \d+)/.exec((e as Error).message)![1]!;
      return true;
    });
    const r = await runTool(command.split(' ').slice(1));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`cut ${damaged.length - bad} bytes \\(including acknowledged records\\)`));
    const backupName = (await readdir(dir)).find((n) => n.startsWith(`${logFileName(1)}.cut-at-${bad}.`));
    assert.ok(backupName, 'a backup of the cut bytes is next to the log');
    assert.deepEqual(await readFile(join(dir, backupName)), damaged.subarray(bad));
    assert.deepEqual(await readFile(path), damaged.subarray(0, bad));
    // Starts now, with the records before the damage, and appends follow them.
    const { oplog, recovery } = await open(dir);
    assert.deepEqual(recovery.records.map((x) => (x as Rec).id), [0, 1, 2, 3]);
    assert.equal(recovery.droppedTailBytes, 0);
    await oplog.append({ id: 100, data: '' });
    await oplog.close();
    assert.deepEqual(await recoveredIds(dir), [0, 1, 2, 3, 100]);
  });
});

test('the tool refuses bad arguments with one line and changes nothing', async () => {
  await withDir(async (dir) => {
    const { starts, size, path } = await logOf(dir, 5);
    const before = await readFile(path);
    const cases: [string[], RegExp][] = [
      [['--at', '0'], /usage: oplog-truncate --dir/],
      [['--dir', dir, '--at=-3'], /--at must be a byte offset/],
      [['--dir', dir, '--at', '-3'], /ambiguous/],
      [['--dir', dir, '--at', String(starts[2]! + 3)], /is not the start of a readable record/],
      [['--dir', dir, '--at', String(size)], /nothing to cut/],
      [['--dir', join(dir, 'nope'), '--at', '0'], /cannot list --dir/],
      [['--dir', dir, '--at', '0', '--bogus'], /Unknown option/],
    ];
    // Run side by side: each is a process start, seconds apiece on a loaded machine.
    const results = await Promise.all(cases.map(([args]) => runTool(args)));
    for (const [i, [args, want]] of cases.entries()) {
      const r = results[i]!;
      assert.equal(r.code, 1, `${args.join(' ')}: exit ${r.code}`);
      assert.match(r.stderr, want);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    }
    assert.deepEqual(await readFile(path), before);
    assert.deepEqual(await readdir(dir), [logFileName(1)]);
  });
});
