import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseReplicas, rankServers, type ServerView, type PlacementOptions } from '../../../master/core/placement.js';
import { rng } from '../../../shared/rng.js';

const GiB = 1024 ** 3;
const chunk = 64 * 1024 * 1024;

function server(id: string, rack: string, usedFraction = 0.5, recentCreates = 0, capacityBytes = 100 * GiB): ServerView {
  const usedBytes = Math.round(capacityBytes * usedFraction);
  return { id, rack, usedBytes, capacityBytes, freeBytes: capacityBytes - usedBytes, recentCreates };
}

function opts(seed = 1, over: Partial<PlacementOptions> = {}): PlacementOptions {
  return { chunkSizeBytes: chunk, recentCreatesLimit: 10, random: rng(seed), ...over };
}

const rackOf = (servers: ServerView[], id: string) => servers.find((s) => s.id === id)!.rack;

test('spreads across racks when possible: 3 racks, 6 servers -> 3 distinct racks', () => {
  const servers = [server('a1', 'A'), server('a2', 'A'), server('b1', 'B'), server('b2', 'B'), server('c1', 'C'), server('c2', 'C')];
  for (let seed = 1; seed <= 200; seed++) {
    const ids = chooseReplicas(servers, 3, new Set(), opts(seed));
    assert.equal(ids.length, 3);
    assert.equal(new Set(ids).size, 3);
    assert.equal(new Set(ids.map((id) => rackOf(servers, id))).size, 3, `seed ${seed}: ${ids}`);
  }
});

test('spreads across racks even when one rack has the best servers', () => {
  const servers = [server('a1', 'A', 0.1), server('a2', 'A', 0.1), server('a3', 'A', 0.1), server('b1', 'B', 0.3), server('c1', 'C', 0.3)];
  const ids = chooseReplicas(servers, 3, new Set(), opts());
  assert.deepEqual(new Set(ids.map((id) => rackOf(servers, id))), new Set(['A', 'B', 'C']));
});

test('fills from the same rack when racks run out', () => {
  const servers = [server('a1', 'A'), server('a2', 'A'), server('a3', 'A'), server('b1', 'B')];
  for (let seed = 1; seed <= 50; seed++) {
    const ids = chooseReplicas(servers, 3, new Set(), opts(seed));
    assert.equal(ids.length, 3);
    assert.equal(new Set(ids).size, 3);
    assert.ok(ids.includes('b1'), 'the only server of rack B is used');
  }
  // one rack only
  const single = [server('x1', 'X'), server('x2', 'X'), server('x3', 'X')];
  assert.deepEqual(new Set(chooseReplicas(single, 3, new Set(), opts())), new Set(['x1', 'x2', 'x3']));
  // fewer servers than wanted: all of them, no duplicates
  assert.deepEqual(new Set(chooseReplicas(single, 5, new Set(), opts())), new Set(['x1', 'x2', 'x3']));
  assert.deepEqual(chooseReplicas([], 3, new Set(), opts()), []);
});

test('re-replication: racks already holding a replica are used last', () => {
  const servers = [server('a1', 'A'), server('a2', 'A'), server('b1', 'B'), server('c1', 'C')];
  for (let seed = 1; seed <= 50; seed++) {
    const ids = chooseReplicas(servers, 1, new Set(['a1', 'b1']), opts(seed), new Set(['A', 'B']));
    assert.deepEqual(ids, ['c1']);
  }
});

test('excludes the given ids and servers without room for a chunk', () => {
  const servers = [
    server('a1', 'A'),
    server('b1', 'B'),
    { id: 'full', rack: 'C', usedBytes: 100 * GiB - chunk + 1, capacityBytes: 100 * GiB, freeBytes: chunk - 1, recentCreates: 0 },
    { id: 'exact', rack: 'D', usedBytes: 100 * GiB - chunk, capacityBytes: 100 * GiB, freeBytes: chunk, recentCreates: 0 },
    server('e1', 'E'),
  ];
  for (let seed = 1; seed <= 50; seed++) {
    const ids = chooseReplicas(servers, 5, new Set(['e1']), opts(seed));
    assert.deepEqual(new Set(ids), new Set(['a1', 'b1', 'exact']));
  }
  assert.deepEqual(rankServers(servers, new Set(['a1', 'b1', 'e1', 'exact']), opts()), []);
});

test('prefers servers below average utilization', () => {
  const servers = [server('hot1', 'A', 0.9), server('hot2', 'B', 0.9), server('cold1', 'C', 0.1), server('cold2', 'D', 0.1), server('mid', 'E', 0.5)];
  for (let seed = 1; seed <= 100; seed++) {
    const ranked = rankServers(servers, new Set(), opts(seed)).map((s) => s.id);
    // average is 0.5: the two hot ones (above avg + 5 %) come last
    assert.deepEqual(new Set(ranked.slice(3)), new Set(['hot1', 'hot2']));
    const ids = chooseReplicas(servers, 3, new Set(), opts(seed));
    assert.deepEqual(new Set(ids), new Set(['cold1', 'cold2', 'mid']));
  }
});

test('avoids servers above recentCreatesLimit unless nothing else fits', () => {
  const servers = [server('busy1', 'A', 0.1, 10), server('busy2', 'B', 0.1, 50), server('calm1', 'C', 0.5, 3), server('calm2', 'D', 0.5, 9)];
  for (let seed = 1; seed <= 100; seed++) {
    const ranked = rankServers(servers, new Set(), opts(seed)).map((s) => s.id);
    assert.deepEqual(ranked.slice(0, 2), ['calm1', 'calm2'], 'fewer recent creations first among equals');
    assert.deepEqual(new Set(ranked.slice(2)), new Set(['busy1', 'busy2']));
    assert.deepEqual(new Set(chooseReplicas(servers, 2, new Set(), opts(seed))), new Set(['calm1', 'calm2']));
  }
  // nothing else fits: busy servers are still used rather than failing
  const onlyBusy = servers.filter((s) => s.id.startsWith('busy'));
  assert.deepEqual(new Set(chooseReplicas(onlyBusy, 3, new Set(), opts())), new Set(['busy1', 'busy2']));
  assert.deepEqual(new Set(chooseReplicas(servers, 4, new Set(), opts())), new Set(servers.map((s) => s.id)));
});

test('deterministic with an injected random; ties are broken by it', () => {
  const servers = Array.from({ length: 12 }, (_, i) => server(`s${i}`, `r${i % 4}`));
  const runs = new Set<string>();
  for (let seed = 1; seed <= 30; seed++) {
    const a = chooseReplicas(servers, 3, new Set(), opts(seed));
    const b = chooseReplicas(servers, 3, new Set(), opts(seed));
    assert.deepEqual(a, b);
    runs.add(a.join(','));
  }
  assert.ok(runs.size > 5, 'different seeds spread the load over different servers');
  // a constant random keeps the input order among equals
  const ranked = rankServers(servers, new Set(), { chunkSizeBytes: chunk, recentCreatesLimit: 10, random: () => 0.5 });
  assert.deepEqual(ranked.map((s) => s.id), servers.map((s) => s.id));
});
