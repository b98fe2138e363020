import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic, writeFileAtomicSync } from '../../../shared/atomic-file.js';

// writeFileAtomic / writeFileAtomicSync: the target holds exactly the new
// content afterwards, no temp file is left behind (also when the write
// fails), and concurrent writers of one file never tear it.

let root: string;
let seq = 0;

before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'gfs-atomic-file-'));
});
after(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const d = path.join(root, `d${seq++}`);
  await fsp.mkdir(d);
  return d;
}

describe('writeFileAtomic', () => {
  it('creates and replaces a file, leaving no temp file', async () => {
    const dir = await freshDir();
    const file = path.join(dir, 'state');
    await writeFileAtomic(file, 'first\n');
    assert.equal(readFileSync(file, 'utf8'), 'first\n');
    await writeFileAtomic(file, Buffer.from([1, 2, 3]));
    assert.deepEqual([...readFileSync(file)], [1, 2, 3]);
    assert.deepEqual(readdirSync(dir), ['state']);
  });

  it('uses the directory fsync it is given', async () => {
    const dir = await freshDir();
    const synced: string[] = [];
    await writeFileAtomic(path.join(dir, 'x'), 'x', { syncDir: async (d) => void synced.push(d) });
    assert.deepEqual(synced, [dir]);
  });

  it('concurrent writers of one file leave one whole content and no temp files', async () => {
    const dir = await freshDir();
    const file = path.join(dir, 'state');
    const contents = Array.from({ length: 20 }, (_, i) => String(i).repeat(1000 + i));
    await Promise.all(contents.map((c) => writeFileAtomic(file, c)));
    assert.ok(contents.includes(readFileSync(file, 'utf8')), 'the file holds a mix of writes');
    assert.deepEqual(readdirSync(dir), ['state']);
  });

  it('fails cleanly when the target cannot be replaced, leaving the old content and no temp file', async () => {
    const dir = await freshDir();
    const target = path.join(dir, 'sub');
    await fsp.mkdir(target);
    writeFileSync(path.join(target, 'inside'), 'x');
    // A non-empty directory cannot be replaced by a rename.
    await assert.rejects(writeFileAtomic(target, 'data'));
    assert.deepEqual(readdirSync(dir), ['sub']);
    await assert.rejects(writeFileAtomic(path.join(dir, 'missing-dir', 'f'), 'data'), /ENOENT/);
  });
});

describe('writeFileAtomicSync', () => {
  it('creates and replaces a file, leaving no temp file', async () => {
    const dir = await freshDir();
    const file = path.join(dir, 'id');
    writeFileAtomicSync(file, 'cs-one\n');
    assert.equal(readFileSync(file, 'utf8'), 'cs-one\n');
    writeFileAtomicSync(file, 'cs-two\n');
    assert.equal(readFileSync(file, 'utf8'), 'cs-two\n');
    assert.deepEqual(readdirSync(dir), ['id']);
    const target = path.join(dir, 'sub');
    await fsp.mkdir(target);
    writeFileSync(path.join(target, 'inside'), 'x');
    assert.throws(() => writeFileAtomicSync(target, 'data'));
    assert.deepEqual(readdirSync(dir).sort(), ['id', 'sub']);
  });
});
