import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseLease } from '../../../master/core/lease-choice.js';
import { processReport, type ReportContext } from '../../../master/core/report.js';
import { bumpLogged, settleBump, settleClone, startBump } from '../../../master/core/version-bump.js';
import { CoreFixture } from './core-fixture.js';

// The version-bump protocol (grants and clones share it) and what a master
// rebuilt from its logged records alone knows about it after a restart.

const nowMs = 50_000;
const ctx = (safe = false): ReportContext => ({ nowMs, safe, role: 'master', isPendingCopy: () => false });

/** One bump through the protocol, logging its records as the runtime does. */
function bump(f: CoreFixture, h: string, asked: string[], took: string[]): number {
  const b = startBump(f.st, f.ns, h);
  f.apply(b.record);
  bumpLogged(f.st, b, nowMs);
  f.apply(settleBump(f.st, b, asked, took));
  return b.version;
}

test('bump: the replicas that took the version are the locations; the rest are dropped; the record names them', () => {
  const f = new CoreFixture();
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!);
  const v = bump(f, h!, ['a', 'b', 'c'], ['a', 'b']);
  assert.equal(v, 2);
  assert.deepEqual([...f.st.servers.locations.get(h!)!].sort(), ['a', 'b']);
  assert.deepEqual(f.log.at(-1), { op: 'bumped', handle: h, version: 2, servers: ['a', 'b'] });
  assert.equal(f.ns.pendingBumps.has(h!), false);
});

test('bump: nobody took it: nothing happened at the new version, the replicas wait for a retried bump and are never judged stale', () => {
  const f = new CoreFixture();
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!);
  bump(f, h!, ['a', 'b', 'c'], []);
  assert.equal(f.log.at(-1)!.op, 'version', 'no bumped record');
  assert.deepEqual([...f.st.unbumped.get(h!)!.servers].sort(), ['a', 'b', 'c']);
  const out = processReport(f.st, f.ns, { server: 'a', chunks: [{ handle: h!, version: 1, sizeBytes: 0 }] }, { ...ctx(), nowMs: nowMs + 60_000 });
  assert.deepEqual(out.deletes, []);
  // Restarted before any retry: the unconfirmed bump is recovered from the log.
  const g = f.restart(nowMs);
  assert.equal(g.st.recoveredPending.get(h!), 1);
  g.beat(nowMs);
  const out2 = processReport(g.st, g.ns, { server: 'b', chunks: [{ handle: h!, version: 1, sizeBytes: 0 }] }, ctx());
  assert.deepEqual(out2.deletes, []);
  assert.equal(g.st.unbumped.get(h!)?.servers.has('b'), true);
});

test('restart: a replica that applied a bump late (missed the mutations made under it) is still judged stale', () => {
  // Issue 15.2: which replicas took a version was kept only in memory; a restarted master listed
  // the late one again, could make it primary, and it appended at its own shorter length.
  const f = new CoreFixture();
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!);
  bump(f, h!, ['a', 'b', 'c'], ['a', 'b']); // c was paused: its answer never came
  const g = f.restart(nowMs);
  g.beat(nowMs);
  // Writes went to a and b (longer); c took version 2 late and is shorter.
  for (const [id, size] of [['a', 4096], ['b', 4096], ['c', 1024]] as const) processReport(g.st, g.ns, { server: id, chunks: [{ handle: h!, version: 2, sizeBytes: size }] }, ctx());
  assert.deepEqual([...g.st.servers.locations.get(h!)!].sort(), ['a', 'b'], 'the late replica is not listed');
  assert.deepEqual(g.st.takePendingDeletes('c').length, 0, 'deletes go in the reply, not pending');
  const d = chooseLease(g.st, g.ns, { handle: h!, goal: 3, nowMs, grantsAllowedAtMs: 0 });
  assert.equal(d.kind, 'grant');
  assert.notEqual(d.kind === 'grant' ? d.primary : '', 'c');
});

test('restart: a clone logged as done counts among the replicas that took the version', () => {
  const f = new CoreFixture(['a', 'b', 'c', 'd']);
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!, ['a', 'b', 'c']);
  const v = bump(f, h!, ['a', 'b'], ['a', 'b']);
  f.apply(settleClone(f.st, f.ns, h!, v, 'd', 0));
  const g = f.restart(nowMs);
  g.beat(nowMs);
  for (const id of ['a', 'b', 'd']) processReport(g.st, g.ns, { server: id, chunks: [{ handle: h!, version: v, sizeBytes: 0 }] }, ctx());
  assert.deepEqual([...g.st.servers.locations.get(h!)!].sort(), ['a', 'b', 'd']);
});

test('a clone of a chunk never bumped (no took set) does not make the other replicas look stale after a restart', () => {
  const f = new CoreFixture(['a', 'b', 'c', 'd']);
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!, ['a', 'b']);
  assert.equal(settleClone(f.st, f.ns, h!, 1, 'd', 0), undefined, 'nothing to log');
  const g = f.restart(nowMs);
  g.beat(nowMs);
  for (const id of ['a', 'b', 'd']) processReport(g.st, g.ns, { server: id, chunks: [{ handle: h!, version: 1, sizeBytes: 0 }] }, ctx());
  assert.deepEqual([...g.st.servers.locations.get(h!)!].sort(), ['a', 'b', 'd']);
});

test('who took a version has one home, the logged Namespace.took: the live view keeps no copy, and a record applied after recovery counts at once', () => {
  const f = new CoreFixture(['a', 'b', 'c', 'd']);
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!, ['a', 'b', 'c']);
  const v = bump(f, h!, ['a', 'b', 'c'], ['a', 'b']);
  const g = f.restart(nowMs);
  assert.equal('took' in g.st, false, 'ChunkState holds no copy of who took a version');
  assert.deepEqual([...g.ns.took.get(h!)!.servers].sort(), ['a', 'b'], 'replayed from the bumped record');
  g.beat(nowMs);
  // A clone's record arriving after recovery (a shadow tailing the log; no recover() call) is seen at once.
  g.apply({ op: 'took', handle: h!, version: v, server: 'd' });
  for (const id of ['a', 'b', 'c', 'd']) processReport(g.st, g.ns, { server: id, chunks: [{ handle: h!, version: v, sizeBytes: 0 }] }, ctx());
  assert.deepEqual([...g.st.servers.locations.get(h!)!].sort(), ['a', 'b', 'd'], 'c took it late; d was logged as a clone');
});

test('bump being settled: before its bumped record is applied, a listed replica keeps its place and one that missed it is neither listed nor deleted; then it is stale', () => {
  const f = new CoreFixture();
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!);
  const b = startBump(f.st, f.ns, h!);
  f.apply(b.record);
  bumpLogged(f.st, b, nowMs);
  const record = settleBump(f.st, b, ['a', 'b', 'c'], ['a', 'b']); // c answered too late, but took it
  const at = (id: string) => processReport(f.st, f.ns, { server: id, chunks: [{ handle: h!, version: b.version, sizeBytes: 0 }] }, ctx());
  assert.deepEqual(at('a').deletes, []);
  assert.deepEqual(at('c').deletes, [], 'not judged before the takers are logged');
  assert.deepEqual([...f.st.servers.locations.get(h!)!].sort(), ['a', 'b']);
  f.apply(record);
  assert.deepEqual(at('c').deletes, [h], 'the bumped record names a and b only');
  assert.deepEqual([...f.st.servers.locations.get(h!)!].sort(), ['a', 'b']);
});

test('lease choice: the chunk\'s last primary again if it is up to date, else the least loaded', () => {
  const f = new CoreFixture();
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!);
  for (const [id, load] of [['a', 3], ['b', 5], ['c', 1]] as const) f.st.servers.servers.get(id)!.load = load;
  assert.deepEqual(chooseLease(f.st, f.ns, { handle: h!, goal: 3, nowMs, grantsAllowedAtMs: 0 }), { kind: 'grant', primary: 'c' });
  f.st.grantLog.granted(h!, 2, 'b', ['a', 'c'], 1_000);
  assert.deepEqual(chooseLease(f.st, f.ns, { handle: h!, goal: 3, nowMs, grantsAllowedAtMs: 0 }), { kind: 'grant', primary: 'b' });
  f.st.servers.removeLocation(h!, 'b');
  assert.deepEqual(chooseLease(f.st, f.ns, { handle: h!, goal: 3, nowMs, grantsAllowedAtMs: 0 }), { kind: 'grant', primary: 'c' });
});

test('lease choice: busy while placing or cloning (a clone notes the blocked client), waits out a restart', () => {
  const f = new CoreFixture();
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!);
  f.st.placing.add(h!);
  assert.equal(chooseLease(f.st, f.ns, { handle: h!, goal: 3, nowMs, grantsAllowedAtMs: 0 }).kind, 'busy');
  f.st.placing.delete(h!);
  f.st.clones.push({ handle: h!, source: 'a', target: 'b' });
  assert.equal(chooseLease(f.st, f.ns, { handle: h!, goal: 3, nowMs, grantsAllowedAtMs: 0 }).kind, 'busy');
  assert.equal(f.st.blockedAtMs.get(h!), nowMs);
  f.st.clones.length = 0;
  assert.deepEqual(chooseLease(f.st, f.ns, { handle: h!, goal: 3, nowMs, grantsAllowedAtMs: nowMs + 10 }), { kind: 'wait', untilMs: nowMs + 10, reason: 'master restarted: waiting out leases it may have granted before' });
});
