import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inoKey, LockManager, lockSet, type LockMode } from '../../../master/locks.js';
import { rng } from '../../../shared/rng.js';

type Leaves = { path: string; mode: LockMode }[];

/** Lets every pending promise continuation run. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Starts an acquisition and reports whether it has been granted yet. */
function start(lm: LockManager, leaves: Leaves) {
  const state = { granted: false, release: undefined as undefined | (() => void) };
  const p = lm.acquire(leaves).then((rel) => {
    state.granted = true;
    state.release = rel;
    return rel;
  });
  return { state, p };
}

test('lockSet: read locks on every ancestor, the leaf mode on leaves, sorted, write wins', () => {
  assert.deepEqual(lockSet([{ path: '/a/b/c', mode: 'w' }]), [
    { path: '/', mode: 'r' },
    { path: '/a', mode: 'r' },
    { path: '/a/b', mode: 'r' },
    { path: '/a/b/c', mode: 'w' },
  ]);
  // rename /b/x -> /a/y: the same set whichever order the leaves are given in
  const one = lockSet([{ path: '/b/x', mode: 'w' }, { path: '/a/y', mode: 'w' }]);
  const two = lockSet([{ path: '/a/y', mode: 'w' }, { path: '/b/x', mode: 'w' }]);
  assert.deepEqual(one, two);
  assert.deepEqual(one.map((r) => r.path), ['/', '/a', '/a/y', '/b', '/b/x']);
  // a path that is both a leaf (w) and an ancestor of another leaf stays w
  assert.deepEqual(lockSet([{ path: '/a', mode: 'w' }, { path: '/a/b', mode: 'r' }]), [
    { path: '/', mode: 'r' },
    { path: '/a', mode: 'w' },
    { path: '/a/b', mode: 'r' },
  ]);
});

test('two creates in one directory hold their locks at the same time', async () => {
  const lm = new LockManager();
  const x = start(lm, [{ path: '/d/x', mode: 'w' }]);
  const y = start(lm, [{ path: '/d/y', mode: 'w' }]);
  await settle();
  assert.equal(x.state.granted, true);
  assert.equal(y.state.granted, true);
  // shared: '/', '/d'; exclusive: '/d/x', '/d/y'
  assert.equal(lm.held, 4);
  x.state.release!();
  y.state.release!();
  assert.equal(lm.held, 0);
});

test('many concurrent creates in one directory all run in parallel', async () => {
  const lm = new LockManager();
  let inside = 0;
  let maxInside = 0;
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      lm.with([{ path: `/d/f${i}`, mode: 'w' }], async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        await settle(2);
        inside--;
      }),
    ),
  );
  assert.equal(maxInside, 20);
  assert.equal(lm.held, 0);
});

test('a write lock on /a (snapshot) blocks creating /a/x until released', async () => {
  const lm = new LockManager();
  const snap = start(lm, [{ path: '/a', mode: 'w' }, { path: '/snap', mode: 'w' }]);
  await settle();
  assert.equal(snap.state.granted, true);
  const create = start(lm, [{ path: '/a/x', mode: 'w' }]);
  const elsewhere = start(lm, [{ path: '/b/x', mode: 'w' }]);
  await settle();
  assert.equal(create.state.granted, false, 'create under /a must wait for the snapshot');
  assert.equal(elsewhere.state.granted, true, 'a create elsewhere is not blocked');
  snap.state.release!();
  await settle();
  assert.equal(create.state.granted, true);
  create.state.release!();
  elsewhere.state.release!();
  assert.equal(lm.held, 0);
});

test('a create in /a (read lock on /a) blocks a snapshot of /a until released', async () => {
  const lm = new LockManager();
  const create = start(lm, [{ path: '/a/x', mode: 'w' }]);
  await settle();
  const snap = start(lm, [{ path: '/a', mode: 'w' }]);
  await settle();
  assert.equal(snap.state.granted, false);
  create.state.release!();
  await settle();
  assert.equal(snap.state.granted, true);
  snap.state.release!();
  assert.equal(lm.held, 0);
});

test('writers are not starved by a stream of readers (FIFO)', async () => {
  const lm = new LockManager();
  const order: string[] = [];
  const r1 = start(lm, [{ path: '/a/r1', mode: 'r' }]);
  await settle();
  assert.equal(r1.state.granted, true);
  const w = start(lm, [{ path: '/a', mode: 'w' }]);
  void w.p.then(() => order.push('w'));
  await settle();
  assert.equal(w.state.granted, false);
  // a stream of readers arriving after the writer: each would be compatible
  // with r1, but must queue behind the writer
  const later = Array.from({ length: 10 }, (_, i) => {
    const r = start(lm, [{ path: `/a/r${i + 2}`, mode: 'r' }]);
    void r.p.then(() => order.push(`r${i + 2}`));
    return r;
  });
  await settle();
  assert.ok(later.every((r) => !r.state.granted), 'readers queued after a writer must wait');
  r1.state.release!();
  await settle();
  assert.equal(w.state.granted, true);
  assert.ok(later.every((r) => !r.state.granted), 'readers still wait while the writer holds');
  w.state.release!();
  await settle();
  assert.ok(later.every((r) => r.state.granted), 'readers all proceed together after the writer');
  assert.equal(order[0], 'w');
  for (const r of later) r.state.release!();
  assert.equal(lm.held, 0);
});

test('waiters on one lock are served in arrival order', async () => {
  const lm = new LockManager();
  const order: number[] = [];
  const first = start(lm, [{ path: '/a', mode: 'w' }]);
  await settle();
  const modes: LockMode[] = ['w', 'r', 'r', 'w', 'r', 'w', 'w', 'r'];
  const ps = modes.map((mode, i) => lm.with([{ path: '/a', mode }], async () => {
    order.push(i);
    await settle(1);
  }));
  await settle();
  first.state.release!();
  await Promise.all(ps);
  assert.deepEqual(order, modes.map((_, i) => i));
  assert.equal(lm.held, 0);
});

test('rename-like requests in opposite orders never deadlock and keep mutual exclusion', async () => {
  const paths = ['/a', '/b', '/a/x', '/b/y', '/c', '/a/x/z'];
  for (let seed = 1; seed <= 60; seed++) {
    const rnd = rng(seed);
    const lm = new LockManager();
    // our own model of who holds what, to check that grants never conflict
    const readers = new Map<string, number>();
    const writers = new Set<string>();
    let done = 0;
    const ops: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      let leaves: Leaves;
      const k = rnd();
      if (k < 0.25) leaves = [{ path: '/a', mode: 'w' }, { path: '/b', mode: 'w' }];
      else if (k < 0.5) leaves = [{ path: '/b', mode: 'w' }, { path: '/a', mode: 'w' }];
      else {
        const p1 = paths[Math.floor(rnd() * paths.length)]!;
        const p2 = paths[Math.floor(rnd() * paths.length)]!;
        leaves = [{ path: p1, mode: rnd() < 0.5 ? 'w' : 'r' }];
        if (p2 !== p1 && rnd() < 0.7) leaves.push({ path: p2, mode: rnd() < 0.5 ? 'w' : 'r' });
      }
      const startDelay = Math.floor(rnd() * 4);
      const holdRounds = Math.floor(rnd() * 4);
      ops.push(
        (async () => {
          await settle(startDelay);
          await lm.with(leaves, async () => {
            const set = lockSet(leaves);
            for (const { path, mode } of set) {
              if (mode === 'w') {
                assert.ok(!writers.has(path) && !readers.get(path), `write lock on ${path} granted while held`);
                writers.add(path);
              } else {
                assert.ok(!writers.has(path), `read lock on ${path} granted while write-locked`);
                readers.set(path, (readers.get(path) ?? 0) + 1);
              }
            }
            await settle(holdRounds);
            for (const { path, mode } of set) {
              if (mode === 'w') writers.delete(path);
              else readers.set(path, readers.get(path)! - 1);
            }
          });
          done++;
        })(),
      );
    }
    // A deadlock is no progress, whatever the machine's load: every op finishes within a few dozen
    // event-loop rounds of the one before it, so thousands of rounds without a finish is a deadlock.
    let outcome: { error: unknown } | undefined;
    Promise.all(ops).then(
      () => (outcome = { error: undefined }),
      (error: unknown) => (outcome = { error }),
    );
    for (let lastDone = -1, idleRounds = 0; !outcome; ) {
      await new Promise<void>((r) => setImmediate(r));
      if (done !== lastDone) [lastDone, idleRounds] = [done, 0];
      else if (++idleRounds > 5_000) throw new Error(`deadlock: seed ${seed}, ${done}/${ops.length} done, ${lm.held} locks held`);
    }
    if (outcome.error) throw outcome.error;
    assert.equal(done, ops.length);
    assert.equal(lm.held, 0, `seed ${seed}: lock objects left behind`);
  }
});

test('lock objects exist only while held or awaited', async () => {
  const lm = new LockManager();
  assert.equal(lm.held, 0);
  const rel = await lm.acquire([{ path: '/a/b/c', mode: 'w' }]);
  assert.equal(lm.held, 4);
  const waiting = start(lm, [{ path: '/a/b/c', mode: 'r' }]);
  await settle();
  assert.equal(waiting.state.granted, false);
  rel();
  await settle();
  assert.equal(waiting.state.granted, true);
  assert.equal(lm.held, 4);
  waiting.state.release!();
  assert.equal(lm.held, 0);
  // releasing twice is a bug and says so
  assert.throws(() => waiting.state.release!(), /released twice/);
  // with() releases even when the body throws
  await assert.rejects(lm.with([{ path: '/x', mode: 'w' }], async () => {
    throw new Error('boom');
  }), /boom/);
  assert.equal(lm.held, 0);
});

test('ino keys: no ancestors, sorted before every path; two names of one node exclude each other', async () => {
  assert.deepEqual(lockSet([{ path: '/a/b', mode: 'w' }, { path: inoKey(7), mode: 'w' }]), [
    { path: '#7', mode: 'w' },
    { path: '/', mode: 'r' },
    { path: '/a', mode: 'r' },
    { path: '/a/b', mode: 'w' },
  ]);
  const lm = new LockManager();
  const first = await lm.acquireWithInos([{ path: '/x/a', mode: 'w' }], () => [7]);
  const second = { release: undefined as undefined | (() => void) };
  const p = lm.acquireWithInos([{ path: '/y/b', mode: 'w' }], () => [7]).then((r) => (second.release = r));
  await settle();
  assert.equal(second.release, undefined, 'the other name waits for the node');
  first();
  (await p)();
  assert.equal(lm.held, 0);
});

test('acquireWithInos tries again when the node\'s inos changed while it waited (a link made meanwhile)', async () => {
  const lm = new LockManager();
  const link = await lm.acquire([{ path: '/a', mode: 'w' }]);
  let inos: number[] = [];
  let asked = 0;
  const p = lm
    .acquireWithInos([{ path: '/a', mode: 'w' }], () => {
      asked++;
      return inos;
    })
  await settle();
  inos = [3]; // the link gave /a an ino while the operation waited for /a
  link();
  const got = await p;
  assert.equal(asked, 4, 'read, changed once locked, read again and confirmed');
  // it holds the node's key now: another name waits
  const other = start(lm, [{ path: inoKey(3), mode: 'w' }]);
  await settle();
  assert.equal(other.state.granted, false);
  got();
  (await other.p)();
  assert.equal(lm.held, 0);
});
