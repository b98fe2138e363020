import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ReplicaStore } from '../../../chunkserver/store.js';
import { GfsError } from '../../../shared/errors.js';

// A full disk under the replica store: creates, writes and local copies fail
// with NO_SPACE (HTTP 507) naming the server, not with a bare ENOSPC. The
// disk is a 2 MiB tmpfs (needs root; skipped where mounting is not allowed),
// always unmounted afterwards.

const KiB = 1024;
const MiB = 1024 * KiB;
const H1 = '00000000000000a1';
const H2 = '00000000000000b2';
const H3 = '00000000000000c3';

async function assertNoSpace(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GfsError, `not a GfsError: ${String(e)}`);
    assert.equal(e.code, 'NO_SPACE', e.message);
    assert.equal(e.status, 507);
    assert.match(e.message, /cs-full/);
    assert.deepEqual(e.detail, { server: 'cs-full' });
    return true;
  });
}

describe('replica store on a full disk', () => {
  it('answers NO_SPACE naming the server for writes, creates and local copies', async (t) => {
    const mnt = await fsp.mkdtemp(path.join(os.tmpdir(), 'gfs-no-space-'));
    try {
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt], { stdio: 'ignore' });
      } catch {
        t.skip('cannot mount a tmpfs here (not root?)');
        return;
      }
      try {
        const store = await ReplicaStore.open({ dir: mnt, chunkSizeBytes: 4 * MiB, checksumBlockBytes: 64 * KiB, serverId: 'cs-full' });
        try {
          await store.create(H1, 1);
          await store.write(H1, 0, Buffer.alloc(1536 * KiB, 1));
          await assertNoSpace(store.write(H1, 1536 * KiB, Buffer.alloc(1 * MiB, 2)));
          // The disk is full now.
          await assertNoSpace(store.create(H2, 1));
          assert.equal(store.has(H2), false, 'a create that failed left a replica behind');
          await assertNoSpace(store.copyLocal(H1, H3, 1));
          assert.equal(store.has(H3), false, 'a copy that failed left a replica behind');
        } finally {
          await store.close();
        }
      } finally {
        execFileSync('umount', [mnt]);
      }
    } finally {
      await fsp.rm(mnt, { recursive: true, force: true });
    }
  });
});
