import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocationCache, covers, type CachedFile } from '../../../client/location-cache.js';

const entry = (o: Partial<CachedFile> = {}): CachedFile => ({ chunkSizeBytes: 100, chunkCount: 3, sizeBytes: 250, chunks: new Map(), fetchedAtMs: 1_000, ...o });

test('an entry is trusted for ttlMs after it was fetched, then forgotten', () => {
  const c = new LocationCache(500, 10);
  c.set('/a', entry());
  assert.ok(c.get('/a', 1_499));
  assert.equal(c.get('/a', 1_500), undefined);
  assert.equal(c.size, 0, 'an expired entry is dropped when found');
});

test('bounded in files: the least recently used goes first', () => {
  const c = new LocationCache(1e9, 2);
  c.set('/a', entry());
  c.set('/b', entry());
  assert.ok(c.get('/a', 1_000)); // /b is now the least recently used
  c.set('/c', entry());
  assert.equal(c.size, 2);
  assert.ok(c.get('/a', 1_000));
  assert.equal(c.get('/b', 1_000), undefined);
  assert.ok(c.get('/c', 1_000));
  assert.throws(() => new LocationCache(1, 0), RangeError);
});

test('own writes grow the known size and chunk count, never shrink them', () => {
  const c = new LocationCache(1e9, 2);
  c.set('/a', entry());
  c.grew('/a', 4, 20);
  assert.deepEqual([c.get('/a', 1_000)!.sizeBytes, c.get('/a', 1_000)!.chunkCount], [420, 5]);
  c.grew('/a', 0, 10);
  assert.deepEqual([c.get('/a', 1_000)!.sizeBytes, c.get('/a', 1_000)!.chunkCount], [420, 5]);
  c.grew('/none', 0, 10);
  assert.equal(c.get('/none', 1_000), undefined);
});

test('covers: every chunk the file has in the range must be there', () => {
  const loc = (index: number) => ({ index, handle: `h${index}`, version: 1, replicas: [] });
  const f = entry({ chunks: new Map([[0, loc(0)], [2, loc(2)]]) });
  assert.ok(covers(f, 0, 1));
  assert.ok(!covers(f, 0, 2));
  assert.ok(covers(f, 2, 100), 'chunks past the end are not wanted');
});
