import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { emptySha256, keyFromSecret, ReplayCache, sha256Hex, signWith, targetOf, verifyRequest } from '../../../shared/auth.js';
import { GfsError } from '../../../shared/errors.js';

// The signing scheme of shared/auth.ts without a network: what verifies,
// what does not, and the replay cache's bound.

const key = keyFromSecret(randomBytes(32).toString('hex'));
const skewMs = 30_000;

function req(headers: Record<string, string>, over: Partial<{ method: string; target: string }> = {}) {
  return { method: over.method ?? 'POST', target: over.target ?? '/api/mkdir', headers: { 'x-gfs-from': 'client', ...headers } };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return e instanceof GfsError ? e.code : 'not a GfsError';
  }
}

describe('request signatures', () => {
  const body = JSON.stringify({ path: '/x' });
  const sign = (o: { timeMs?: number; headers?: Record<string, string>; k?: Buffer } = {}) =>
    signWith(o.k ?? key, { method: 'POST', target: '/api/mkdir', bodySha256: sha256Hex(body), from: 'client', timeMs: o.timeMs, headers: o.headers });

  it('a fresh signature verifies once, then is a replay', () => {
    const replay = new ReplayCache(100, skewMs);
    const h = sign();
    const v = verifyRequest(req(h), { key, skewMs, replay });
    assert.equal(v.from, 'client');
    assert.equal(v.bodySha256, sha256Hex(body));
    assert.equal(code(() => verifyRequest(req(h), { key, skewMs, replay })), 'UNAUTHENTICATED');
  });

  it('refuses another key, method, target, sender, time outside the window, and changed x-gfs-* headers', () => {
    const replay = new ReplayCache(100, skewMs);
    assert.equal(code(() => verifyRequest(req(sign({ k: keyFromSecret('another secret, 16+ bytes') })), { key, skewMs, replay })), 'UNAUTHENTICATED');
    assert.equal(code(() => verifyRequest(req(sign(), { method: 'PUT' }), { key, skewMs, replay })), 'UNAUTHENTICATED');
    assert.equal(code(() => verifyRequest(req(sign(), { target: '/api/delete' }), { key, skewMs, replay })), 'UNAUTHENTICATED');
    assert.equal(code(() => verifyRequest(req({ ...sign(), 'x-gfs-from': 'master' }), { key, skewMs, replay })), 'UNAUTHENTICATED');
    assert.equal(code(() => verifyRequest(req(sign({ timeMs: Date.now() - skewMs - 1_000 })), { key, skewMs, replay })), 'UNAUTHENTICATED');
    assert.equal(code(() => verifyRequest(req(sign({ timeMs: Date.now() + skewMs + 1_000 })), { key, skewMs, replay })), 'UNAUTHENTICATED');
    const chained = sign({ headers: { 'x-gfs-chain': '[]' } });
    assert.equal(code(() => verifyRequest(req({ ...chained, 'x-gfs-chain': '["http://evil:1"]' }), { key, skewMs, replay })), 'UNAUTHENTICATED');
    assert.equal(code(() => verifyRequest(req({ ...chained, 'x-gfs-chain': '[]' }), { key, skewMs, replay })), undefined);
    assert.equal(code(() => verifyRequest(req({}), { key, skewMs, replay })), 'UNAUTHENTICATED');
    assert.equal(code(() => verifyRequest(req({ ...sign(), 'x-gfs-auth': 'not hex' }), { key, skewMs, replay })), 'UNAUTHENTICATED');
  });

  it('the replay cache stays bounded and refuses (retryably) what it can no longer tell apart', () => {
    const replay = new ReplayCache(10, skewMs);
    const now = Date.now();
    for (let i = 0; i < 50; i++) assert.equal(replay.check(`nonce-number-${String(i).padStart(4, '0')}`, now + i, now + i), 'ok');
    assert.ok(replay.size <= 10);
    // An evicted nonce replayed: its time is not above the floor, so it is refused.
    assert.equal(replay.check('nonce-number-0000', now, now + 50), 'evicted');
    assert.equal(replay.check('nonce-number-0049', now + 49, now + 50), 'replay');
    assert.equal(replay.check('nonce-number-new1', now + 60, now + 60), 'ok');
  });

  it('keys need a real secret; targets are path and query as sent', () => {
    assert.throws(() => keyFromSecret('short'));
    assert.equal(targetOf('http://127.0.0.1:7070/chunk/read?handle=00&offset=0'), '/chunk/read?handle=00&offset=0');
    assert.equal(emptySha256, sha256Hex(Buffer.alloc(0)));
  });
});
