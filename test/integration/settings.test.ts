import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnDaemon } from '../../shared/programs.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import { cliPath, freePort } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// Daemon settings: flag > environment variable > config file > default,
// bind and advertise addresses apart, and a one-line error for bad values.

const dir = mkdtempSync(join(tmpdir(), 'gfs-settings-'));
const procs: ChildProcess[] = [];

/** Starts gfs-master or gfs-chunkserver with ARGS and resolves with its first stdout line (the URL it prints once listening). */
function daemon(program: 'master' | 'chunkserver', args: string[], env: Record<string, string> = {}): Promise<{ proc: ChildProcess; line: string }> {
  const proc = spawnDaemon(program, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GFS_LOG_LEVEL: 'warn', ...env } });
  procs.push(proc);
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve({ proc, line: out.split('\n')[0]! });
    });
    proc.once('exit', (code) => reject(new Error(`gfs-${program} ${args.join(' ')} exited ${code}: ${err}`)));
  });
}

/** Runs `gfs ARGS` to completion (killed after 15 s): `gfs master` passes its flags to gfs-master and its exit code back. */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    procs.push(p);
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // A case that wrongly starts a daemon must fail the test, not hang it.
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stderr });
    });
  });
}

async function stopAll(): Promise<void> {
  await Promise.all(
    procs
      .filter((p) => p.exitCode === null && p.signalCode === null)
      .map((p) => {
        const gone = new Promise<void>((r) => p.once('exit', () => r()));
        p.kill('SIGKILL');
        return gone;
      }),
  );
}

describe('daemon settings: flags, env, config file', { timeout: 60_000 }, () => {
  after(async () => {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    await closeRpc();
  });

  it('take a flag over an env variable over the config file over the default', async () => {
    const port = await freePort();
    const file = join(dir, 'master.json');
    // "dir" is relative to the file's directory; "chunk-size" goes through the flag's parser.
    writeFileSync(file, JSON.stringify({ dir: 'master-data', port, 'lease-ms': 1111, 'heartbeat-ms': 300, 'chunk-size': '128k', advertise: `http://gfs-master.example:${port}` }));
    const { line } = await daemon('master', ['--config', file, '--heartbeat-ms', '500', '--safe-mode-ms', '0'], { GFS_LEASE_MS: '2222', GFS_HEARTBEAT_MS: '400' });
    assert.equal(line, `master http://gfs-master.example:${port}`, 'prints the advertised URL');
    assert.ok(existsSync(join(dir, 'master-data')), 'dir resolved against the config file');
    // It binds 127.0.0.1 (the default host) while advertising another name.
    const cfg = await rpcJson<{ chunkSizeBytes: number; leaseMs: number; heartbeatMs: number }>(`http://127.0.0.1:${port}`, '/api/config');
    assert.deepEqual(cfg, { chunkSizeBytes: 128 * 1024, leaseMs: 2222, heartbeatMs: 500 });

    // A chunkserver configured by GFS_CONFIG alone, with the global "master" in the file.
    const csFile = join(dir, 'cs.json');
    writeFileSync(csFile, JSON.stringify({ master: `http://127.0.0.1:${port}`, dir: 'cs-data', rack: 'r9', id: 'csx', host: '127.0.0.1' }));
    const cs = await daemon('chunkserver', [], { GFS_CONFIG: csFile, GFS_RACK: 'r7' });
    assert.match(cs.line, /^chunkserver csx http:\/\/127\.0\.0\.1:\d+$/);
    const s = await waitFor('the chunkserver to register', async () => {
      const st = await rpcJson<{ chunkservers: { id: string; rack: string; url: string }[] }>(`http://127.0.0.1:${port}`, '/api/status');
      return st.chunkservers.find((c) => c.id === 'csx');
    });
    assert.equal(s.rack, 'r7', 'GFS_RACK wins over the file');
    assert.equal(s.url, cs.line.split(' ')[2]);
  });

  it('refuse bad values with one line that names the setting', async () => {
    const bad = join(dir, 'bad.json');
    const cases: { what: string; file?: unknown; raw?: string; env?: Record<string, string>; args?: string[]; want: RegExp }[] = [
      { what: 'a word for a port', file: { dir: 'x', port: 'seventy' }, want: /config file .*bad\.json: "port": --port must be a whole number/ },
      { what: 'a port out of range', file: { dir: 'x', port: 70000 }, want: /"port": --port must be between 0 and 65535/ },
      { what: 'an unknown key', file: { dir: 'x', prot: 7070 }, want: /unknown setting "prot"/ },
      { what: 'a wrong type', file: { dir: 'x', port: [1] }, want: /config file .*: port: / },
      { what: 'a boolean for a value', file: { dir: 'x', 'lease-ms': true }, want: /"lease-ms": must be a number or a string/ },
      { what: 'broken JSON', raw: '{"port": 7', want: /config file .*bad\.json: .*JSON/ },
      { what: 'a bad env variable', env: { GFS_LEASE_MS: 'soon' }, args: ['--dir', join(dir, 'y')], want: /GFS_LEASE_MS="soon": --lease-ms must be a whole number/ },
      { what: 'a bad advertise URL', args: ['--dir', join(dir, 'z'), '--port', '0', '--advertise', 'gfs-master:7070'], want: /--advertise must be a URL such as http:\/\/host:7071/ },
      { what: 'no dir anywhere', args: [], want: /required option '--dir <dir>' not specified/ },
    ];
    for (const c of cases) {
      let args = c.args ?? [];
      if (c.file !== undefined || c.raw !== undefined) {
        writeFileSync(bad, c.raw ?? JSON.stringify(c.file));
        args = ['--config', bad, ...args];
      }
      const r = await run(['master', ...args], c.env);
      assert.equal(r.code, 1, `${c.what}: exit code (stderr: ${r.stderr})`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${c.what}: one line, got ${JSON.stringify(r.stderr)}`);
      assert.match(lines[0]!, c.want, c.what);
    }
  });
});
