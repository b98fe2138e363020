import assert from 'node:assert/strict';
import { rpcJson } from '../../shared/rpc.js';
import type { ChunkLocation, ChunksAnswer } from '../../shared/wire.js';

// Asking a running master about a file's chunks, as the tests that follow one chunk through
// leases, bumps and repairs do.

/** Chunk 0 of `path` as the master lists it (version and replicas); fails the test when the file has none. */
export async function firstChunk(masterUrl: string, path: string): Promise<ChunkLocation> {
  const a = await rpcJson<ChunksAnswer>(masterUrl, '/api/chunks', { path, startIndex: 0, count: 1 });
  assert.equal(a.chunks.length, 1, `${path} has no chunk 0`);
  return a.chunks[0]!;
}
