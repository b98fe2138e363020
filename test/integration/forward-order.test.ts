import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { GfsClient } from '../../client/client.js';
import { crc32c } from '../../shared/checksum.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ChunksAnswer, LeaseAnswer, ReplicaRef } from '../../shared/wire.js';
import { startCluster, waitFor, type TestCluster } from '../helpers/cluster.js';

// Secondaries apply the primary's serials in order even when a forwarded
// batch arrives after a later one: the fault layer holds one forward to a
// secondary past the primary's forward timeout, the next mutation (same
// bytes range, other data) is acknowledged meanwhile, and when the late
// batch finally lands every replica must still hold the same bytes.

const KiB = 1024;
const chunkSizeBytes = 256 * KiB;
const forwardTimeoutMs = 1_000;
const lateDelayMs = 4_000;

after(() => closeRpc());

interface DebugState {
  counters: { applyRequests: number; serials: { duplicates: number } };
  forwardedTo: Record<string, number>;
}

const debugState = (server: ReplicaRef) => rpcJson<DebugState>(server.url, '/debug/state');

/** Forward requests the primary has sent to the secondary, and apply requests the secondary has handled. */
async function forwardsSentAndHandled(primary: ReplicaRef, secondary: ReplicaRef): Promise<{ sent: number; handled: number }> {
  const [p, s] = await Promise.all([debugState(primary), debugState(secondary)]);
  return { sent: p.forwardedTo[secondary.id] ?? 0, handled: s.counters.applyRequests };
}

async function directWrite(primary: ReplicaRef, handle: string, version: number, offset: number, data: Buffer, requestId: string): Promise<unknown> {
  return rpcJson(primary.url, '/chunk/write', { handle, version, offset, inline: data.toString('base64'), sizeBytes: data.length, crc32c: crc32c(data), clientId: 'forward-order-test', requestId }, { targetName: primary.id, timeoutMs: 30_000 });
}

describe('forwarded mutations on a secondary', { timeout: 120_000 }, () => {
  let cluster: TestCluster | undefined;
  let client: GfsClient;

  before(async () => {
    // A long lease: the whole test runs under one lease, so one serial space.
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, heartbeatMs: 200, leaseMs: 20_000, env: { GFS_FORWARD_TIMEOUT_MS: String(forwardTimeoutMs) } });
    client = cluster.client();
  });

  after(async () => {
    await cluster?.stop();
  });

  it('a batch that lands after its timeout and after a later acknowledged one leaves every replica identical', async () => {
    const path = '/late-forward';
    const initial = randomBytes(64 * KiB);
    await client.create(path);
    await client.write(path, 0, initial);
    const loc = (await rpcJson<ChunksAnswer>(cluster!.masterUrl, '/api/chunks', { path, startIndex: 0, count: 1 })).chunks[0]!;
    const lease = await rpcJson<LeaseAnswer>(cluster!.masterUrl, '/api/lease', { handle: loc.handle });
    assert.equal(lease.secondaries.length, 2, 'need two secondaries');
    const late = lease.secondaries[0]!;
    const before0 = await forwardsSentAndHandled(lease.primary, late);

    // Forwards from the primary to one secondary go out late, past the primary's timeout (the
    // rule held by the sender only: the late request still arrives, shared/fault.ts).
    await rpcJson(lease.primary.url, '/admin/faults', { rules: [{ from: lease.primary.id, to: late.id, delayMs: lateDelayMs }] });
    const first = Buffer.alloc(16 * KiB, 0xaa);
    const failed = await directWrite(lease.primary, lease.handle, lease.version, 4 * KiB, first, 'late-1').then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    assert.ok(failed, 'the write whose forward timed out was acknowledged');
    await rpcJson(lease.primary.url, '/admin/faults', { rules: [] });

    // The next mutation of the same bytes is acknowledged while the late batch is still held.
    const second = Buffer.alloc(16 * KiB, 0x55);
    await directWrite(lease.primary, lease.handle, lease.version, 4 * KiB, second, 'late-2');

    // Every forward the primary sent that secondary, the late one included, has been handled there.
    await waitFor(
      'the late forward to land on the secondary',
      async () => {
        const now = await forwardsSentAndHandled(lease.primary, late);
        return now.handled - before0.handled >= now.sent - before0.sent;
      },
      30_000,
      100,
    );
    const expected = Buffer.from(initial);
    second.copy(expected, 4 * KiB);
    const replicas = [lease.primary, ...lease.secondaries];
    for (const r of replicas) {
      const got = await client.readReplica(r, lease.handle, lease.version, 0, chunkSizeBytes);
      assert.equal(got.length, expected.length, `replica on ${r.id} has another length`);
      const firstDiff = got.findIndex((b, i) => b !== expected[i]);
      assert.equal(firstDiff, -1, `replica on ${r.id}${r.id === late.id ? ' (the late secondary)' : ''} differs from the last acknowledged write at byte ${firstDiff}`);
    }
    // The late batch was answered as a duplicate of what the primary had sent again under the same serial.
    assert.ok((await debugState(late)).counters.serials.duplicates >= 1, 'the late batch was not recognised as a duplicate');
  });
});
