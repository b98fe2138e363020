import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Admission } from '../../../shared/admission.js';
import { makeLogger } from '../../../shared/log.js';
import { waitFor } from '../../helpers/wait.js';

// Admission limits (shared/admission.ts) on an in-process HTTP server: per-address cap, total cap
// with room kept for known peers, the first-request deadline (and not a later idle one), the
// rate-limited log, and the per-address bucket of failed authentications.

function capturingLogger(): { log: ReturnType<typeof makeLogger>; lines: string[] } {
  const lines: string[] = [];
  const log = makeLogger('test', { format: 'json', destination: { write: (s: string) => void lines.push(s) } });
  return { log, lines };
}

async function serve(a: Admission): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => res.end('ok'));
  a.attach(server);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

/** A connection from `from`; resolves once it is established, with a promise of its close. */
function open(port: number, from: string): Promise<{ sock: Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ port, host: '127.0.0.1', localAddress: from });
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('error', () => undefined);
    sock.once('connect', () => resolve({ sock, closed }));
    sock.once('close', () => reject(new Error('closed before connecting')));
  });
}

/** Sends a GET on sock and resolves with the status line (keep-alive). */
function get(sock: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString();
      if (text.includes('\r\n\r\n') && text.endsWith('ok')) {
        sock.off('data', onData);
        resolve(text.split('\r\n')[0]!);
      }
    };
    sock.on('data', onData);
    sock.once('close', () => reject(new Error(`closed; got ${JSON.stringify(text)}`)));
    sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  });
}

describe('admission', () => {
  it('caps one address, keeps total room for peers, and logs refusals once per interval', async () => {
    const { log, lines } = capturingLogger();
    const a = new Admission(log, { maxPerAddress: 3, maxTotal: 6, reservedForPeers: 2, firstHeadersMs: 60_000, logEveryMs: 60_000 });
    const { server, port } = await serve(a);
    const socks: Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) socks.push((await open(port, '127.0.0.2')).sock);
      // The kernel accepts the 4th; the server closes it at once.
      const fourth = await open(port, '127.0.0.2');
      await fourth.closed;
      await waitFor('the per-address refusal', () => a.stats.refused.per_address === 1, 5_000, 10);
      // Another address fills the rest of the non-peer room (6 - 2 reserved = 4 in all).
      socks.push((await open(port, '127.0.0.3')).sock);
      await waitFor('4 open', () => a.stats.openConnections === 4, 5_000, 10);
      const fifth = await open(port, '127.0.0.3');
      await fifth.closed;
      assert.equal(a.stats.refused.total, 1);
      // A known peer added at run time still gets in, and gets answers.
      a.allowPeer('127.0.0.4');
      const peer = (await open(port, '127.0.0.4')).sock;
      socks.push(peer);
      assert.equal(await get(peer), 'HTTP/1.1 200 OK');
      assert.equal(a.stats.openConnections, 5);
      const lineCount = lines.filter((l) => l.includes('admission: refused')).length;
      assert.equal(lineCount, 1, 'two refusals within one interval: the first logged now, the rest later in one line');
      assert.match(lines.find((l) => l.includes('admission: refused'))!, /127\.0\.0\.2/);
    } finally {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
    await waitFor('connections released', () => a.stats.openConnections === 0, 5_000, 10);
  });

  it('closes a connection whose first headers are late, but not an idle one that already had a request', async () => {
    const { log } = capturingLogger();
    const a = new Admission(log, { firstHeadersMs: 300 });
    const { server, port } = await serve(a);
    try {
      const served = await open(port, '127.0.0.1');
      assert.equal(await get(served.sock), 'HTTP/1.1 200 OK');
      const silent = await open(port, '127.0.0.1');
      silent.sock.write('GET / HT');
      await silent.closed;
      assert.equal(a.stats.refused.header_timeout, 1);
      // Well past the deadline, the keep-alive connection still works.
      assert.equal(await get(served.sock), 'HTTP/1.1 200 OK');
      served.sock.destroy();
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('refuses an address after a burst of failed authentications and lets it back in as it slows down', () => {
    const { log } = capturingLogger();
    const a = new Admission(log, { authFailBurst: 5, authFailPerSec: 1, peers: ['10.0.0.9'] });
    const t0 = 1_000_000;
    for (let i = 0; i < 5; i++) {
      assert.ok(a.mayAuthenticate('10.0.0.1', t0));
      a.authFailed('10.0.0.1', t0);
    }
    assert.equal(a.mayAuthenticate('10.0.0.1', t0), false);
    assert.equal(a.mayAuthenticate('::ffff:10.0.0.1', t0), false, 'the IPv4-mapped form is the same address');
    assert.ok(a.mayAuthenticate('10.0.0.2', t0), 'another address is unaffected');
    assert.ok(a.mayAuthenticate('10.0.0.1', t0 + 1_000), 'one more per second');
    for (let i = 0; i < 10; i++) a.authFailed('10.0.0.9', t0);
    assert.ok(a.mayAuthenticate('10.0.0.9', t0), 'known peers are never refused');
    assert.deepEqual([a.stats.unauthenticated, a.stats.authRateLimited], [15, 2]);
  });
});
