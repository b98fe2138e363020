import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Master, type MasterOptions } from '../../../master/master.js';
import { OpLog } from '../../../master/oplog.js';
import { makeLogger } from '../../../shared/log.js';

// Issue 15.7: a logged record whose apply throws (it threw the same way when it was logged) must
// not keep the master from ever starting again. No sockets: Master.open on a log written here.

test('a logged record whose apply throws is skipped at replay with a warning; the master starts with everything else', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gfs-replay-'));
  try {
    // Written as the master would have: the second create of /a threw in apply, but is in the log.
    const { oplog } = await OpLog.open({ dir, checkpointLogBytes: 1 << 20, apply: () => undefined });
    await oplog.append({ op: 'create', path: '/a', replication: 3, t: 1 });
    await oplog.append({ op: 'create', path: '/a', replication: 3, t: 2 });
    await oplog.append({ op: 'create', path: '/b', replication: 3, t: 3 });
    await oplog.close();

    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _e, cb) => void (lines.push(String(chunk)), cb()) });
    const opts: MasterOptions = {
      dir, chunkSizeBytes: 1 << 20, leaseMs: 1_000, heartbeatMs: 100, deadMs: 1_000, safeModeMs: 100, checkpointLogBytes: 1 << 20,
      defaultReplication: 3, trashGraceMs: 1_000, maxClusterClones: 1, maxPerServerClones: 1, cloneBytesPerSec: 0, rebalanceMinImbalance: 4,
      log: makeLogger('master', { format: 'json', destination: sink }),
    };
    const m = await Master.open(opts);
    try {
      assert.ok(m.ns.get('/a') && m.ns.get('/b'), 'the records around the bad one are applied');
      assert.equal(m.ns.appliedIndex, 3, 'the skipped record still counts one log index');
      assert.equal(m.status().replaySkipped, 1);
      assert.ok(lines.some((l) => l.includes('could not be applied')), 'a warning names the skipped record');
    } finally {
      await m.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
