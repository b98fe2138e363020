import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rpcJson } from '../../shared/rpc.js';
import { clusterPerSuite } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';
import { scrape } from '../helpers/metrics.js';

// Connection admission before authentication (shared/admission.ts), against a real master: a local
// process on another loopback address (127.0.0.2) opens more connections than the per-address cap
// (default 256) and leaves each with half a request line. Meanwhile clients from 127.0.0.1 get
// answers, chunkserver heartbeats keep arriving, and the refusals (over the cap, and first headers
// too slow) show in the master's log and /metrics. Unauthenticated requests from one address are
// refused with 429 once they pass the burst.

const floodPath = fileURLToPath(new URL('../helpers/conn-flood.js', import.meta.url));
const perAddressCap = 256;
const attackerConnections = 320;

/** Starts the attacker; resolves once it has made its connection attempts, with every stdout line seen. */
function startAttacker(args: string[], readyLine: RegExp | undefined, lines: string[]): { proc: ChildProcess; ready: Promise<void> } {
  const proc = spawn(process.execPath, [floodPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = new Promise<void>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const l of parts) {
        lines.push(l);
        if (readyLine?.test(l)) resolve();
      }
    });
    proc.once('exit', (code, sig) => (readyLine ? reject(new Error(`attacker exited early (${sig ?? code})`)) : resolve()));
  });
  return { proc, ready };
}

async function stopAttacker(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.kill('SIGKILL');
  await gone;
}

describe('connection admission under a local connection flood', { timeout: 120_000 }, () => {
  const cluster = clusterPerSuite({ chunkservers: 2 });

  it('a flood from 127.0.0.2 is capped and timed out while 127.0.0.1 is served and heartbeats continue', async () => {
    const c = cluster();
    const port = String(c.master.port);
    const lines: string[] = [];
    const attacker = startAttacker(['--port', port, '--from', '127.0.0.2', '--count', String(attackerConnections), '--mode', 'flood'], /^opened /, lines);
    try {
      await attacker.ready;
      const refused = async (reason: string) => (await scrape(c.masterUrl)).sum('gfs_connections_refused_total', { reason });
      // Everything over the cap is refused at once (the attacker's reopens add more).
      await waitFor('per-address refusals', async () => (await refused('per_address')) >= attackerConnections - perAddressCap, 20_000);

      // A client from 127.0.0.1 is still served: each answer must arrive within a second, polled.
      const fs = c.client();
      for (let i = 0; i < 5; i++) {
        await waitFor(`status answer ${i}`, () => rpcJson(c.masterUrl, '/api/status', undefined, { timeoutMs: 1_000 }).then(() => true), 10_000);
        await waitFor(`create ${i}`, () => fs.create(`/during-flood-${i}`).then(() => true), 10_000);
      }

      // The held connections never send whole headers: they are closed after the first-request deadline.
      await waitFor('first-header timeouts', async () => (await refused('header_timeout')) >= perAddressCap / 2, 30_000);
      // By now the flood has run for longer than --dead-ms (2 s in tests): heartbeats kept arriving.
      const status = await c.status();
      assert.deepEqual(status.chunkservers.map((s) => s.alive), [true, true], `chunkservers: ${JSON.stringify(status.chunkservers)}`);
      const m = await scrape(c.masterUrl);
      assert.ok(m.sum('gfs_open_connections') < attackerConnections, `open connections ${m.sum('gfs_open_connections')}`);

      const log = () => readFileSync(join(c.dir, 'master.log'), 'utf8');
      await waitFor('the refusal log line', () => /admission: refused/.test(log()) && /127\.0\.0\.2/.test(log()));
      // Rate-limited: a line per interval, not one per socket.
      const logged = log().split('\n').filter((l) => l.includes('admission: refused')).length;
      assert.ok(logged >= 1 && logged <= 10, `${logged} admission log lines`);
    } finally {
      await stopAttacker(attacker.proc);
    }
    for (const p of ['/during-flood-0', '/during-flood-4']) assert.ok(await c.client().stat(p), `${p} exists`);
  });

  it('unauthenticated requests from one address get 401, then 429 past the burst; others are unaffected', async () => {
    const c = cluster();
    const lines: string[] = [];
    const n = 130;
    const attacker = startAttacker(['--port', String(c.master.port), '--from', '127.0.0.3', '--count', String(n), '--mode', 'unauth'], undefined, lines);
    try {
      await attacker.ready;
    } finally {
      await stopAttacker(attacker.proc);
    }
    assert.equal(lines.length, n, lines.join(' '));
    const by = (s: string) => lines.filter((l) => l === s).length;
    assert.ok(by('401') >= 100, `401s: ${by('401')}`);
    assert.ok(by('429') >= 1, `429s: ${by('429')} of ${JSON.stringify(lines.slice(-5))}`);
    assert.equal(by('401') + by('429'), n, `other answers: ${lines.filter((l) => l !== '401' && l !== '429').join(' ')}`);
    const m = await scrape(c.masterUrl);
    assert.ok(m.sum('gfs_unauthenticated_requests_total') >= by('401'));
    assert.ok(m.sum('gfs_auth_rate_limited_requests_total') >= by('429'));
    await rpcJson(c.masterUrl, '/api/status', undefined, { timeoutMs: 5_000 });
  });
});
