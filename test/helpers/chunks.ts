import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { before } from 'node:test';
import type { GfsClient } from '../../client/client.js';
import { rpcJson } from '../../shared/rpc.js';
import type { ChunkLocation, ChunksAnswer, LeaseAnswer } from '../../shared/wire.js';
import { clusterPerSuite, waitFor, type ClusterOptions, type TestCluster } from './cluster.js';

// Asking a running master about a file's chunks, as the tests that follow one chunk through
// leases, bumps and repairs do.

/** Chunk 0 of `path` as the master lists it (version and replicas); fails the test when the file has none. */
export async function firstChunk(masterUrl: string, path: string): Promise<ChunkLocation> {
  const a = await rpcJson<ChunksAnswer>(masterUrl, '/api/chunks', { path, startIndex: 0, count: 1 });
  assert.equal(a.chunks.length, 1, `${path} has no chunk 0`);
  return a.chunks[0]!;
}

/** Makes the parent of `path`, writes `content` to it with replication 2 and syncs it; returns its chunk 0. */
export async function writeSyncedFile(client: GfsClient, masterUrl: string, path: string, content: Buffer): Promise<ChunkLocation> {
  await client.mkdir(dirname(path));
  await client.create(path, { replication: 2 });
  await client.write(path, 0, content);
  await client.sync(path);
  return firstChunk(masterUrl, path);
}

/**
 * Waits until no lease on `handle` is in force anywhere: the master's grant log has it expired by the
 * master's clock (GET /debug/leases), and none of `chunkserverUrls` holds it (GET /debug/state). After
 * that nothing touches the chunk unless a new lease is asked for.
 */
export async function waitLeaseOver(masterUrl: string, chunkserverUrls: string[], handle: string, deadlineMs = 15_000): Promise<void> {
  await waitFor(
    `every lease on ${handle} to run out`,
    async () => {
      const m = await rpcJson<{ nowMs: number; grants: { handle: string; expiresAtMs: number }[] }>(masterUrl, '/debug/leases');
      if (m.grants.some((g) => g.handle === handle && g.expiresAtMs > m.nowMs)) return false;
      const held = await Promise.all(chunkserverUrls.map((u) => rpcJson<{ leases: { handle: string }[] }>(u, '/debug/state')));
      return held.every((s) => !s.leases.some((l) => l.handle === handle));
    },
    deadlineMs,
  );
}

/**
 * A one-chunk file at `path` (a few bytes written, so the chunk exists on its replicas) and a lease on
 * that chunk, for tests that send chunkserver requests (pushes, writes) themselves.
 */
export async function leasedChunk(client: GfsClient, masterUrl: string, path: string): Promise<{ handle: string; lease: LeaseAnswer }> {
  await client.create(path);
  await client.write(path, 0, Buffer.from('start'));
  const { handle } = await firstChunk(masterUrl, path);
  const lease = await rpcJson<LeaseAnswer>(masterUrl, '/api/lease', { handle });
  return { handle, lease };
}

export interface LeasedChunk {
  client: GfsClient;
  handle: string;
  lease: LeaseAnswer;
}

/**
 * For the enclosing describe block: a cluster (clusterPerSuite) and, once it is up, a leased one-chunk
 * file at `path` (leasedChunk), handed to `ready` so the suite can keep it in its own variables.
 */
export function leasedChunkPerSuite(o: ClusterOptions, path: string, ready: (t: LeasedChunk) => void): () => TestCluster {
  const cluster = clusterPerSuite(o);
  before(async () => {
    const client = cluster().client();
    ready({ client, ...(await leasedChunk(client, cluster().masterUrl, path)) });
  });
  return cluster;
}
