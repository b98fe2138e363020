import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { z } from 'zod';
import { reloadSecret } from '../../../shared/auth.js';
import { GfsError } from '../../../shared/errors.js';
import { setFaultRules } from '../../../shared/fault.js';
import { addGuard, admissionOf, finishApp, jsonRoute, listen, makeApp } from '../../../shared/http.js';
import type { Admission } from '../../../shared/admission.js';
import { LeanRouter } from '../../../shared/lean-router.js';
import { makeLogger } from '../../../shared/log.js';
import { authHeaders, rawRequest, type RawAnswer } from '../../helpers/signed.js';

// The lean router (shared/lean-router.ts) on an in-process server made like the daemons' (makeApp,
// a guard, finishApp, listen): it serves its routes with the same checks and answers as express, and
// leaves every other request to express untouched. A request to a lean route sent with content type
// 'application/json; charset=utf-8' goes the express way, which lets each refusal be compared.

const jsonType = 'application/json';
const expressJsonType = 'application/json; charset=utf-8';

let server: Server;
let base: string;
let lean: LeanRouter;
let admission: Admission;

before(async () => {
  process.env.GFS_SECRET = randomBytes(32).toString('hex');
  reloadSecret();
  const log = makeLogger('lean-test', { format: 'json', destination: { write: () => undefined } });
  const app = makeApp({ names: () => ['lean-node'], log, jsonLimits: { '/echo': 64 } });
  addGuard(app, (req) => {
    if (req.headers['x-gfs-epoch'] === '1') throw new GfsError('STALE_EPOCH', 'old epoch');
  });
  lean = new LeanRouter(app);
  admission = admissionOf(app);
  lean.json('POST', '/echo', { body: z.object({ x: z.number() }).strict() }, ({ body }) => ({ got: body.x }));
  lean.json('GET', '/q', { query: z.object({ path: z.string() }).strict() }, ({ query }) => ({ path: query.path }));
  lean.binary('/bin', { headers: z.object({ 'x-gfs-n': z.string() }).passthrough(), limitBytes: 16 }, ({ body, headers }) => ({ len: body.length, n: headers['x-gfs-n'] }));
  app.get('/plain', jsonRoute({}, () => ({ plain: true })));
  finishApp(app, log);
  const l = await listen(app, 0, '127.0.0.1', lean);
  server = l.server;
  base = `http://127.0.0.1:${l.port}`;
});

after(async () => {
  setFaultRules([]);
  await new Promise<void>((r) => server.close(() => r()));
  server.closeAllConnections();
  delete process.env.GFS_SECRET;
  reloadSecret();
});

/** A signed POST of a JSON text (the signature never covers the content type). */
function post(target: string, text: string, o: { type?: string; key?: Buffer; bodySha256?: string; headers?: Record<string, string>; from?: string } = {}): Promise<RawAnswer> {
  const headers = { 'content-type': o.type ?? jsonType, ...authHeaders('POST', target, text, { key: o.key, bodySha256: o.bodySha256, headers: o.headers, from: o.from }) };
  return rawRequest(base, { method: 'POST', target, headers, body: text });
}

/** Lean-served count across one call. */
async function counted<T>(fn: () => Promise<T>): Promise<{ out: T; lean: number }> {
  const n0 = lean.served;
  const out = await fn();
  return { out, lean: lean.served - n0 };
}

const bodyOf = (a: RawAnswer): Record<string, unknown> => JSON.parse(a.body) as Record<string, unknown>;

describe('lean router', () => {
  it('serves its routes: JSON body, query, binary body', async () => {
    const a = await counted(() => post('/echo', '{"x":7}'));
    assert.equal(a.lean, 1);
    assert.equal(a.out.status, 200);
    assert.deepEqual(bodyOf(a.out), { got: 7 });
    assert.match(a.out.headers, /content-type: application\/json; charset=utf-8/i);
    const q = await counted(() => rawRequest(base, { method: 'GET', target: '/q?path=%2Fa%20b', headers: authHeaders('GET', '/q?path=%2Fa%20b') }));
    assert.equal(q.lean, 1);
    assert.deepEqual(bodyOf(q.out), { path: '/a b' });
    const bin = Buffer.from('0123456789');
    const b = await counted(() => rawRequest(base, { method: 'POST', target: '/bin', headers: { 'content-type': 'application/octet-stream', ...authHeaders('POST', '/bin', bin, { headers: { 'x-gfs-n': '5' } }) }, body: bin }));
    assert.equal(b.lean, 1);
    assert.deepEqual(bodyOf(b.out), { len: 10, n: '5' });
  });

  it('refuses a bad signature with 401 and closes, counting it against the address', async () => {
    const failed0 = admission.stats.unauthenticated;
    const a = await counted(() => post('/echo', '{"x":1}', { key: randomBytes(32) }));
    assert.equal(a.lean, 1);
    assert.equal(admission.stats.unauthenticated, failed0 + 1);
    assert.equal(a.out.status, 401);
    assert.equal(bodyOf(a.out).code, 'UNAUTHENTICATED');
    assert.match(a.out.headers, /www-authenticate: GFS1-HMAC-SHA256/i);
    assert.match(a.out.headers, /connection: close/i);
    const unsigned = await rawRequest(base, { method: 'POST', target: '/echo', headers: { 'content-type': jsonType }, body: '{"x":1}' });
    assert.equal(unsigned.status, 401);
    assert.match(String(bodyOf(unsigned).error), /missing credentials/);
  });

  it('shares the nonce cache with express: a request replayed either way is refused', async () => {
    const text = '{"x":2}';
    const headers = { 'content-type': jsonType, ...authHeaders('POST', '/echo', text) };
    const first = await rawRequest(base, { method: 'POST', target: '/echo', headers, body: text });
    assert.equal(first.status, 200);
    const again = await rawRequest(base, { method: 'POST', target: '/echo', headers, body: text });
    assert.equal(again.status, 401);
    assert.match(String(bodyOf(again).error), /replayed/);
    // The same signed request with another content type goes to express, which must know the nonce too.
    const viaExpress = await counted(() => rawRequest(base, { method: 'POST', target: '/echo', headers: { ...headers, 'content-type': expressJsonType }, body: text }));
    assert.equal(viaExpress.lean, 0);
    assert.equal(viaExpress.out.status, 401);
    assert.match(String(bodyOf(viaExpress.out).error), /replayed/);
  });

  it('answers every refusal as express does: digest, size, JSON, schema, guard', async () => {
    const cases: { name: string; text: string; o?: Parameters<typeof post>[2]; status: number; code: string }[] = [
      { name: 'body not the signed one', text: '{"x":3}', o: { bodySha256: 'a'.repeat(64) }, status: 401, code: 'UNAUTHENTICATED' },
      { name: 'body over the limit', text: JSON.stringify({ x: 1, pad: 'p'.repeat(100) }), status: 413, code: 'PAYLOAD_TOO_LARGE' },
      { name: 'malformed JSON', text: '{"x":', status: 400, code: 'BAD_REQUEST' },
      { name: 'not an object', text: '"x"', status: 400, code: 'BAD_REQUEST' },
      { name: 'schema', text: '{"x":"no"}', status: 400, code: 'BAD_REQUEST' },
      { name: 'guard', text: '{"x":4}', o: { headers: { 'x-gfs-epoch': '1' } }, status: 409, code: 'STALE_EPOCH' },
    ];
    for (const c of cases) {
      const l = await counted(() => post('/echo', c.text, c.o));
      const e = await counted(() => post('/echo', c.text, { ...c.o, type: expressJsonType }));
      assert.equal(l.lean, 1, c.name);
      assert.equal(e.lean, 0, c.name);
      assert.equal(l.out.status, c.status, `${c.name}: ${l.out.body}`);
      assert.equal(e.out.status, c.status, `${c.name} (express): ${e.out.body}`);
      assert.deepEqual(bodyOf(l.out), bodyOf(e.out), c.name);
      assert.equal(bodyOf(l.out).code, c.code, c.name);
    }
  });

  it('refuses a binary body over its limit with 413, and one without a length with 411', async () => {
    const big = Buffer.alloc(17, 1);
    const a = await counted(() => rawRequest(base, { method: 'POST', target: '/bin', headers: { 'content-type': 'application/octet-stream', ...authHeaders('POST', '/bin', big, { headers: { 'x-gfs-n': '1' } }) }, body: big }));
    assert.equal(a.lean, 1);
    assert.equal(a.out.status, 413);
    assert.equal(bodyOf(a.out).code, 'PAYLOAD_TOO_LARGE');
    const small = Buffer.alloc(4, 1);
    const b = await rawRequest(base, { method: 'POST', target: '/bin', headers: { 'content-type': 'application/octet-stream', ...authHeaders('POST', '/bin', small, { headers: { 'x-gfs-n': '1' } }) }, body: small, contentLength: null, sendBytes: 0 });
    assert.equal(b.status, 411);
  });

  it('leaves unknown routes, other methods and express routes to express', async () => {
    const unknown = await counted(() => post('/nowhere', '{}'));
    assert.equal(unknown.lean, 0);
    assert.equal(unknown.out.status, 404);
    assert.equal(bodyOf(unknown.out).code, 'NOT_FOUND');
    const plain = await counted(() => rawRequest(base, { method: 'GET', target: '/plain', headers: authHeaders('GET', '/plain') }));
    assert.equal(plain.lean, 0);
    assert.deepEqual(bodyOf(plain.out), { plain: true });
    // A trailing slash: express's non-strict routing still finds /echo, as it always did.
    const slash = await counted(() => post('/echo/', '{"x":5}'));
    assert.equal(slash.lean, 0);
    assert.deepEqual(bodyOf(slash.out), { got: 5 });
    const health = await counted(() => rawRequest(base, { method: 'GET', target: '/healthz' }));
    assert.equal(health.lean, 0);
    assert.equal(health.out.status, 200);
  });

  it('applies the fault layer: a dropped sender gets no answer', async () => {
    setFaultRules([{ from: 'cut-off', to: 'lean-node', drop: true }]);
    try {
      const a = await counted(() => post('/echo', '{"x":6}', { from: 'cut-off' }));
      assert.equal(a.lean, 1);
      assert.equal(a.out.status, undefined);
    } finally {
      setFaultRules([]);
    }
    const b = await post('/echo', '{"x":6}', { from: 'cut-off' });
    assert.equal(b.status, 200);
  });
});
