import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { frameRecord } from '../../client/records.js';
import { closeRpc } from '../../shared/rpc.js';
import { cliPath, startCluster, type TestCluster } from '../helpers/cluster.js';

// Every gfs command writes all of its output before it exits, to a pipe as
// to a file: `gfs ls / | wc -l` on a directory of 5,028 entries once
// printed 613 lines, the process exiting with the rest still queued for a
// pipe whose reader had not yet taken the first 64 KiB.

const entries = 10_000;
const batch = 200;

let cluster: TestCluster | undefined;

/** Runs `gfs ARGS | (sleep 0.5; wc -l)`: a reader that starts late, so the pipe fills. Returns the count and gfs's exit code. */
function countLines(args: string[]): Promise<{ lines: number; code: number; stderr: string }> {
  const quoted = [process.execPath, cliPath, '--master', cluster!.masterUrl, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve, reject) => {
    const p = spawn('sh', ['-c', `{ ${quoted}; echo "gfs-exit=$?" >&2; } | (sleep 0.5; wc -l)`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('error', reject);
    p.once('close', () => {
      const code = /gfs-exit=(\d+)/.exec(err);
      if (!code) return reject(new Error(`no exit code from gfs ${args.join(' ')}: ${err}`));
      resolve({ lines: Number(out.trim()), code: Number(code[1]), stderr: err.replace(/gfs-exit=\d+\n/, '') });
    });
  });
}

describe('CLI output through a slow pipe', { timeout: 600_000 }, () => {
  before(async () => {
    cluster = await startCluster({ chunkservers: 1 });
    const c = cluster.client();
    await c.mkdir('/many');
    for (let i = 0; i < entries; i += batch)
      await Promise.all(Array.from({ length: Math.min(batch, entries - i) }, (_, j) => c.create(`/many/file-${String(i + j).padStart(5, '0')}`, { replication: 1 })));
    // 10,000 records written in one piece: the framing is what `gfs records` reads, however it got there.
    await c.create('/records', { replication: 1 });
    await c.write('/records', 0, Buffer.concat(Array.from({ length: entries }, (_, i) => frameRecord(Buffer.from(`record ${i}`)))));
  });

  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  const cases: { args: string[]; want: number }[] = [
    { args: ['ls', '/many'], want: entries },
    { args: ['ls', '-l', '/many'], want: entries },
    { args: ['records', '/records'], want: entries },
    { args: ['records', '--json', '/records'], want: entries },
    // A line per file, then the summary and the verdict.
    { args: ['fsck', '--files', '/many'], want: entries + 2 },
  ];
  for (const c of cases) {
    it(`gfs ${c.args.join(' ')} prints every line`, async () => {
      const r = await countLines(c.args);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.lines, c.want);
    });
  }
});
