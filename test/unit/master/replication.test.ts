import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planClones, planExcess, planRebalance, type ChunkNeed } from '../../../master/core/replication.js';
import type { ServerView } from '../../../master/core/placement.js';

const server = (id: string, rack = 'r1'): ServerView => ({ id, rack, usedBytes: 0, capacityBytes: 1e12, freeBytes: 5e11, recentCreates: 0 });
const need = (handle: string, live: string[], extra: Partial<ChunkNeed> = {}): ChunkNeed => ({ handle, version: 2, goal: 3, live, leased: false, deleted: false, ...extra });
const opts = { chunkSizeBytes: 1024, recentCreatesLimit: 32, random: () => 0.5 };

test('clones go to chunks with fewest live replicas first, bounded cluster-wide and per server', () => {
  const servers = ['a', 'b', 'c', 'd', 'e'].map((id) => server(id));
  const needs = [need('0000000000000001', ['a', 'b']), need('0000000000000002', ['a']), need('0000000000000003', ['a', 'b', 'c'])];
  const orders = planClones(needs, servers, [], { maxClusterClones: 1, maxPerServerClones: 2 }, opts);
  assert.equal(orders.length, 1);
  assert.equal(orders[0]!.handle, '0000000000000002');
  assert.ok(!['a'].includes(orders[0]!.target));
  const many = planClones(needs, servers, [], { maxClusterClones: 10, maxPerServerClones: 1 }, opts);
  const busy = new Map<string, number>();
  for (const o of many) for (const id of [o.source, o.target]) busy.set(id, (busy.get(id) ?? 0) + 1);
  for (const [id, n] of busy) assert.ok(n <= 1, `${id} in ${n} clones`);
});

test('leased chunks are not cloned; excess replicas leave the server holding most, never the primary', () => {
  const servers = ['a', 'b', 'c', 'd'].map((id) => server(id));
  assert.equal(planClones([need('0000000000000001', ['a'], { leased: true })], servers, [], { maxClusterClones: 4, maxPerServerClones: 2 }, opts).length, 0);
  const needs = [need('0000000000000001', ['a', 'b', 'c', 'd']), need('0000000000000002', ['d', 'b', 'c']), need('0000000000000003', ['d', 'a', 'c'])];
  const ex = planExcess(needs, servers, (h) => (h === '0000000000000001' ? 'd' : undefined));
  assert.deepEqual(ex, [{ handle: '0000000000000001', server: 'c' }]);
  // A rebalancing move's source goes first, even when the new copy's server looks fuller.
  const fullD = ['a', 'b', 'c', 'd'].map((id) => ({ ...server(id), freeBytes: id === 'd' ? 0 : server(id).freeBytes }));
  const moved = planExcess([need('0000000000000004', ['a', 'b', 'c', 'd'])], fullD, () => undefined, (h) => (h === '0000000000000004' ? 'a' : undefined));
  assert.deepEqual(moved, [{ handle: '0000000000000004', server: 'a' }]);
  assert.deepEqual(planExcess([need('0000000000000004', ['a', 'b', 'c', 'd'])], fullD, () => undefined), [{ handle: '0000000000000004', server: 'd' }], 'without the move, the fullest goes');
});

test('rebalancing moves one idle, fully replicated chunk from the fullest server to the emptiest, only when nothing needs repair', () => {
  const servers = ['a', 'b', 'c', 'd'].map((id) => server(id));
  const needs: ChunkNeed[] = [];
  for (let i = 0; i < 12; i++) needs.push(need(i.toString(16).padStart(16, '0'), ['a', 'b', 'c']));
  const move = planRebalance(needs, servers, [], 4);
  assert.ok(move);
  assert.equal(move.target, 'd');
  assert.ok(['a', 'b', 'c'].includes(move.source));
  // Not while a clone runs, nor while a chunk is under-replicated, nor when balanced.
  assert.equal(planRebalance(needs, servers, [{ handle: needs[0]!.handle, source: 'a', target: 'd' }], 4), undefined);
  assert.equal(planRebalance([...needs, need('00000000000000ff', ['a'])], servers, [], 4), undefined);
  const balanced = needs.map((n, i) => ({ ...n, live: [['a', 'b', 'c'], ['b', 'c', 'd'], ['c', 'd', 'a'], ['d', 'a', 'b']][i % 4]! }));
  assert.equal(planRebalance(balanced, servers, [], 4), undefined);
  // Leased chunks are never moved.
  assert.equal(planRebalance(needs.map((n) => ({ ...n, leased: true })), servers, [], 4), undefined);
});

test('among chunks with equally few replicas, one blocking a client is cloned first, and a live file before a deleted one', () => {
  const servers = ['a', 'b', 'c', 'd'].map((id) => server(id));
  const limits = { maxClusterClones: 1, maxPerServerClones: 4 };
  const plain = need('0000000000000001', ['a', 'b']);
  const blocking = need('0000000000000009', ['a', 'b'], { blocking: true });
  assert.equal(planClones([plain, blocking], servers, [], limits, opts)[0]!.handle, '0000000000000009');
  // Fewer live replicas still wins over blocking.
  const worse = need('0000000000000005', ['c']);
  assert.equal(planClones([plain, blocking, worse], servers, [], limits, opts)[0]!.handle, '0000000000000005');
  const deleted = need('0000000000000002', ['a', 'b'], { deleted: true });
  assert.equal(planClones([deleted, need('0000000000000003', ['a', 'b'])], servers, [], limits, opts)[0]!.handle, '0000000000000003');
});
