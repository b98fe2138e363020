import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { newCounters, type MasterContext } from '../../../master/context.js';
import type { Op } from '../../../master/core/namespace.js';
import { bumpLogged, settleBump, startBump } from '../../../master/core/version-bump.js';
import { Healer } from '../../../master/healer.js';
import type { Leasing } from '../../../master/leasing.js';
import { GfsError } from '../../../shared/errors.js';
import { CoreFixture } from './core-fixture.js';

// The healer's clone (master/healer.ts) with its I/O faked: the chunkserver calls answer at once,
// the log is the fixture's (or refuses), the bump before the clone goes through the core protocol.

const nowMs = 10_000;

function harness(logOp: (f: CoreFixture, op: Op) => Promise<unknown>, rpc: () => Promise<unknown> = async () => ({ sizeBytes: 4096 })) {
  const f = new CoreFixture(['a', 'b', 'c', 'd']);
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!, ['a', 'b', 'c']);
  const counters = newCounters();
  const clonesWhileLogging: number[] = [];
  const m = {
    opts: { cloneBytesPerSec: 0, chunkSizeBytes: 64 << 20, log: pino({ level: 'silent' }) },
    ns: f.ns,
    st: f.st,
    servers: f.st.servers,
    counters,
    now: () => nowMs,
    logOp: (op: Op) => {
      clonesWhileLogging.push(f.st.clones.length);
      return logOp(f, op);
    },
  } as unknown as MasterContext;
  // The bump before a clone (leasing.runBump), every replica taking it.
  const leasing = {
    runBump: async (handle: string, targets: string[]) => {
      const b = startBump(f.st, f.ns, handle);
      f.apply(b.record);
      bumpLogged(f.st, b, nowMs);
      f.apply(settleBump(f.st, b, targets, targets));
      return { version: b.version, took: targets };
    },
  } as unknown as Leasing;
  const healer = new Healer(m, leasing, { reclaimTrash: async () => undefined, placeAfresh: async () => undefined }, rpc as never);
  // Bumped once already, so the clone runs its own bump and logs a 'took' record.
  void leasing.runBump(h!, ['a', 'b', 'c']);
  const runClone = (source: string, target: string) =>
    (healer as unknown as { runClone(h: string, v: number, s: string, t: string): Promise<void> }).runClone(h!, f.ns.chunks.get(h!)!.version, source, target);
  return { f, h: h!, counters, runClone, clonesWhileLogging };
}

test('a clone whose took record is logged: done, the target is among the replicas that took the version, judged only once it is logged', async () => {
  const { f, h, counters, runClone, clonesWhileLogging } = harness(async (fx, op) => fx.apply(op));
  await runClone('a', 'd');
  assert.deepEqual({ started: counters.clonesStarted, done: counters.clonesDone, failed: counters.clonesFailed, recordFailed: counters.cloneRecordsFailed }, { started: 1, done: 1, failed: 0, recordFailed: 0 });
  assert.equal(f.ns.took.get(h)!.servers.has('d'), true);
  assert.deepEqual(clonesWhileLogging, [1], 'the clone is still in flight while its record is logged');
  assert.equal(f.st.clones.length, 0);
});

test('a clone that succeeded but whose took record failed to log is not counted as a failed clone', async () => {
  const { f, h, counters, runClone } = harness(async (fx, op) => {
    if (op.op === 'took') throw new GfsError('NO_SPACE', 'disk full');
    return fx.apply(op);
  });
  await runClone('a', 'd');
  assert.deepEqual({ started: counters.clonesStarted, done: counters.clonesDone, failed: counters.clonesFailed, recordFailed: counters.cloneRecordsFailed }, { started: 1, done: 1, failed: 0, recordFailed: 1 });
  assert.equal(f.ns.took.get(h)!.servers.has('d'), false, 'nothing logged, nothing in the namespace');
  assert.equal(counters.clonedBytes, 4096);
});

test('a clone that failed is counted as failed', async () => {
  const { counters, runClone } = harness(
    async (fx, op) => fx.apply(op),
    async () => {
      throw new GfsError('UNAVAILABLE', 'source unreachable');
    },
  );
  await runClone('a', 'd');
  assert.deepEqual({ started: counters.clonesStarted, done: counters.clonesDone, failed: counters.clonesFailed, recordFailed: counters.cloneRecordsFailed }, { started: 1, done: 0, failed: 1, recordFailed: 0 });
});

test('a clone overtaken by a new version is counted as failed, not left as under way for ever', async () => {
  let fx: CoreFixture | undefined;
  const { f, h, counters, runClone } = harness(
    async (x, op) => {
      fx = x;
      return x.apply(op);
    },
    async () => {
      // A version record lands while the copy is made (an adopted version, say).
      const meta = fx!.ns.chunks.get(h)!;
      fx!.apply({ op: 'version', handle: h, version: meta.version + 1 });
      return { sizeBytes: 4096 };
    },
  );
  fx = f;
  await runClone('a', 'd');
  assert.deepEqual({ started: counters.clonesStarted, done: counters.clonesDone, failed: counters.clonesFailed, recordFailed: counters.cloneRecordsFailed }, { started: 1, done: 0, failed: 1, recordFailed: 0 });
  assert.equal(f.st.servers.locations.get(h)!.has('d'), false, 'the copy of the old version is not listed');
});

test('a clone to or from a chunkserver the master does not know is counted as failed', async () => {
  const { counters, runClone } = harness(async (fx, op) => fx.apply(op));
  await runClone('a', 'zz');
  assert.deepEqual({ started: counters.clonesStarted, done: counters.clonesDone, failed: counters.clonesFailed }, { started: 1, done: 0, failed: 1 });
});
