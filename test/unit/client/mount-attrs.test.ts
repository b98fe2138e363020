import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GfsClient } from '../../../client/client.js';
import { AttrCache } from '../../../client/mount-attrs.js';
import type { FileInfo, ListEntry } from '../../../shared/wire.js';

// The mount's attribute cache: a listing fills it (ls -l needs no stat per
// entry), except where a change could hide behind the listing: a change made
// while the listing was under way, a path this mount changed lately, or a tree
// it renamed.

function fakeClient(sizes: Map<string, number>): { client: GfsClient; stats: string[] } {
  const stats: string[] = [];
  const client = {
    stat: async (path: string): Promise<FileInfo> => {
      stats.push(path);
      return { path, type: 'file', sizeBytes: sizes.get(path) ?? 0, replication: 3, chunkCount: 1, chunkSizeBytes: 1 << 20, mtimeMs: 1, ctimeMs: 1 };
    },
  } as unknown as GfsClient;
  return { client, stats };
}

const entry = (path: string, sizeBytes: number, chunkCount = 0): ListEntry => ({ name: path.slice(path.lastIndexOf('/') + 1), path, type: 'file', sizeBytes, replication: 3, chunkCount, mtimeMs: 1, ctimeMs: 1 });

test('a listing fills the cache; changes this mount made keep coming from stats', async () => {
  const sizes = new Map([['/d/a', 10], ['/d/b', 20], ['/d/c', 30], ['/e/x', 5]]);
  const { client, stats } = fakeClient(sizes);
  const cache = new AttrCache(client, 60_000);

  cache.forget('/d/b'); // this mount wrote /d/b: the listing's 2 may be older than the write
  const g = cache.generation;
  cache.fill([entry('/d/a', 1), entry('/d/b', 2), entry('/d/c', 3)], g);
  assert.equal((await cache.stat('/d/a')).sizeBytes, 1, 'from the listing');
  assert.equal((await cache.stat('/d/c')).sizeBytes, 3, 'from the listing');
  assert.equal((await cache.stat('/d/b')).sizeBytes, 20, 'from a stat');
  assert.deepEqual(stats, ['/d/b']);

  // A change between reading the generation and filling voids the fill.
  const g2 = cache.generation;
  cache.forget('/zzz');
  cache.fill([entry('/e/x', 99)], g2);
  assert.equal((await cache.stat('/e/x')).sizeBytes, 5);

  // A renamed tree: nothing under it comes from a listing for a while.
  cache.forgetTrees(['/d']);
  cache.fill([entry('/d/a', 1), entry('/e/x', 6)], cache.generation);
  assert.equal((await cache.stat('/d/a')).sizeBytes, 10, 'under a renamed tree: from a stat');
  assert.equal((await cache.stat('/e/x')).sizeBytes, 6, 'outside the renamed tree: from the listing');
  assert.equal(cache.counts.fromListing, 2 + 0 + 1);

  // A file with data: its listed size comes from heartbeats and may lag another client's write.
  cache.fill([entry('/g/data', 1, 1)], cache.generation);
  sizes.set('/g/data', 3000);
  assert.equal((await cache.stat('/g/data')).sizeBytes, 3000, 'a file with chunks comes from a stat');
});

test('appends made through this mount grow the cached size without a stat each; a stat under way cannot undo them', async () => {
  const sizes = new Map([['/log', 100]]);
  const { client, stats } = fakeClient(sizes);
  const cache = new AttrCache(client, 60_000);
  assert.equal((await cache.stat('/log')).sizeBytes, 100);
  cache.appended('/log', 1124);
  cache.appended('/log', 600); // another append's record landed earlier in the file: the size never goes back
  assert.equal((await cache.stat('/log')).sizeBytes, 1124);
  assert.deepEqual(stats, ['/log'], 'no stat per append');
  // Nothing cached: the next stat asks, and one that started before an append is not kept.
  const fresh = new AttrCache(client, 60_000);
  const before = fresh.stat('/log');
  fresh.appended('/log', 5000);
  await before;
  sizes.set('/log', 5000);
  assert.equal((await fresh.stat('/log')).sizeBytes, 5000, 'asked again, not the answer from before the append');
  // A listing right after an append is not believed for the appended file.
  fresh.fill([entry('/log', 1)], fresh.generation);
  assert.equal((await fresh.stat('/log')).sizeBytes, 5000);
});

test('a file this mount created is cached from the create answer and may be filled from listings; one it wrote may not', async () => {
  const { client, stats } = fakeClient(new Map([['/n/w', 7]]));
  const cache = new AttrCache(client, 60_000);
  const info = (path: string): FileInfo => ({ path, type: 'file', sizeBytes: 0, replication: 3, chunkCount: 0, chunkSizeBytes: 1 << 20, mtimeMs: 5, ctimeMs: 5, mode: 0o600 });
  const g = cache.generation;
  cache.created('/n/new', info('/n/new'));
  assert.equal((await cache.stat('/n/new')).mode, 0o600, 'from the create answer');
  assert.deepEqual(stats, []);
  cache.fill([entry('/n/new', 0)], g);
  assert.equal((await cache.stat('/n/new')).mode, 0o600, 'a listing from before the create is not taken');
  cache.forget('/n/w'); // written by this mount
  cache.created('/n/other', info('/n/other'));
  cache.fill([entry('/n/new', 0), entry('/n/w', 0)], cache.generation);
  assert.equal(cache.counts.fromListing, 1, 'the created file is taken from a later listing, the written one not');
  assert.equal((await cache.stat('/n/w')).sizeBytes, 7);
  // a linked file (two names) is never kept
  cache.created('/n/l', { ...info('/n/l'), nlink: 2 });
  await cache.stat('/n/l');
  assert.deepEqual(stats, ['/n/w', '/n/l']);
});
