import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planHealing } from '../../../master/core/healing.js';
import { attention, classifyChunk, fsck } from '../../../master/core/health.js';
import { CoreFixture } from './core-fixture.js';

// One health classification for fsck and the status page, and one healing
// tick's plan, from the core state alone.

const nowMs = 10_000;

test('classifyChunk: missing, under-, over-replicated, healthy', () => {
  const table: [number, number, string][] = [
    [0, 3, 'missing'],
    [0, 1, 'missing'],
    [1, 3, 'under-replicated'],
    [2, 3, 'under-replicated'],
    [3, 3, 'healthy'],
    [4, 3, 'over-replicated'],
    [1, 1, 'healthy'],
  ];
  for (const [live, goal, want] of table) assert.equal(classifyChunk(live, goal), want, `${live} live of ${goal}`);
});

test('fsck and the attention lists classify the same chunks the same way', () => {
  const f = new CoreFixture(['a', 'b', 'c', 'd']);
  const [h1, h2, h3, h4] = f.file('/f', 4, 3);
  f.beat(nowMs);
  f.hold(h1!, ['a', 'b', 'c']);
  f.hold(h2!, ['a']);
  f.hold(h4!, ['a', 'b', 'c', 'd']);
  f.st.markCorrupt('d', h3!);
  const r = fsck(f.st, f.ns, '/', nowMs);
  assert.deepEqual(
    r.files[0]!.chunks.map((c) => c.state),
    ['healthy', 'under-replicated', 'missing', 'over-replicated'],
  );
  const a = attention(f.st, f.ns, 10, nowMs);
  assert.deepEqual(
    { healthy: a.counts.healthy, under: a.counts.underReplicated, missing: a.counts.missing, over: a.counts.overReplicated, corrupt: a.counts.corrupt },
    { healthy: r.summary.healthy, under: r.summary.underReplicated, missing: r.summary.missing, over: r.summary.overReplicated, corrupt: r.summary.corrupt },
  );
  assert.deepEqual(a.underReplicated.map((u) => u.handle), [h2]);
});

test('healing plan: clones the endangered chunk, asks a live lease back before cloning, trims an excess replica', () => {
  const f = new CoreFixture(['a', 'b', 'c', 'd']);
  const [h1, h2, h3] = f.file('/f', 3, 3);
  f.beat(nowMs);
  f.hold(h1!, ['a']); // one replica of three: clone
  f.hold(h2!, ['a', 'b']); // two of three, but leased: revoke first
  f.st.leases.set(h2!, { primary: 'a', secondaries: ['b'], version: 1, expiresAtMs: nowMs + 5_000 });
  f.hold(h3!, ['a', 'b', 'c', 'd']); // four of three: trim one
  const plan = planHealing(f.st, f.ns, nowMs, { chunkSizeBytes: 1 << 20, limits: { maxClusterClones: 8, maxPerServerClones: 4 }, rebalanceMinImbalance: 1_000, recentCreatesLimit: 32 });
  assert.ok(plan.clones.some((c) => c.handle === h1 && c.source === 'a'), 'the single-replica chunk is cloned');
  assert.ok(!plan.clones.some((c) => c.handle === h2), 'a leased chunk is not cloned');
  assert.deepEqual(plan.revokes, [h2]);
  assert.equal(plan.excess.length, 1);
  assert.equal(plan.excess[0]!.handle, h3);
  assert.equal(f.st.pendingDeletes.get(plan.excess[0]!.server)?.has(h3!), true, 'the excess replica is ordered deleted');
  assert.equal(plan.rebalance, undefined, 'no rebalancing while something needs repair');
});

test('planHealing: a chunk never written that no live server holds is placed afresh; a written one is missing, not re-created', () => {
  const f = new CoreFixture(['a', 'b', 'c']);
  f.beat(nowMs);
  const [lost] = f.file('/lost', 1); // allocated (v1), its replicas never created
  const [held] = f.file('/held', 1);
  f.hold(held!, ['a']); // v1 on one server: cloned, not placed
  const [written] = f.file('/written', 1);
  f.apply({ op: 'version', handle: written!, version: 2, pendingFrom: 1 });
  f.apply({ op: 'bumped', handle: written!, version: 2, servers: ['a', 'b', 'c'] }); // leased once: may hold data
  const [placing] = f.file('/placing', 1);
  f.st.placing.add(placing!); // its allocation is creating replicas right now
  const [gone] = f.file('/gone', 1);
  f.apply(f.ns.checkTrash('/gone', '/.trash/1/gone', false, 3));
  const o = { chunkSizeBytes: 1 << 20, limits: { maxClusterClones: 8, maxPerServerClones: 4 }, rebalanceMinImbalance: 1_000, recentCreatesLimit: 32 };
  const plan = planHealing(f.st, f.ns, nowMs, o);
  assert.deepEqual(plan.placements, [{ handle: lost!, goal: 3 }]);
  assert.ok(!plan.placements.some((p) => [held, written, placing, gone].includes(p.handle)));
  assert.ok(plan.clones.some((c) => c.handle === held), 'a v1 chunk with a live replica is cloned as usual');
  // Once a server holds it, nothing more is placed.
  f.hold(lost!, ['b']);
  assert.deepEqual(planHealing(f.st, f.ns, nowMs, o).placements, []);
});
