import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LeaseTable } from '../../../chunkserver/leases.js';

// A lease handed over with the grant (chunkserver/leases.ts install): timed
// from when the version order that named this server arrived, never from the
// hand-over itself, and refused without that order or after a revocation.

function table() {
  let now = 1_000;
  const t = new LeaseTable({
    clock: () => now,
    driftFraction: 0.01,
    minRemainingMs: 100,
    confirm: () => Promise.reject(new Error('no master in this test')),
  });
  return { t, advance: (ms: number) => (now += ms) };
}

const secondaries = [{ id: 'cs-b', url: 'http://127.0.0.1:1', rack: 'r' }];

test('a handed-over lease runs from the version order, shortened by the drift bound', async () => {
  const { t, advance } = table();
  t.offered('00000000000000aa', 5);
  advance(300); // the bump, its log records and the grant took a while
  assert.equal(t.install('00000000000000aa', 5, secondaries, 10_000), true);
  const held = t.get('00000000000000aa')!;
  assert.equal(held.expiresAtMs, 1_000 + 10_000 * 0.99 - 1, 'counted from the order (t=1000), not the hand-over (t=1300)');
  assert.deepEqual(held.secondaries, secondaries);
  // Held: mutations need no confirmation.
  assert.equal((await t.ensure('00000000000000aa', 5)).version, 5);
  t.check('00000000000000aa', 5);
});

test('no lease without a matching order, after a revocation, or once it has run out', () => {
  const { t, advance } = table();
  assert.equal(t.install('00000000000000aa', 5, secondaries, 10_000), false, 'never named primary');
  t.offered('00000000000000aa', 5);
  assert.equal(t.install('00000000000000aa', 6, secondaries, 10_000), false, 'another version');
  assert.equal(t.install('00000000000000aa', 5, secondaries, 10_000), false, 'an offer is used once');
  t.offered('00000000000000bb', 2);
  t.revoke('00000000000000bb');
  assert.equal(t.install('00000000000000bb', 2, secondaries, 10_000), false, 'revoked since the order');
  t.offered('00000000000000cc', 1);
  advance(5_000);
  assert.equal(t.install('00000000000000cc', 1, secondaries, 5_000), false, 'expired (or nearly) by the time it arrived');
  assert.equal(t.get('00000000000000cc'), undefined);
});
