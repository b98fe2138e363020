import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { programPath } from '../../shared/programs.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import { makeLocalCertificates, type LocalCertificates } from '../../shared/tls.js';
import type { ChunksAnswer } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';

// TLS on every listener (shared/tls.ts): a cluster whose master and
// chunkservers serve HTTPS with a private CA's certificate. Data put through
// the CLI crosses TLS from the client to the first replica and along the push
// chain between chunkservers; every replica must hold it byte for byte. A
// client that does not trust the CA, and a plain-HTTP request to a TLS port,
// get nothing; a daemon given a certificate without its key refuses to start.

const MiB = 1024 * 1024;
const chunkSizeBytes = 1 * MiB;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const haveOpenssl = spawnSync('openssl', ['version']).status === 0;

describe('TLS on every listener', { timeout: 120_000, skip: haveOpenssl ? false : 'skipped: the openssl command is missing (apt-get install openssl)' }, () => {
  let cluster: TestCluster | undefined;
  let dir: string;
  let certs: LocalCertificates;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gfs-tls-'));
    certs = makeLocalCertificates(join(dir, 'tls'));
    // This process's own RPCs (status polls, chunk listings) trust the cluster's CA too.
    process.env.GFS_TLS_CA = certs.caFile;
    cluster = await startCluster({
      chunkservers: 3,
      chunkSizeBytes,
      leaseMs: 3_000,
      env: { GFS_TLS_CERT: certs.certFile, GFS_TLS_KEY: certs.keyFile, GFS_TLS_CA: certs.caFile },
    });
  });

  after(async () => {
    await cluster?.stop();
    await closeRpc();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every daemon names itself https://; a put crosses the push chain and lands on every replica byte for byte', async () => {
    const c = cluster!;
    assert.match(c.masterUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    const status = await c.status();
    assert.equal(status.chunkservers.length, 3);
    for (const s of status.chunkservers) assert.match(s.url, /^https:\/\//, `chunkserver ${s.id} registered ${s.url}`);

    const data = randomBytes(2 * chunkSizeBytes + 12_345);
    const put = await c.cli(['put', '-', '/secret.bin'], data);
    assert.equal(put.code, 0, put.stderr);
    const loc = await rpcJson<ChunksAnswer>(c.masterUrl, '/api/chunks', { path: '/secret.bin', startIndex: 0, count: 10 });
    assert.equal(loc.chunks.length, 3);
    const ids = new Set(loc.chunks.flatMap((ch) => ch.replicas.map((r) => r.id)));
    assert.equal(ids.size, 3, 'every chunkserver holds a replica');
    for (const id of ids) {
      const cat = await c.cli(['cat', '--replica', id, '/secret.bin']);
      assert.equal(cat.code, 0, cat.stderr);
      assert.equal(sha256(cat.stdout), sha256(data), `replica on ${id} differs`);
    }
  });

  it('a client that does not trust the CA is refused with one line naming the fix, and changes nothing', async () => {
    const c = cluster!;
    const r = await c.cli(['mkdir', '/untrusted'], undefined, { GFS_TLS_CA: '' });
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /certificate/i);
    assert.match(r.stderr, /GFS_TLS_CA/);
    const ls = await c.cli(['ls', '/']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.doesNotMatch(ls.stdout.toString(), /untrusted/);
    // Node's own TLS client with the system roots agrees: the certificate is not vouched for.
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const req = httpsGet(`${c.masterUrl}/healthz`, () => resolve(new Error('answered') as NodeJS.ErrnoException));
      req.once('error', (e) => resolve(e as NodeJS.ErrnoException));
    });
    assert.match(String(err.code), /UNABLE_TO_VERIFY|SELF_SIGNED/);
  });

  it('plain HTTP to a TLS port gets no HTTP answer', async () => {
    const port = Number(new URL(cluster!.masterUrl).port);
    const answer = await new Promise<string>((resolve) => {
      const sock = connect(port, '127.0.0.1', () => sock.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
      let got = '';
      sock.on('data', (d) => (got += d.toString('latin1')));
      sock.once('close', () => resolve(got));
      sock.once('error', () => resolve(got));
      sock.setTimeout(10_000, () => sock.destroy());
    });
    assert.doesNotMatch(answer, /^HTTP\/1\.1 2/, 'a TLS port answered plain HTTP');
  });

  it('a daemon given a certificate without its key refuses to start, in one line', async () => {
    const mdir = join(dir, 'half');
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [programPath('master'), '--dir', mdir, '--port', '0'], { env: { ...process.env, GFS_TLS_CERT: certs.certFile, GFS_TLS_KEY: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const killer = setTimeout(() => p.kill('SIGKILL'), 20_000);
      p.once('close', (code) => {
        clearTimeout(killer);
        resolve({ code, stderr });
      });
    });
    assert.notEqual(r.code, 0, 'the master started without a key');
    assert.match(r.stderr, /needs both a certificate and a key/);
  });
});
