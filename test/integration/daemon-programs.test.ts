import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeRpc } from '../../shared/rpc.js';
import { cliPath, freePort } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// `gfs master`, `gfs chunkserver` and `gfs cluster up` run the daemons'
// own programs (gfs-master, gfs-chunkserver) as child processes. However the
// gfs process ends (Ctrl-C, SIGTERM, SIGKILL), no daemon is left behind.

const dir = mkdtempSync(join(tmpdir(), 'gfs-programs-'));
const started: ChildProcess[] = [];
/** Every daemon seen, killed in after() should a test fail before they stop. */
const daemonPids = new Set<number>();

/** The PIDs whose parent is `pid` (Linux /proc). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // Fields after the command name, which is in parentheses and may hold spaces: state ppid ...
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) out.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** A process that exited is gone even while no one has reaped it yet (a zombie). */
function alive(pid: number): boolean {
  if (!existsSync(`/proc/${pid}/stat`)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function commandLine(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
}

/** Starts `gfs ARGS`; resolves once `lines` lines are on its stdout. */
function gfs(args: string[], lines: number): Promise<{ proc: ChildProcess; out: string; exited: Promise<number | string> }> {
  const proc = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GFS_LOG_LEVEL: 'warn' } });
  started.push(proc);
  const exited = new Promise<number | string>((r) => proc.once('exit', (code, sig) => r(code ?? sig ?? -1)));
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('\n').length > lines) resolve({ proc, out, exited });
    });
    void exited.then((code) => reject(new Error(`gfs ${args.join(' ')} exited (${code}) after ${JSON.stringify(out)}: ${err}`)));
  });
}

async function daemonsOf(wrapper: ChildProcess, n: number): Promise<number[]> {
  const pids = await waitFor(`${n} daemon processes under gfs`, () => {
    const kids = childPids(wrapper.pid!).filter(alive);
    return kids.length === n ? kids : undefined;
  });
  for (const p of pids) daemonPids.add(p);
  return pids;
}

async function allGone(pids: number[]): Promise<void> {
  await waitFor(`processes ${pids.join(', ')} to exit`, () => pids.every((p) => !alive(p)), 20_000);
}

describe('daemon programs started by gfs', { timeout: 120_000 }, () => {
  after(async () => {
    for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const pid of daemonPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await closeRpc();
  });

  it('gfs master --help is the help of gfs-master', async () => {
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(process.execPath, [cliPath, 'master', '--help'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.once('close', (code) => resolve({ code, out }));
    });
    assert.equal(r.code, 0);
    assert.match(r.out, /Usage: gfs-master/);
    assert.match(r.out, /--lease-ms <ms>[\s\S]*GFS_LEASE_MS/);
  });

  it('gfs master runs gfs-master as its child and stops it on Ctrl-C', async () => {
    const g = await gfs(['master', '--dir', join(dir, 'm1'), '--port', '0'], 1);
    assert.match(g.out, /^master http:\/\/127\.0\.0\.1:\d+\n/);
    const [pid] = await daemonsOf(g.proc, 1);
    assert.match(commandLine(pid!), /master\/main\.js --dir/);
    g.proc.kill('SIGINT');
    assert.equal(await g.exited, 0, 'gfs exits with the daemon\'s code');
    await allGone([pid!]);
  });

  it('a daemon whose gfs is SIGKILLed stops on its own', async () => {
    const m = await gfs(['master', '--dir', join(dir, 'm2'), '--port', '0'], 1);
    const url = m.out.trim().split(' ')[1]!;
    const cs = await gfs(['chunkserver', '--master', url, '--dir', join(dir, 'cs2'), '--id', 'cs2'], 1);
    assert.match(cs.out, /^chunkserver cs2 http:\/\/127\.0\.0\.1:\d+\n/);
    const pids = [...(await daemonsOf(m.proc, 1)), ...(await daemonsOf(cs.proc, 1))];
    m.proc.kill('SIGKILL');
    cs.proc.kill('SIGKILL');
    await allGone(pids);
  });

  for (const sig of ['SIGINT', 'SIGKILL'] as const) {
    it(`gfs cluster up leaves no daemon behind after ${sig}`, async () => {
      const port = await freePort();
      const g = await gfs(['cluster', 'up', '--dir', join(dir, `cluster-${sig}`), '--port', String(port), '--chunkservers', '2'], 4);
      assert.match(g.out, new RegExp(`^master http://127\\.0\\.0\\.1:${port}\\nchunkserver cs1 `));
      const pids = await daemonsOf(g.proc, 3);
      assert.ok(pids.every((p) => /(master|chunkserver)\/main\.js/.test(commandLine(p))), 'the daemons are their own programs');
      g.proc.kill(sig);
      await allGone(pids);
      if (sig === 'SIGINT') assert.equal(await g.exited, 0);
    });
  }
});
