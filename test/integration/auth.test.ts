import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { blockCrcsOf, crc32c, encodeBlockCrcs } from '../../shared/checksum.js';
import { bodyMacDigest, keyFromSecret, macBody } from '../../shared/auth.js';
import { rpcJson } from '../../shared/rpc.js';
import type { ListEntry } from '../../shared/wire.js';
import { waitLeaseOver, writeSyncedFile } from '../helpers/chunks.js';
import { clusterPerSuite, waitFor } from '../helpers/cluster.js';
import { filesUnder } from '../helpers/files.js';
import { authHeaders, rawRequest, type AuthOptions, type RawAnswer } from '../helpers/signed.js';

// Authentication and path traversal against a live, authenticated cluster.
// Each kind of endpoint (client -> master, chunkserver -> master, client ->
// chunkserver, master -> chunkserver admin, data push) is sent requests that
// WOULD change something, with missing, forged, expired, replayed or
// tampered credentials: every one gets 401 {code: 'UNAUTHENTICATED'} and
// nothing changes (namespace, operation log, chunk files, push buffer,
// fault rules). Then handles and paths that try to leave the data directory
// or the namespace are refused.

const KiB = 1024;
const chunkSizeBytes = 256 * KiB;
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface Target {
  kind: string;
  base: () => string;
  method: string;
  path: string;
  body?: string;
}

describe('authentication: every kind of endpoint refuses bad credentials and changes nothing', { timeout: 120_000 }, () => {
  const cluster = clusterPerSuite({ chunkservers: 2, chunkSizeBytes, leaseMs: 1_500 });
  let handle = '';
  let version = 0;
  const content = randomBytes(100 * KiB);

  before(async () => {
    ({ handle, version } = await writeSyncedFile(cluster().client(), cluster().masterUrl, '/a/f', content));
    // The write's lease runs out, so nothing but the requests under test could touch the chunk.
    await waitLeaseOver(cluster().masterUrl, cluster().chunkservers.map((c) => c!.url), handle);
  });

  async function picture() {
    const m = cluster().masterUrl;
    const list = await rpcJson<{ entries: ListEntry[] }>(m, '/api/list', undefined, { query: { path: '/', recursive: '1' } });
    const fsck = await rpcJson<unknown>(m, '/api/fsck', undefined, { query: { path: '/' } });
    const status = await rpcJson<{ oplog: { records: number; logSeq: number } }>(m, '/api/status');
    const states = await Promise.all(cluster().chunkservers.map((p) => rpcJson<{ push: { count: number; usedBytes: number } }>(p!.url, '/debug/state')));
    const faults = await Promise.all([cluster().master, ...cluster().chunkservers].map((p) => rpcJson<{ rules: unknown[] }>(p!.url, '/admin/faults')));
    return {
      entries: list.entries,
      fsck,
      oplog: [status.oplog.records, status.oplog.logSeq],
      push: states.map((s) => [s.push.count, s.push.usedBytes]),
      faults: faults.map((f) => f.rules.length),
      chunks: cluster().chunkservers.map((p) => filesUnder(join(p!.dir, 'chunks'))),
    };
  }

  function targets(): Target[] {
    const cs = () => cluster().chunkservers[0]!.url;
    const m = () => cluster().masterUrl;
    const inline = Buffer.from('evil').toString('base64');
    return [
      { kind: 'client -> master', base: m, method: 'POST', path: '/api/mkdir', body: JSON.stringify({ path: '/evil', parents: true }) },
      { kind: 'client -> master (read)', base: m, method: 'GET', path: '/api/list?path=%2F&recursive=1' },
      { kind: 'chunkserver -> master', base: m, method: 'POST', path: '/api/cs/report-corrupt', body: JSON.stringify({ id: 'cs0', handle }) },
      { kind: 'chunkserver -> master (heartbeat)', base: m, method: 'POST', path: '/api/cs/register', body: JSON.stringify({ id: 'csevil', url: 'http://127.0.0.1:9', rack: 'r', capacityBytes: 1, usedBytes: 0, freeBytes: 1, chunks: [] }) },
      { kind: 'client -> chunkserver (read)', base: cs, method: 'GET', path: `/chunk/read?handle=${handle}&offset=0&length=100` },
      { kind: 'client -> chunkserver (write)', base: cs, method: 'POST', path: '/chunk/write', body: JSON.stringify({ handle, version, offset: 0, inline, sizeBytes: 4, crc32c: crc32c(Buffer.from('evil')), clientId: 'x', requestId: 'y' }) },
      { kind: 'chunkserver -> chunkserver (apply)', base: cs, method: 'POST', path: '/chunk/apply', body: JSON.stringify({ handle, version, ops: [{ kind: 'write', serial: 1, offset: 0, inline, sizeBytes: 4 }] }) },
      { kind: 'master -> chunkserver (version)', base: cs, method: 'POST', path: '/chunk/version', body: JSON.stringify({ handle, version: version + 1 }) },
      { kind: 'master -> chunkserver (create)', base: cs, method: 'POST', path: '/chunk/create', body: JSON.stringify({ handle: '00000000000000aa', version: 1 }) },
      { kind: 'admin (faults)', base: cs, method: 'POST', path: '/admin/faults', body: JSON.stringify({ rules: [{ from: '*', to: '*', drop: true }] }) },
      { kind: 'admin (faults, master)', base: m, method: 'POST', path: '/admin/faults', body: JSON.stringify({ rules: [{ from: '*', to: '*', drop: true }] }) },
      { kind: 'data push', base: cs, method: 'PUT', path: '/push/evil-data-1', body: 'x'.repeat(10_000) },
    ];
  }

  function send(t: Target, auth: Record<string, string>, body = t.body): Promise<RawAnswer> {
    const ct = t.method === 'PUT' ? 'application/octet-stream' : 'application/json';
    return rawRequest(t.base(), { method: t.method, target: t.path, body, headers: { ...(body !== undefined ? { 'content-type': ct } : {}), ...auth } });
  }

  function expect401(what: string, a: RawAnswer, wrong: string[]): void {
    let code: unknown;
    try {
      code = (JSON.parse(a.body) as { code?: unknown }).code;
    } catch {
      code = undefined;
    }
    if (a.status !== 401 || code !== 'UNAUTHENTICATED') wrong.push(`${what}: ${a.status} ${a.body.slice(0, 120)}`);
  }

  it('401 for missing, forged, expired, future, tampered and impersonated credentials', async () => {
    const beforePic = await picture();
    const wrongKey = keyFromSecret(randomBytes(32).toString('hex'));
    const variants: { name: string; auth: (t: Target) => Record<string, string>; body?: (t: Target) => string | undefined }[] = [
      { name: 'no credentials', auth: () => ({ 'x-gfs-from': 'client' }) },
      { name: 'forged (another secret)', auth: (t) => authHeaders(t.method, t.path, t.body, { key: wrongKey }) },
      { name: 'expired (10 min old)', auth: (t) => authHeaders(t.method, t.path, t.body, { timeMs: Date.now() - 600_000 }) },
      { name: 'from the future (10 min)', auth: (t) => authHeaders(t.method, t.path, t.body, { timeMs: Date.now() + 600_000 }) },
      { name: 'garbage signature', auth: (t) => ({ ...authHeaders(t.method, t.path, t.body), 'x-gfs-auth': 'zz' }) },
      { name: 'signature of another path', auth: (t) => authHeaders(t.method, '/api/stat?path=%2F', t.body) },
      { name: 'signature of another method', auth: (t) => authHeaders(t.method === 'GET' ? 'POST' : 'GET', t.path, t.body) },
      { name: 'another sender than signed', auth: (t) => ({ ...authHeaders(t.method, t.path, t.body, { from: 'cs0' }), 'x-gfs-from': 'master' }) },
      { name: 'body other than signed', auth: (t) => authHeaders(t.method, t.path, t.body, { bodySha256: sha256('something else') }) },
    ];
    const wrong: string[] = [];
    for (const v of variants)
      for (const t of targets()) {
        // A GET has no body to tamper with; its digest is still signed, so a wrong one is refused too.
        expect401(`${v.name} / ${t.kind} ${t.method} ${t.path}`, await send(t, v.auth(t)), wrong);
      }
    assert.deepEqual(wrong, [], 'requests that were not refused with 401');
    assert.deepEqual(await picture(), beforePic, 'nothing changed');
  });

  it('401 for a replayed request; the original ran once', async () => {
    const wrong: string[] = [];
    const m = cluster().masterUrl;
    const body = JSON.stringify({ path: '/replayed-once' });
    const auth = authHeaders('POST', '/api/mkdir', body);
    const first = await rawRequest(m, { method: 'POST', target: '/api/mkdir', body, headers: { 'content-type': 'application/json', ...auth } });
    assert.equal(first.status, 200, first.body);
    const beforePic = await picture();
    expect401('replayed mkdir', await rawRequest(m, { method: 'POST', target: '/api/mkdir', body, headers: { 'content-type': 'application/json', ...auth } }), wrong);
    // The same signature with the body another mkdir would have: still a replay, and the digest no longer matches.
    expect401('replayed mkdir with another body', await rawRequest(m, { method: 'POST', target: '/api/mkdir', body: JSON.stringify({ path: '/replayed-twice' }), headers: { 'content-type': 'application/json', ...auth } }), wrong);
    for (const t of targets()) {
      const a = authHeaders(t.method, t.path, t.body);
      if (t.method !== 'GET') continue; // replaying a read must not leak data either
      const once = await send(t, a);
      assert.ok(once.status === 200, `${t.kind}: first request ${once.status} ${once.body.slice(0, 100)}`);
      expect401(`replayed ${t.kind}`, await send(t, a), wrong);
    }
    // A push whose signature was already used: refused before a byte is buffered.
    const push = targets().find((t) => t.kind === 'data push')!;
    const pushAuth = authHeaders('PUT', '/push/replayed-push', push.body);
    const p1 = await rawRequest(push.base(), { method: 'PUT', target: '/push/replayed-push', body: push.body, headers: { 'content-type': 'application/octet-stream', ...pushAuth } });
    assert.equal(p1.status, 200, p1.body);
    expect401('replayed push', await rawRequest(push.base(), { method: 'PUT', target: '/push/replayed-push', body: push.body, headers: { 'content-type': 'application/octet-stream', ...pushAuth } }), wrong);
    assert.deepEqual(wrong, []);
    const afterPic = await picture();
    assert.deepEqual({ ...afterPic, push: undefined }, { ...beforePic, push: undefined }, 'replays changed nothing');
    const names = afterPic.entries.map((e) => e.path);
    assert.ok(names.includes('/replayed-once') && !names.includes('/replayed-twice'));
  });

  it('a push whose bytes differ from the signed digest is discarded, on every hop', async () => {
    const cs0 = cluster().chunkservers[0]!;
    const cs1 = cluster().chunkservers[1]!;
    const states = async () => Promise.all([cs0, cs1].map((p) => rpcJson<{ push: { count: number; usedBytes: number; active: number } }>(p.url, '/debug/state')));
    const before = await states();
    const body = randomBytes(200 * KiB);
    const chain = JSON.stringify([cs1.url]);
    const o: AuthOptions = { headers: { 'x-gfs-chain': chain }, bodySha256: sha256(randomBytes(10)) };
    const a = await rawRequest(cs0.url, { method: 'PUT', target: '/push/lying-push', body, headers: { 'content-type': 'application/octet-stream', ...authHeaders('PUT', '/push/lying-push', body, o) } });
    assert.ok(a.status === 401 || a.status === 503, `lying push answered ${a.status} ${a.body.slice(0, 200)}`);
    // And a chain header changed after signing is refused at once.
    const signedChain = authHeaders('PUT', '/push/rechained', body, { headers: { 'x-gfs-chain': '[]' } });
    const b = await rawRequest(cs0.url, { method: 'PUT', target: '/push/rechained', body, headers: { 'content-type': 'application/octet-stream', ...signedChain, 'x-gfs-chain': chain } });
    assert.equal(b.status, 401, b.body);
    // A hop may still be closing the refused streams: poll until they are gone (or the deadline), then judge.
    const kept = async () => (await states()).map((s) => [s.push.count, s.push.usedBytes, s.push.active]);
    const none = before.map((s) => [s.push.count, s.push.usedBytes, 0]);
    await waitFor('the refused pushes to be dropped by every hop', async () => JSON.stringify(await kept()) === JSON.stringify(none), 5_000).catch(() => undefined);
    assert.deepEqual(await kept(), none, 'no hop kept any of it');
    // Writing with that data id finds nothing.
    const w = JSON.stringify({ handle, version, offset: 0, dataId: 'lying-push', sizeBytes: body.length, crc32c: crc32c(body), clientId: 'x', requestId: 'lying' });
    const r = await rawRequest(cs0.url, { method: 'POST', target: '/chunk/write', body: w, headers: { 'content-type': 'application/json', ...authHeaders('POST', '/chunk/write', w) } });
    assert.ok(r.status !== undefined && r.status >= 400 && r.status < 500, `write of discarded data: ${r.status} ${r.body}`);
  });

  it('a push whose bytes differ from its signed MAC is discarded, on every hop; a MAC-signed push without the MAC is refused', async () => {
    const cs0 = cluster().chunkservers[0]!;
    const cs1 = cluster().chunkservers[1]!;
    const states = async () => Promise.all([cs0, cs1].map((p) => rpcJson<{ push: { count: number; usedBytes: number; active: number } }>(p.url, '/debug/state')));
    const before = await states();
    const chain = JSON.stringify([cs1.url]);
    const genuine = randomBytes(250 * KiB);
    const mac = macBody(genuine)!;
    // The same length with one byte changed near the end: the first hop has forwarded most of it by then.
    const tampered = Buffer.from(genuine);
    tampered[tampered.length - 10]! ^= 0x01;
    const send = (target: string, body: Buffer, headers: Record<string, string>) =>
      rawRequest(cs0.url, { method: 'PUT', target, body, headers: { 'content-type': 'application/octet-stream', ...authHeaders('PUT', target, body, { bodySha256: bodyMacDigest, headers }) } });
    const a = await send('/push/mac-tampered', tampered, { 'x-gfs-chain': chain, 'x-gfs-body-mac': mac });
    assert.ok(a.status === 401 || a.status === 503, `tampered push answered ${a.status} ${a.body.slice(0, 200)}`);
    const b = await send('/push/mac-missing', genuine, { 'x-gfs-chain': chain });
    assert.equal(b.status, 401, b.body);
    // A tag of the right form but for another IV (a splice from another push) fails too.
    const other = macBody(genuine)!.split('.');
    const spliced = ['gmac1', other[1], mac.split('.')[2]].join('.');
    const c = await send('/push/mac-spliced', genuine, { 'x-gfs-chain': chain, 'x-gfs-body-mac': spliced });
    assert.ok(c.status === 401 || c.status === 503, `spliced MAC answered ${c.status} ${c.body.slice(0, 200)}`);
    // The genuine body with its own MAC goes through the whole chain.
    const d = await send('/push/mac-genuine', genuine, { 'x-gfs-chain': chain, 'x-gfs-body-mac': mac });
    assert.equal(d.status, 200, d.body);
    assert.equal((JSON.parse(d.body) as { crc32c: number }).crc32c, crc32c(genuine));
    await waitFor('the rejected pushes to end on every hop', async () => (await states()).every((s) => s.push.active === 0), 10_000);
    const after = await states();
    // Exactly the genuine push is held, on both hops.
    assert.deepEqual(
      after.map((s) => [s.push.count, s.push.usedBytes]),
      before.map((s) => [s.push.count + 1, s.push.usedBytes + genuine.length]),
      'only the genuine push was kept',
    );
  });

  it("a push whose bytes do not match the sender's block crcs is refused and nothing is kept", async () => {
    const cs0 = cluster().chunkservers[0]!;
    const cs1 = cluster().chunkservers[1]!;
    const states = async () => Promise.all([cs0, cs1].map((p) => rpcJson<{ push: { count: number; usedBytes: number; active: number } }>(p.url, '/debug/state')));
    const before = await states();
    const body = randomBytes(200 * KiB);
    const crcs = blockCrcsOf(body, 64 * KiB);
    crcs[2] = (crcs[2]! ^ 1) >>> 0; // the third block's crc is wrong: damage the MAC cannot see (the sender is genuine)
    const target = '/push/crc-damaged';
    const headers = { 'x-gfs-chain': JSON.stringify([cs1.url]), 'x-gfs-body-mac': macBody(body)!, 'x-gfs-block-crcs': encodeBlockCrcs(crcs) };
    const a = await rawRequest(cs0.url, { method: 'PUT', target, body, headers: { 'content-type': 'application/octet-stream', ...authHeaders('PUT', target, body, { bodySha256: bodyMacDigest, headers }) } });
    assert.ok(a.status === undefined || a.status >= 400, `damaged push answered ${a.status} ${a.body.slice(0, 200)}`);
    await waitFor('the refused push to end on every hop', async () => (await states()).every((s) => s.push.active === 0), 10_000);
    const after = await states();
    assert.deepEqual(after.map((s) => [s.push.count, s.push.usedBytes]), before.map((s) => [s.push.count, s.push.usedBytes]), 'no hop kept any of it');
    // A list of the wrong length is refused before the body is read.
    const short = encodeBlockCrcs(crcs.subarray(0, 2));
    const h2 = { 'x-gfs-block-crcs': short, 'x-gfs-body-mac': macBody(body)! };
    const b = await rawRequest(cs0.url, { method: 'PUT', target: '/push/crc-short', body, headers: { 'content-type': 'application/octet-stream', ...authHeaders('PUT', '/push/crc-short', body, { bodySha256: bodyMacDigest, headers: h2 }) } });
    assert.equal(b.status, 400, b.body);
  });

  it('handles and paths that try to leave the data directory or the namespace are refused', async () => {
    const beforePic = await picture();
    const cs = cluster().chunkservers[0]!.url;
    const m = cluster().masterUrl;
    const get = (base: string, target: string) => rawRequest(base, { method: 'GET', target, headers: authHeaders('GET', target) });
    const post = (base: string, target: string, body: string) => rawRequest(base, { method: 'POST', target, body, headers: { 'content-type': 'application/json', ...authHeaders('POST', target, body) } });
    const put = (base: string, target: string, body: string) => rawRequest(base, { method: 'PUT', target, body, headers: { 'content-type': 'application/octet-stream', ...authHeaders('PUT', target, body) } });
    const attempts: [string, Promise<RawAnswer>][] = [
      ['read ../../etc/passwd', get(cs, '/chunk/read?handle=../../etc/passwd&offset=0&length=100')],
      ['read %2e%2e%2f encoded', get(cs, '/chunk/read?handle=%2e%2e%2f%2e%2e%2fetc%2fpasswd&offset=0&length=100')],
      ['read a handle with a slash', get(cs, `/chunk/read?handle=${handle}%2F..&offset=0&length=100`)],
      ['info ..', get(cs, '/chunk/info?handle=..')],
      ['info of an absolute path', get(cs, '/chunk/info?handle=%2Fetc%2Fpasswd')],
      ['route traversal', get(cs, '/chunk/..%2F..%2Fetc%2Fpasswd')],
      ['raw dot-dot route', get(cs, '/../../etc/passwd')],
      ['create ../x', post(cs, '/chunk/create', JSON.stringify({ handle: '../../../tmp/gfs-evil', version: 1 }))],
      ['create with an escaped ..', post(cs, '/chunk/create', '{"handle":"\\u002e\\u002e/\\u002e\\u002e/gfs-evil","version":1}')],
      ['create with a trailing path', post(cs, '/chunk/create', JSON.stringify({ handle: '0000000000000001/../../gfs-evil', version: 1 }))],
      ['copy to ../', post(cs, '/chunk/copy', JSON.stringify({ handle, newHandle: '../gfs-evil', version }))],
      ['clone of ../', post(cs, '/chunk/clone', JSON.stringify({ handle: '../gfs-evil', version: 1, sourceUrl: cs, sourceId: 'cs1' }))],
      ['push to an encoded ../ data id', put(cs, '/push/..%2F..%2Fgfs-evil', 'data')],
      ['push to a raw ../ data id', put(cs, '/push/../../gfs-evil', 'data')],
      ['mkdir /a/../../etc', post(m, '/api/mkdir', JSON.stringify({ path: '/a/../../etc', parents: true }))],
      ['mkdir with escaped dots', post(m, '/api/mkdir', '{"path":"/a/\\u002e\\u002e/x"}')],
      ['create ..', post(m, '/api/create', JSON.stringify({ path: '/..' }))],
      ['rename to ../', post(m, '/api/rename', JSON.stringify({ src: '/a/f', dst: '/a/../../f' }))],
      ['snapshot to a relative path', post(m, '/api/snapshot', JSON.stringify({ src: '/a', dst: '../a' }))],
      ['stat %2E%2E', get(m, '/api/stat?path=%2Fa%2F%2E%2E%2F%2E%2E')],
      ['list /a/..', get(m, '/api/list?path=%2Fa%2F..')],
      ['fsck ..', get(m, '/api/fsck?path=..')],
    ];
    const wrong: string[] = [];
    for (const [what, p] of attempts) {
      const a = await p;
      if (a.status === undefined || a.status < 400 || a.status >= 500) wrong.push(`${what}: ${a.status} ${a.body.slice(0, 120)}`);
    }
    assert.deepEqual(wrong, [], 'traversal attempts that were not refused with a 4xx');
    for (const p of ['/tmp/gfs-evil', join(cluster().dir, 'gfs-evil'), join(cluster().chunkservers[0]!.dir, 'gfs-evil')]) assert.ok(!existsSync(p) && !existsSync(p + '.chunk'), `${p} was not created`);
    assert.deepEqual(await picture(), beforePic, 'nothing changed');
  });

  it('well-signed requests still work (the CLI and the library)', async () => {
    const r = await cluster().cli(['cat', '/a/f']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(content));
    const noSecret = await cluster().cli(['ls', '/'], undefined, { GFS_SECRET: '', GFS_SECRET_FILE: '' });
    assert.notEqual(noSecret.code, 0);
    assert.match(noSecret.stderr, /credentials/);
  });
});
