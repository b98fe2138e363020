import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpLog } from '../../../master/oplog.js';
import { OpLogWatch } from '../../../scripts/partition/oplog-watch.js';

// The 'bump' nemesis finds its moment by reading the master's op log: it must see a version bump
// logged and not yet confirmed, and no longer see it once the 'bumped' record follows.

describe('partition op log watch', () => {
  it('sees a bump under way between its version record and its bumped record, in a real op log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gfs-oplog-watch-'));
    const { oplog } = await OpLog.open({ dir, checkpointLogBytes: 1 << 30, apply: () => undefined });
    try {
      let nowMs = 1_000;
      const watch = new OpLogWatch(dir, () => nowMs);
      assert.deepEqual(watch.inWindow(10_000), []);
      await oplog.append({ op: 'mkdir', path: '/a', t: 1 });
      await oplog.append({ op: 'version', handle: 'h1', version: 3, pendingFrom: 2 });
      // A version without pendingFrom (a new chunk) is no bump window.
      await oplog.append({ op: 'version', handle: 'h2', version: 1 });
      assert.deepEqual(watch.inWindow(10_000), ['h1@3']);
      await oplog.append({ op: 'bumped', handle: 'h1', version: 3, servers: ['cs0'] });
      assert.deepEqual(watch.inWindow(10_000), []);
      // One never confirmed stops counting once it is older than the window asked about.
      await oplog.append({ op: 'version', handle: 'h3', version: 5, pendingFrom: 4 });
      assert.deepEqual(watch.inWindow(10_000), ['h3@5']);
      nowMs += 30;
      assert.deepEqual(watch.inWindow(30), ['h3@5'], 'seen 30 ms ago: inside a 30 ms window');
      assert.deepEqual(watch.inWindow(29), []);
    } finally {
      await oplog.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
