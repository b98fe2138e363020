import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import fc from 'fast-check';
import { crc32c } from '../../shared/checksum.js';
import { isHandle } from '../../shared/handles.js';
import { rpcJson } from '../../shared/rpc.js';
import type { ListEntry } from '../../shared/wire.js';
import { waitLeaseOver, writeSyncedFile } from '../helpers/chunks.js';
import { clusterPerSuite } from '../helpers/cluster.js';
import { filesUnder } from '../helpers/files.js';
import { authHeaders, rawRequest, type RawAnswer, type RawRequest } from '../helpers/signed.js';

// Hostile input against a live master and chunkserver (invariant 6): several
// thousand generated requests, each signed with the cluster secret so it
// passes authentication and reaches the handlers, and each broken in one
// way: a field of the wrong type or out of range, a missing or an extra
// field, a body that is not JSON or not an object, a lying or torn
// Content-Length, an oversized body, a body that is not the signed one, the
// wrong method, a torn or lying data push, mutations out of order (data
// that was never pushed, a stale version). Read-only GETs get random
// queries. Afterwards: no answer was a 5xx, every process is alive, the
// namespace (listing, fsck, operation log) and every byte under each
// chunkserver's data directory are unchanged, and a normal put/get works.

const KiB = 1024;
const chunkSizeBytes = 256 * KiB;
const seed = Number(process.env.GFS_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const perTarget = Number(process.env.GFS_FUZZ_RUNS ?? 1500);

type Kind = 'path' | 'handle' | 'int' | 'num' | 'bool' | 'url' | 'id' | 'rack' | 'array' | 'string' | 'object';
interface Template {
  path: string;
  body: Record<string, unknown>;
  /** Field kinds; a field listed here and not in `optional` is required. */
  kinds: Record<string, Kind>;
  optional?: string[];
}

interface Sent {
  what: string;
  req: RawRequest;
  /** The answer may legitimately be a closed connection (torn uploads). */
  mayClose?: boolean;
}

/** Values that no schema field of `kind` accepts. */
function wrongFor(kind: Kind): fc.Arbitrary<unknown> {
  const nonString = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }));
  const nonNumber = fc.oneof(fc.string({ maxLength: 10 }), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }), fc.constant({}));
  switch (kind) {
    case 'path':
      return fc.oneof(
        nonString,
        fc.constant(''),
        fc.constantFrom('..', '/..', '/a/../b', '/a/./b', '//', '/a//b', 'relative/x', '/a/\u0000b', '/a\nb', '/\u002e\u002e/etc', '/' + 'x'.repeat(300), '/' + 'y/'.repeat(2100)),
        fc.string({ maxLength: 30 }).map((s) => `/${s}/../${s}`),
        fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !s.startsWith('/')),
      );
    case 'handle':
      return fc.oneof(
        nonString,
        fc.constantFrom('../../etc/passwd', '..%2F..%2Fetc', '0000000000000000/..', 'DEADBEEFDEADBEEF', '00000000000000001', '', '/etc/passwd', '.', '000000000000000g'),
        fc.string({ maxLength: 40 }).filter((s) => !isHandle(s)),
      );
    case 'int':
      return fc.oneof(nonNumber, fc.integer({ max: -1 }), fc.double({ noNaN: true, min: 0.1, max: 1e6 }).filter((d) => !Number.isInteger(d)), fc.constant(2 ** 60), fc.constant(1e300));
    case 'num':
      return fc.oneof(nonNumber, fc.double({ max: -0.001, noNaN: true, noDefaultInfinity: true }), fc.constant(1e12));
    case 'bool':
      return fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant(null), fc.constant([]), fc.constant({}));
    case 'url':
      return fc.oneof(nonString, fc.constantFrom('', 'not a url', 'http//x', '://', 'x'.repeat(500)), fc.string({ maxLength: 20 }).filter((s) => !/^[a-z]+:/i.test(s)));
    case 'id':
    case 'rack':
      return fc.oneof(nonString, fc.constantFrom('', '../x', 'a b', 'x/y', 'é', 'z'.repeat(65)));
    case 'array':
      return fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant(null), fc.constant({}), fc.boolean());
    case 'string':
      return fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.constant([]), fc.constant({}), fc.constant('x'.repeat(100_000)));
    case 'object':
      return fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }));
  }
}

function signed(method: string, target: string, body: Buffer | string | undefined, headers: Record<string, string> = {}, authBody?: Buffer | string): Record<string, string> {
  return { ...headers, ...authHeaders(method, target, authBody ?? body) };
}

function jsonReq(path: string, body: Buffer | string, extra: Partial<RawRequest> = {}, contentType = 'application/json'): RawRequest {
  return { method: 'POST', target: path, body, headers: signed('POST', path, body, { 'content-type': contentType }), ...extra };
}

/** One broken request for a JSON endpoint. */
function brokenJson(t: Template, limitBytes: number): fc.Arbitrary<Sent> {
  const fields = Object.keys(t.kinds);
  const required = fields.filter((f) => !(t.optional ?? []).includes(f));
  const valid = JSON.stringify(t.body);
  const arbs: fc.Arbitrary<Sent>[] = [
    // an extra field (every request schema is strict)
    fc.tuple(fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !fields.includes(k) && k !== '__proto__'), fc.jsonValue({ maxDepth: 2 })).map(([k, v]) => ({
      what: `${t.path}: extra field ${JSON.stringify(k)}`,
      req: jsonReq(t.path, JSON.stringify({ ...t.body, [k]: v ?? 1 })),
    })),
    // JSON that is not an object, or not JSON at all
    fc.oneof(fc.jsonValue({ maxDepth: 1 }).filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)).map((v) => JSON.stringify(v) ?? 'null'), fc.string({ maxLength: 200 }).map((s) => `{${s}`), fc.uint8Array({ maxLength: 300 }).map((a) => `\u0001${Buffer.from(a).toString('latin1')}`)).map((b) => ({
      what: `${t.path}: body ${JSON.stringify(b.slice(0, 40))}`,
      req: jsonReq(t.path, b),
    })),
    // a valid-looking body under the wrong content type
    fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream').map((ct) => ({ what: `${t.path}: content-type ${ct}`, req: jsonReq(t.path, valid, {}, ct) })),
    // a valid body that is not the signed one (tampered in flight)
    fc.string({ minLength: 1, maxLength: 20 }).map((s) => ({
      what: `${t.path}: body differs from the signed digest`,
      req: { method: 'POST', target: t.path, body: valid, headers: signed('POST', t.path, valid, { 'content-type': 'application/json' }, valid + s) },
    })),
    // Content-Length larger than what is sent: a torn upload
    fc.integer({ min: 0, max: Math.max(0, valid.length - 1) }).map((n) => ({ what: `${t.path}: torn after ${n} bytes`, req: jsonReq(t.path, valid, { contentLength: valid.length + 10, sendBytes: n }), mayClose: true })),
    // Content-Length smaller than the body: the server reads a truncated JSON document
    fc.integer({ min: 1, max: Math.max(1, valid.length - 1) }).map((n) => ({ what: `${t.path}: content-length ${n} of ${valid.length}`, req: jsonReq(t.path, valid, { contentLength: n }), mayClose: true })),
    // a declared size far above the endpoint's limit (nothing close to it is sent)
    fc.integer({ min: limitBytes + 1, max: limitBytes * 4 }).map((n) => ({ what: `${t.path}: declares ${n} bytes`, req: jsonReq(t.path, valid, { contentLength: n, sendBytes: valid.length }), mayClose: true })),
    // the wrong method
    fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH').map((m) => ({ what: `${m} ${t.path}`, req: { method: m, target: t.path, body: valid, headers: signed(m, t.path, valid, { 'content-type': 'application/json' }) } })),
  ];
  if (fields.length > 0)
    // one field of the wrong type or out of range
    arbs.push(fc.constantFrom(...fields).chain((f) => wrongFor(t.kinds[f]!).map((v) => ({ what: `${t.path}: ${f} = ${JSON.stringify(v)?.slice(0, 60)}`, req: jsonReq(t.path, JSON.stringify({ ...t.body, [f]: v })) }))));
  if (required.length > 0)
    arbs.push(fc.constantFrom(...required).map((f) => {
      const b = { ...t.body };
      delete b[f];
      return { what: `${t.path}: without ${f}`, req: jsonReq(t.path, JSON.stringify(b)) };
    }));
  if (limitBytes <= 1024 * 1024)
    arbs.push(fc.integer({ min: limitBytes + 1, max: limitBytes + 64 * KiB }).map((n) => {
      const body = JSON.stringify({ ...t.body, pad: 'p'.repeat(n) });
      return { what: `${t.path}: ${body.length}-byte body`, req: jsonReq(t.path, body) };
    }));
  return fc.oneof(...arbs);
}

/** Random queries for read-only GET endpoints. */
function anyQuery(path: string, keys: string[]): fc.Arbitrary<Sent> {
  const value = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('..', '/..', '../../etc/passwd', '%2e%2e%2f', '/', '0', '-1', '99999999999999999999', '0000000000000000'));
  return fc.array(fc.tuple(keys.length > 0 ? fc.oneof(fc.constantFrom(...keys), fc.string({ minLength: 1, maxLength: 8 })) : fc.string({ minLength: 1, maxLength: 8 }), value), { maxLength: 5 }).map((pairs) => {
    const qs = new URLSearchParams(pairs).toString();
    const target = qs ? `${path}?${qs}` : path;
    return { what: `GET ${target.slice(0, 80)}`, req: { method: 'GET', target, headers: signed('GET', target, undefined) } };
  });
}

async function runAll(base: string, sends: Sent[], concurrency = 8): Promise<{ s: Sent; a: RawAnswer }[]> {
  const out: { s: Sent; a: RawAnswer }[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < sends.length) {
        const s = sends[next++]!;
        out.push({ s, a: await rawRequest(base, { timeoutMs: 15_000, ...s.req }) });
      }
    }),
  );
  return out;
}

describe(`fuzzed requests to a live master and chunkserver (seed ${seed}; GFS_FUZZ_SEED to repeat)`, { timeout: 240_000 }, () => {
  // Every request is signed when it is generated, before any is sent: on a loaded machine sending
  // 3,000 takes longer than the default ±30 s signature window, and the late ones would be refused
  // as stale (401) instead of reaching the handlers this test fuzzes. The window is not what is tested here.
  const cluster = clusterPerSuite({ chunkservers: 2, chunkSizeBytes, leaseMs: 2_000, env: { GFS_AUTH_SKEW_MS: String(10 * 60_000) } });
  let handle = '';
  let version = 0;
  const content = randomBytes(chunkSizeBytes + 100 * KiB);

  before(async () => {
    ({ handle, version } = await writeSyncedFile(cluster().client(), cluster().masterUrl, '/d/f', content));
    // The write's lease runs out, so nothing but the requests under test could touch the chunk.
    await waitLeaseOver(cluster().masterUrl, cluster().chunkservers.map((c) => c!.url), handle);
  });

  async function picture() {
    const m = cluster().masterUrl;
    const list = await rpcJson<{ entries: ListEntry[] }>(m, '/api/list', undefined, { query: { path: '/', recursive: '1' } });
    const fsck = await rpcJson<{ files: unknown[]; summary: unknown }>(m, '/api/fsck', undefined, { query: { path: '/' } });
    const status = await rpcJson<{ files: number; oplog: { records: number; logSeq: number } }>(m, '/api/status');
    const trash = await rpcJson<{ entries: unknown[] }>(m, '/api/trash');
    const chunks = cluster().chunkservers.map((p) => filesUnder(join(p!.dir, 'chunks')));
    return { entries: list.entries, fsck, files: status.files, records: status.oplog.records, logSeq: status.oplog.logSeq, trash: trash.entries, chunks };
  }

  it('answers thousands of broken requests without a 5xx or a crash, and changes nothing', async () => {
    const before = await picture();
    assert.ok(Object.keys(before.chunks[0]!).length > 0, 'the chunkserver holds chunk files');
    const cs = cluster().chunkservers[0]!.url;
    const other = cluster().chunkservers[1]!;
    const inline = Buffer.from('fuzz').toString('base64');
    const masterTemplates: [Template, number][] = [
      [{ path: '/api/mkdir', body: { path: '/fz', parents: true }, kinds: { path: 'path', parents: 'bool' }, optional: ['parents'] }, 64 * KiB],
      [{ path: '/api/create', body: { path: '/fz', replication: 2, exclusive: true }, kinds: { path: 'path', replication: 'int', exclusive: 'bool' }, optional: ['replication', 'exclusive'] }, 64 * KiB],
      [{ path: '/api/delete', body: { path: '/d/f', recursive: true, now: true }, kinds: { path: 'path', recursive: 'bool', now: 'bool' }, optional: ['recursive', 'now'] }, 64 * KiB],
      [{ path: '/api/undelete', body: { path: '/d/f' }, kinds: { path: 'path' } }, 64 * KiB],
      [{ path: '/api/rename', body: { src: '/d/f', dst: '/fz' }, kinds: { src: 'path', dst: 'path' } }, 64 * KiB],
      [{ path: '/api/snapshot', body: { src: '/d', dst: '/fz' }, kinds: { src: 'path', dst: 'path' } }, 64 * KiB],
      [{ path: '/api/chunks', body: { path: '/d/f', startIndex: 0, count: 2 }, kinds: { path: 'path', startIndex: 'int', count: 'int' } }, 64 * KiB],
      [{ path: '/api/allocate', body: { path: '/d/f', index: 2 }, kinds: { path: 'path', index: 'int' } }, 64 * KiB],
      [{ path: '/api/lease', body: { handle, path: '/d/f', index: 0 }, kinds: { handle: 'handle', path: 'path', index: 'int' }, optional: ['path', 'index'] }, 64 * KiB],
      [{ path: '/api/checkpoint', body: {}, kinds: {} }, 64 * KiB],
      [{ path: '/api/cs/register', body: { id: 'csfz', url: 'http://127.0.0.1:9', rack: 'r', capacityBytes: 1, usedBytes: 0, freeBytes: 1, chunks: [] }, kinds: { id: 'id', url: 'url', rack: 'rack', capacityBytes: 'int', usedBytes: 'int', freeBytes: 'int', chunks: 'array' } }, 128 * 1024 * KiB],
      [{ path: '/api/cs/heartbeat', body: { id: 'cs0', url: cluster().chunkservers[0]!.url, rack: 'rack1', capacityBytes: 1, usedBytes: 0, freeBytes: 1, chunks: [], leaseExtensions: [], load: 0 }, kinds: { id: 'id', url: 'url', rack: 'rack', capacityBytes: 'int', usedBytes: 'int', freeBytes: 'int', chunks: 'array', leaseExtensions: 'array', load: 'num' } }, 128 * 1024 * KiB],
      [{ path: '/api/cs/lease-confirm', body: { id: 'cs0', handle }, kinds: { id: 'id', handle: 'handle' } }, 64 * KiB],
      [{ path: '/api/cs/report-corrupt', body: { id: 'cs0', handle }, kinds: { id: 'id', handle: 'handle' } }, 64 * KiB],
      [{ path: '/admin/faults', body: { rules: [{ from: '*', to: '*', drop: true }] }, kinds: { rules: 'array' } }, 1024 * KiB],
    ];
    const mutation = { handle, version, clientId: 'fz', requestId: 'r1' };
    const csTemplates: [Template, number][] = [
      [{ path: '/chunk/write', body: { ...mutation, offset: 0, inline, sizeBytes: 4, crc32c: crc32c(Buffer.from('fuzz')) }, kinds: { handle: 'handle', version: 'int', offset: 'int', inline: 'string', sizeBytes: 'int', crc32c: 'int', clientId: 'id', requestId: 'id' } }, 256 * KiB],
      [{ path: '/chunk/append', body: { ...mutation, inline, sizeBytes: 4, crc32c: crc32c(Buffer.from('fuzz')) }, kinds: { handle: 'handle', version: 'int', inline: 'string', sizeBytes: 'int', crc32c: 'int', clientId: 'id', requestId: 'id' } }, 256 * KiB],
      [{ path: '/chunk/apply', body: { handle, version, ops: [{ kind: 'write', serial: 1, offset: 0, inline, sizeBytes: 4 }] }, kinds: { handle: 'handle', version: 'int', ops: 'array' } }, 8 * 1024 * KiB],
      [{ path: '/chunk/sync', body: { handle, version, forward: false }, kinds: { handle: 'handle', version: 'int', forward: 'bool' }, optional: ['forward'] }, 64 * KiB],
      [{ path: '/chunk/create', body: { handle: '00000000000000ff', version: 1 }, kinds: { handle: 'handle', version: 'int' } }, 64 * KiB],
      [{ path: '/chunk/version', body: { handle, version: version + 1 }, kinds: { handle: 'handle', version: 'int' } }, 64 * KiB],
      [{ path: '/chunk/revoke', body: { handle }, kinds: { handle: 'handle' } }, 64 * KiB],
      [{ path: '/chunk/clone', body: { handle, version, sourceUrl: other.url, sourceId: other.id }, kinds: { handle: 'handle', version: 'int', sourceUrl: 'url', sourceId: 'id' } }, 64 * KiB],
      [{ path: '/chunk/copy', body: { handle, newHandle: '00000000000000fe', version }, kinds: { handle: 'handle', newHandle: 'handle', version: 'int' } }, 64 * KiB],
      [{ path: '/admin/faults', body: { rules: [{ from: '*', to: '*', drop: true }] }, kinds: { rules: 'array' } }, 1024 * KiB],
    ];
    // Well-formed but out of order: stale versions, data never pushed, ops for a replica that is not there.
    const outOfOrder: Sent[] = [
      { what: 'write at a stale version', req: jsonReq('/chunk/write', JSON.stringify({ ...mutation, version: version + 7, offset: 0, inline, sizeBytes: 4, crc32c: crc32c(Buffer.from('fuzz')) })) },
      { what: 'write of data never pushed', req: jsonReq('/chunk/write', JSON.stringify({ ...mutation, version: version + 7, offset: 0, dataId: 'never-pushed-xxxxxxxx', sizeBytes: 100_000, crc32c: 1 })) },
      { what: 'apply at a stale version', req: jsonReq('/chunk/apply', JSON.stringify({ handle, version: version + 3, ops: [{ kind: 'pad', serial: 9, toSizeBytes: chunkSizeBytes }] })) },
      { what: 'apply to a missing replica', req: jsonReq('/chunk/apply', JSON.stringify({ handle: '0000000000abcdef', version: 1, ops: [{ kind: 'write', serial: 2, offset: 0, inline, sizeBytes: 4 }] })) },
      { what: 'append with a wrong checksum at a stale version', req: jsonReq('/chunk/append', JSON.stringify({ ...mutation, version: version + 1, inline, sizeBytes: 4, crc32c: 12345 })) },
      { what: 'sync of a missing replica', req: jsonReq('/chunk/sync', JSON.stringify({ handle: '0000000000abcdef', version: 1 })) },
      { what: 'version on a missing replica', req: jsonReq('/chunk/version', JSON.stringify({ handle: '0000000000abcdef', version: 5 })) },
      { what: 'lease on an unknown handle', req: jsonReq('/api/lease', JSON.stringify({ handle: '0000000000abcdef' })) },
    ];
    // Data pushes: torn, lying, oversized, tampered, with broken chains.
    const push = fc.tuple(fc.string({ minLength: 1, maxLength: 30 }), fc.integer({ min: 1, max: 64 * KiB }), fc.integer({ min: 0, max: 6 })).map(([rawId, size, how]): Sent => {
      const id = encodeURIComponent(rawId.replace(/[^A-Za-z0-9_-]/g, '') || 'x');
      const target = `/push/${how === 5 ? encodeURIComponent('../' + rawId) : id}`;
      const body = randomBytes(size);
      const h = (extra: Record<string, string> = {}, authBody: Buffer = body) => signed('PUT', target, body, { 'content-type': 'application/octet-stream', ...extra }, authBody);
      switch (how) {
        case 0:
          return { what: `push torn after ${size >> 1} of ${size} bytes`, req: { method: 'PUT', target, body, headers: h(), sendBytes: size >> 1 }, mayClose: true };
        case 1:
          return { what: `push declaring ${size + 100} bytes, sending ${size}`, req: { method: 'PUT', target, body, headers: h(), contentLength: size + 100, sendBytes: size }, mayClose: true };
        case 2:
          return { what: 'push whose bytes are not the signed ones', req: { method: 'PUT', target, body, headers: h({}, randomBytes(size)) } };
        case 3:
          return { what: 'push larger than a chunk', req: { method: 'PUT', target, body, headers: h(), contentLength: chunkSizeBytes + 1, sendBytes: size }, mayClose: true };
        case 4:
          return { what: 'push with a broken chain header', req: { method: 'PUT', target, body, headers: h({ 'x-gfs-chain': rawId }) } };
        case 5:
          return { what: `push to a traversal data id ${target}`, req: { method: 'PUT', target, body, headers: h() } };
        default:
          return { what: 'push without a content-length', req: { method: 'PUT', target, body, headers: { ...h(), 'transfer-encoding': 'chunked' }, contentLength: null, sendBytes: 0 }, mayClose: true };
      }
    });

    const masterArb = fc.oneof(
      { weight: 6, arbitrary: fc.oneof(...masterTemplates.map(([t, l]) => brokenJson(t, l))) },
      { weight: 1, arbitrary: fc.oneof(anyQuery('/api/list', ['path', 'recursive']), anyQuery('/api/stat', ['path']), anyQuery('/api/fsck', ['path']), anyQuery('/api/status', []), anyQuery('/api/trash', []), anyQuery('/debug/leases', []), anyQuery('/api/nope', ['x'])) },
    );
    const csArb = fc.oneof(
      { weight: 6, arbitrary: fc.oneof(...csTemplates.map(([t, l]) => brokenJson(t, l))) },
      { weight: 2, arbitrary: push },
      { weight: 1, arbitrary: fc.oneof(anyQuery('/chunk/read', ['handle', 'offset', 'length', 'version']), anyQuery('/chunk/info', ['handle']), anyQuery('/debug/state', []), anyQuery('/chunk/' + encodeURIComponent('../../etc/passwd'), [])) },
    );
    const masterSends = [...fc.sample(masterArb, { numRuns: perTarget, seed }), ...outOfOrder.filter((s) => s.req.target.startsWith('/api'))];
    const csSends = [...fc.sample(csArb, { numRuns: perTarget, seed: seed + 1 }), ...outOfOrder.filter((s) => s.req.target.startsWith('/chunk'))];
    const t0 = Date.now();
    const results = [...(await runAll(cluster().masterUrl, masterSends)), ...(await runAll(cs, csSends))];
    const elapsedMs = Date.now() - t0;

    const fiveXX = results.filter((r) => r.a.status !== undefined && r.a.status >= 500);
    const silent = results.filter((r) => r.a.status === undefined && !r.s.mayClose);
    const notJson = results.filter((r) => r.a.status !== undefined && r.a.status >= 400 && !/^\{"error":/.test(r.a.body.trim()) && r.a.body.length > 0);
    const byStatus: Record<string, number> = {};
    for (const r of results) byStatus[String(r.a.status ?? 'closed')] = (byStatus[String(r.a.status ?? 'closed')] ?? 0) + 1;
    const show = (xs: typeof results) => xs.slice(0, 8).map((r) => `${r.s.what} -> ${r.a.status ?? 'closed'} ${r.a.body.slice(0, 160)}`).join('\n');
    process.stdout.write(`# fuzz: ${results.length} requests in ${elapsedMs} ms, answers ${JSON.stringify(byStatus)}\n`);
    assert.equal(fiveXX.length, 0, `5xx answers (seed ${seed}):\n${show(fiveXX)}`);
    assert.equal(silent.length, 0, `requests left unanswered (seed ${seed}):\n${show(silent)}`);
    assert.equal(notJson.length, 0, `error answers that are not {error, code} (seed ${seed}):\n${show(notJson)}`);
    assert.ok(results.filter((r) => r.a.status === 401).length < results.length / 3, 'most requests passed authentication and reached the handlers');

    for (const p of [cluster().master, ...cluster().chunkservers]) assert.ok(p!.proc.exitCode === null && p!.proc.signalCode === null, `${p!.name} is still running`);
    const afterPic = await picture();
    assert.deepEqual(afterPic.entries, before.entries, 'namespace unchanged');
    assert.deepEqual(afterPic.fsck, before.fsck, 'chunk map unchanged');
    assert.deepEqual({ files: afterPic.files, records: afterPic.records, logSeq: afterPic.logSeq, trash: afterPic.trash }, { files: before.files, records: before.records, logSeq: before.logSeq, trash: before.trash }, 'operation log unchanged');
    assert.deepEqual(afterPic.chunks, before.chunks, 'every file under the chunkservers\' data directories unchanged');
  });

  it('still serves a normal put and get afterwards', async () => {
    const c = cluster().client();
    const data = randomBytes(chunkSizeBytes + 12_345);
    await c.create('/after', { replication: 2 });
    await c.write('/after', 0, data);
    await c.sync('/after');
    assert.ok((await c.read('/after', 0, data.length)).equals(data), 'put/get round trip');
    assert.ok((await c.read('/d/f', 0, content.length)).equals(content), 'the seeded file reads back unchanged');
  });
});
