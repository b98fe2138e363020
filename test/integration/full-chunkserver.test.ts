import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeRpc } from '../../shared/rpc.js';
import { exitStatus } from '../../shared/exit.js';
import { startCluster, TestCluster, waitFor } from '../helpers/cluster.js';
import { fillDisk, mountTmpfs } from '../helpers/tmpfs.js';

// Issue 22, "placement that knows free space", end to end: a chunkserver on a small disk gets no
// chunk it cannot hold; a replica that cannot be created, or a disk that fills while a chunk is
// written, sends the chunk to a fresh placement without that server; and when no other server has
// room, `gfs put` says which replicas the file has and exits 3 (shared/exit.ts), as the library's
// answer (ReplicationReport) and `gfs fsck` say too.

const MiB = 1024 * 1024;

/** A cluster whose chunkserver `full` has its directory on a tmpfs of sizeBytes; skip when that cannot be mounted. */
async function clusterWithSmallDisk(
  t: { skip: (why: string) => void },
  o: { chunkservers: number; small: number; sizeBytes: number; chunkSizeBytes?: number; masterArgs?: string[] },
): Promise<{ c: TestCluster; smallDir: string; cleanup: () => Promise<void> } | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'gfs-test-'));
  const smallDir = join(dir, `cs${o.small}`);
  mkdirSync(smallDir);
  const mount = mountTmpfs(smallDir, o.sizeBytes);
  if ('skip' in mount) {
    rmSync(dir, { recursive: true, force: true });
    t.skip(mount.skip);
    return undefined;
  }
  const c = new TestCluster(dir, { chunkservers: o.chunkservers, chunkSizeBytes: o.chunkSizeBytes, masterArgs: o.masterArgs });
  const cleanup = async () => {
    await Promise.all([c.kill(c.master), ...c.chunkservers.map((p) => c.kill(p))]);
    mount.unmount();
    rmdirSync(smallDir);
    await c.stop();
    await closeRpc();
  };
  try {
    await c.startMaster();
    await Promise.all(Array.from({ length: o.chunkservers }, (_, i) => c.startChunkserver(i)));
    await c.waitForChunkservers(o.chunkservers);
    await waitFor('the master to leave safe mode', async () => !(await c.status()).safeMode);
  } catch (e) {
    await cleanup();
    throw e;
  }
  return { c, smallDir, cleanup };
}

test('gfs put beside a chunkserver on a 24 MiB disk: 3 replicas elsewhere, else a warning and exit 3 that fsck agrees with', { timeout: 300_000 }, async (t) => {
  const s = await clusterWithSmallDisk(t, { chunkservers: 4, small: 3, sizeBytes: 24 * MiB });
  if (!s) return;
  const { c, cleanup } = s;
  try {
    const local = join(c.dir, 'big.bin');
    const data = randomBytes(64 * MiB);
    writeFileSync(local, data);
    const status = await c.cli(['status']);
    assert.match(status.stdout.toString(), /cs3 .* FULL \(below its reserve: no new chunks\)/, 'a 24 MiB disk cannot take a 64 MiB chunk');

    // (a) Four chunkservers, three with room: every chunk on those three, exit 0, nothing said.
    const a = await c.cli(['put', '--replication', '3', local, '/a-big']);
    assert.equal(a.code, exitStatus.ok, a.stderr);
    assert.equal(a.stderr, '');
    const ra = await c.client().replication('/a-big');
    assert.equal(ra.goal, 3);
    assert.equal(ra.chunks.length, 1);
    for (const ch of ra.chunks) assert.deepEqual(ch.replicas, ['cs0', 'cs1', 'cs2'], `chunk ${ch.index}`);

    // (b) Three chunkservers, one of them full: the file gets two replicas, and put says so.
    await c.kill(c.chunkservers[0]);
    await waitFor('cs0 to be dead to the master', async () => (await c.status()).chunkservers.filter((x) => x.alive).length === 3, 30_000);
    const b = await c.cli(['put', '--replication', '3', local, '/b-big']);
    assert.equal(b.code, exitStatus.underReplicated, `exit ${b.code}: ${b.stderr}`);
    const lines = b.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, b.stderr);
    assert.match(lines[0]!, /^gfs: warning: \/b-big has fewer replicas than its goal of 3 in 1 of 1 chunks \(chunk 0 on cs1, cs2\)/);
    const f = await c.cli(['fsck', '/b-big', '--blocks', '--locations']);
    assert.equal(f.code, exitStatus.unhealthy, f.stderr);
    const out = f.stdout.toString();
    assert.match(out, /under-replicated: 1 /);
    assert.match(out, /0\. [0-9a-f]{16} v\d+ under-replicated live=2 \[(cs1, cs2|cs2, cs1)\]/, out);
    // Two replicas, but all of the data.
    const got = await c.cli(['cat', '/b-big']);
    assert.equal(got.code, 0, got.stderr);
    assert.ok(got.stdout.equals(data), 'the under-replicated file reads back whole');

    // Only the full chunkserver left: no chunk can be placed at all, and put says the cluster is full.
    await Promise.all([c.kill(c.chunkservers[1]), c.kill(c.chunkservers[2])]);
    await waitFor('only cs3 alive', async () => (await c.status()).chunkservers.filter((x) => x.alive).length === 1, 30_000);
    const none = await c.cli(['put', '--replication', '3', local, '/c-big']);
    assert.equal(none.code, exitStatus.error, none.stderr);
    assert.match(none.stderr, /^gfs: no chunkserver has room for a new chunk of \/c-big .*\n$/);
  } finally {
    await cleanup();
  }
});

test('a replica that cannot be created is placed afresh on another chunkserver', { timeout: 120_000 }, async () => {
  const c = await startCluster({ chunkservers: 4, chunkSizeBytes: 1 * MiB });
  try {
    // cs1 cannot be reached by the master: its creations fail. Having created nothing recently, it
    // is placement's first choice for every chunk (core/placement.ts), so every chunk meets the failure.
    await c.setFaults([{ from: 'master', to: 'cs1', drop: true }]);
    const client = c.client();
    await client.create('/f', { replication: 3 });
    const data = randomBytes(6 * MiB);
    const w = await client.write('/f', 0, data);
    assert.equal(w.goal, 3);
    assert.equal(w.chunks.length, 6);
    assert.deepEqual(w.underReplicated, []);
    for (const ch of w.chunks) assert.deepEqual(ch.replicas, ['cs0', 'cs2', 'cs3'], `chunk ${ch.index} was written to`);
    const failures = readFileSync(join(c.dir, 'master.log'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('chunk creation failed; placing the replica elsewhere') && l.includes('cs1'));
    assert.ok(failures.length >= 6, `a failed creation per chunk, each placed afresh (${failures.length} logged)`);
    await c.setFaults([]);
    const r = await client.replication('/f');
    assert.deepEqual(r.underReplicated, []);
    for (const ch of r.chunks) assert.deepEqual(ch.replicas, ['cs0', 'cs2', 'cs3'], `chunk ${ch.index} is on`);
    assert.ok((await client.read('/f', 0, data.length)).equals(data));
  } finally {
    await c.stop();
    await closeRpc();
  }
});

test('a disk that fills while its chunk is written: the writer goes on without it, and the chunk is copied where there is room', { timeout: 180_000 }, async (t) => {
  // No reserve and 4 MiB chunks, so an 8 MiB disk takes a chunk; then it is filled behind the master's back.
  const s = await clusterWithSmallDisk(t, { chunkservers: 3, small: 2, sizeBytes: 8 * MiB, chunkSizeBytes: 4 * MiB, masterArgs: ['--reserve', '0'] });
  if (!s) return;
  const { c, smallDir, cleanup } = s;
  try {
    const client = c.client();
    await client.create('/f', { replication: 3 });
    const head = randomBytes(256 * 1024);
    const w0 = await client.write('/f', 0, head);
    assert.deepEqual(w0.chunks, [{ index: 0, replicas: ['cs0', 'cs1', 'cs2'] }]);

    fillDisk(join(smallDir, 'filler'));
    const more = randomBytes(2 * MiB);
    const w1 = await client.write('/f', head.length, more);
    // cs2 answered NO_SPACE; the master took it out of the chunk and no other server has room.
    assert.deepEqual(w1.chunks, [{ index: 0, replicas: ['cs0', 'cs1'] }]);
    assert.deepEqual(w1.underReplicated, [{ index: 0, replicas: ['cs0', 'cs1'] }]);
    assert.match(readFileSync(join(c.dir, 'master.log'), 'utf8'), /replica dropped: a writer found its chunkserver unable to hold the chunk/);
    const whole = Buffer.concat([head, more]);
    assert.ok((await client.read('/f', 0, whole.length)).equals(whole));

    // A chunkserver with room joins: the master copies the chunk there.
    await c.startChunkserver(3);
    const r = await waitFor(
      'chunk 0 copied to cs3',
      async () => {
        const x = await client.replication('/f');
        return x.underReplicated.length === 0 ? x : undefined;
      },
      60_000,
      200,
    );
    assert.deepEqual(r.chunks, [{ index: 0, replicas: ['cs0', 'cs1', 'cs3'] }]);
    const loc = (await client.locate('/f', 0, 1, true)).chunks.get(0)!;
    const cs3 = loc.replicas.find((x) => x.id === 'cs3')!;
    assert.ok((await client.readReplica(cs3, loc.handle, loc.version, 0, whole.length)).equals(whole), 'the copy on cs3 holds every byte');
  } finally {
    await cleanup();
  }
});

test('a disk that fills under record appends: the appends go on without it, every record whole', { timeout: 180_000 }, async (t) => {
  const s = await clusterWithSmallDisk(t, { chunkservers: 3, small: 2, sizeBytes: 8 * MiB, chunkSizeBytes: 4 * MiB, masterArgs: ['--reserve', '0'] });
  if (!s) return;
  const { c, smallDir, cleanup } = s;
  try {
    const client = c.client();
    await client.create('/log', { replication: 3 });
    const first = Array.from({ length: 20 }, (_, i) => Buffer.from(`before-${i}-${randomBytes(100).toString('hex')}`));
    await client.appendRawBatch('/log', first);
    assert.deepEqual((await client.replication('/log')).chunks, [{ index: 0, replicas: ['cs0', 'cs1', 'cs2'] }]);

    fillDisk(join(smallDir, 'filler'));
    // Enough bytes that cs2's page cache and its tmpfs cannot take them.
    const later = Array.from({ length: 200 }, (_, i) => Buffer.concat([Buffer.from(`after-${i}-`), randomBytes(8 * 1024)]));
    const offsets = await client.appendRawBatch('/log', later);
    assert.equal(offsets.length, later.length);
    const r = await client.replication('/log');
    assert.deepEqual(r.chunks, [{ index: 0, replicas: ['cs0', 'cs1'] }], 'cs2 left the chunk');
    assert.match(readFileSync(join(c.dir, 'master.log'), 'utf8'), /replica dropped: a writer found its chunkserver unable to hold the chunk/);
    for (const [i, rec] of later.entries()) assert.ok((await client.read('/log', offsets[i]!, rec.length)).equals(rec), `record ${i} reads back whole`);
  } finally {
    await cleanup();
  }
});
