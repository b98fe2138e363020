import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

// A short fixed set of seeds of the partition suite (scripts/partition.ts),
// kept short so `npm test` stays quick: the full figures (many seeds, longer
// runs) come from `npm run test:partition -- --seeds N --duration S`. Each run
// is its own process: a real cluster, three workload processes and the
// nemesis; the run prints its schedule, counts and verdict, and exits 1 on
// any violated invariant. The netns mode runs one seed where the machine
// allows it (root, `ip`, `nft`) and says why it skipped otherwise.

const script = fileURLToPath(new URL('../../scripts/partition.js', import.meta.url));

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // Bounded: the run stops itself, but never wait past the deadline (SIGTERM lets it clean up; SIGKILL if not).
    const t1 = setTimeout(() => p.kill('SIGTERM'), timeoutMs);
    const t2 = setTimeout(() => p.kill('SIGKILL'), timeoutMs + 15_000);
    p.once('close', (code) => {
      clearTimeout(t1);
      clearTimeout(t2);
      removeKeptDirs(out);
      resolve({ code, out });
    });
  });
}

/**
 * A failing run keeps its directory for inspection (`run directory kept: DIR`); a test leaves no temp
 * dirs behind, so they go here (what the violations were is in the output the assertions print).
 */
function removeKeptDirs(out: string): void {
  for (const m of out.matchAll(/^run directory kept: (.+)$/gm)) {
    const dir = m[1]!.trim();
    if (dirname(dir) === tmpdir() && basename(dir).startsWith('gfs-partition-')) rmSync(dir, { recursive: true, force: true });
  }
}

function summary(out: string): string {
  return out
    .split('\n')
    .filter((l) => /^(seed \d+:|netns mode skipped|verdict|at least|  invariant|  - \[)/.test(l))
    .join('\n');
}

describe('partition suite, fixed seeds', { timeout: 600_000 }, () => {
  it('layer mode: seeds 1 and 2, 20 s each, every nemesis: no invariant violated', async () => {
    const r = await run(['--seed', '1', '--seeds', '2', '--duration', '20'], 240_000);
    console.log(summary(r.out).replace(/^/gm, '# '));
    assert.equal(r.code, 0, `partition suite failed:\n${r.out.split('\n').slice(-80).join('\n')}`);
  });

  it('a seed that checked too little fails, saying what fell short', async () => {
    // No nemesis, a few seconds: everything passes but an append minimum no run of 5 s can meet.
    const r = await run(['--seed', '1', '--duration', '5', '--nemesis', '', '--min-appends', '1000000'], 180_000);
    console.log(summary(r.out).replace(/^/gm, '# '));
    assert.equal(r.code, 1, `a run short of its minimums passed:\n${summary(r.out)}`);
    assert.match(r.out, /^at least \d+ writes, 1000000 appends/m);
    assert.match(r.out, /^verdict: FAIL, too little checked: \d+ appends < 1000000$/m);
    assert.match(r.out, /^seed 1: FAIL \(.*too little checked: \d+ appends < 1000000\)/m);
  });

  it('netns mode: seed 3, 15 s (root only)', async (t) => {
    const r = await run(['--seed', '3', '--duration', '15', '--mode', 'netns'], 180_000);
    if (/netns mode skipped/.test(r.out)) {
      t.skip(r.out.trim().split('\n').find((l) => l.includes('skipped')));
      return;
    }
    console.log(summary(r.out).replace(/^/gm, '# '));
    assert.equal(r.code, 0, `partition suite (netns) failed:\n${r.out.split('\n').slice(-80).join('\n')}`);
  });
});

// The suite must catch real bugs: with a deliberately broken build
// (shared/unsafe.ts, passed to every node as GFS_UNSAFE) the same seeds that
// pass on the real code report the violation the bug causes.
describe('partition suite against deliberately broken builds', { timeout: 600_000 }, () => {
  it('a primary that ignores its lease: pauses longer than a lease expose it (acted past its lease)', async () => {
    const r = await run(['--seed', '2', '--seeds', '2', '--duration', '20', '--nemesis', 'pause', '--unsafe', 'primary-ignores-lease'], 240_000);
    console.log(summary(r.out).replace(/^/gm, '# '));
    assert.equal(r.code, 1, `the broken build was not caught:\n${summary(r.out)}`);
    assert.match(r.out, /acted-past-own-lease|acted-after-master-expiry|overlapping-primaries/);
  });

  it('a master that does not wait for lease expiry: overlapping grants are found', async () => {
    // The nemeses this seed was chosen with (bump and promote would change its schedule).
    const r = await run(['--seed', '1', '--duration', '30', '--nemesis', 'partition,kill,pause,clock', '--unsafe', 'master-no-lease-wait'], 240_000);
    console.log(summary(r.out).replace(/^/gm, '# '));
    assert.equal(r.code, 1, `the broken build was not caught:\n${summary(r.out)}`);
    assert.match(r.out, /overlapping-grants|overlapping-primaries|two-primaries-one-version|acted-without-grant/);
  });
});
