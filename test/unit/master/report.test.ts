import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeReplica, processReport, versionRaceMs, type ReportContext, type Verdict } from '../../../master/core/report.js';
import { CoreFixture } from './core-fixture.js';

// Report processing, every branch: one row per verdict, with the state that
// leads to it, whether the replica ends up listed, and whether the reply
// orders it deleted. No process, disk or socket.

interface Row {
  name: string;
  /** The chunk's version in the log before the report (a file with one chunk at version 1, then bumped). */
  version?: number;
  /** The version the server reports. */
  reported: (v: number) => number;
  setup?: (f: CoreFixture, h: string) => void;
  ctx?: Partial<ReportContext>;
  verdict: Verdict;
  listed: boolean;
  deleted: boolean;
  /** A version record to log (adopted). */
  adopts?: boolean;
}

const nowMs = 100_000;

const rows: Row[] = [
  { name: 'current version, no bump record: listed', reported: (v) => v, verdict: 'listed', listed: true, deleted: false },
  { name: 'current version, named by the last bump: listed', version: 3, reported: (v) => v, setup: (f, h) => f.apply({ op: 'bumped', handle: h, version: 3, servers: ['a', 'b'] }), verdict: 'listed', listed: true, deleted: false },
  { name: 'current version, not named by the last bump (took it late, missed mutations): stale', version: 3, reported: (v) => v, setup: (f, h) => f.apply({ op: 'bumped', handle: h, version: 3, servers: ['b', 'c'] }), verdict: 'took-late', listed: false, deleted: true },
  { name: 'current version of a bump being settled (its record not applied yet), listed (took it): kept', version: 3, reported: (v) => v, setup: (f, h) => { f.apply({ op: 'version', handle: h, version: 4, pendingFrom: 3 }); f.st.servers.addLocation(h, 'a'); }, verdict: 'listed', listed: true, deleted: false },
  { name: 'current version of a bump being settled, not listed (missed it or answered late): not listed, not deleted yet', version: 3, reported: (v) => v, setup: (f, h) => f.apply({ op: 'version', handle: h, version: 4, pendingFrom: 3 }), verdict: 'bump-settling', listed: false, deleted: false },
  { name: 'older version: stale, deleted', version: 3, reported: (v) => v - 1, verdict: 'stale', listed: false, deleted: true },
  { name: 'older version in safe mode: dropped, not deleted', version: 3, reported: (v) => v - 1, ctx: { safe: true }, verdict: 'stale', listed: false, deleted: false },
  { name: 'older version while the bump is racing, still listed (took it): kept', version: 3, reported: (v) => v - 1, setup: (f, h) => { f.st.versionBumpedAtMs.set(h, nowMs - 10); f.st.servers.addLocation(h, 'a'); }, verdict: 'racing-kept', listed: true, deleted: false },
  { name: 'older version while the bump is racing, not listed: dropped, not deleted', version: 3, reported: (v) => v - 1, setup: (f, h) => f.st.versionBumpedAtMs.set(h, nowMs - 10), verdict: 'racing-dropped', listed: false, deleted: false },
  { name: 'older version after the race window: stale', version: 3, reported: (v) => v - 1, setup: (f, h) => f.st.versionBumpedAtMs.set(h, nowMs - versionRaceMs - 1), verdict: 'stale', listed: false, deleted: true },
  { name: 'at the version before a bump the previous master never confirmed: waits for the retried bump', version: 3, reported: (v) => v - 1, setup: (f, h) => f.st.recoveredPending.set(h, 2), verdict: 'awaiting-recovered-bump', listed: false, deleted: false },
  { name: 'missed a bump no replica took: waits for the retried bump', version: 3, reported: (v) => v - 1, setup: (f, h) => f.st.unbumped.set(h, { fromVersion: 2, servers: new Set(['a']) }), verdict: 'awaiting-retried-bump', listed: false, deleted: false },
  { name: 'newer version than the log (a bump the log lost): adopted, the others dropped', version: 3, reported: (v) => v + 1, setup: (f, h) => f.st.servers.addLocation(h, 'b'), verdict: 'adopt', listed: true, deleted: false, adopts: true },
  { name: 'newer version on a shadow: not listed, nothing changed', version: 3, reported: (v) => v + 1, ctx: { role: 'shadow' }, verdict: 'shadow-ahead', listed: false, deleted: false },
  { name: 'marked corrupt: never listed', reported: (v) => v, setup: (f, h) => f.st.markCorrupt('a', h), verdict: 'corrupt', listed: false, deleted: false },
  { name: 'ordered deleted, report sent before the order arrived: not counted', reported: (v) => v, setup: (f, h) => f.st.orderDelete('a', h), verdict: 'delete-ordered', listed: false, deleted: false },
  { name: 'target of a clone in progress: left alone', reported: () => 0, setup: (f, h) => f.st.clones.push({ handle: h, source: 'b', target: 'a' }), verdict: 'clone-in-progress', listed: false, deleted: false },
  { name: 'copy-on-write copy not logged yet: left alone', reported: (v) => v, ctx: { isPendingCopy: () => true }, verdict: 'pending-copy', listed: false, deleted: false },
];

for (const row of rows) {
  test(`report: ${row.name}`, () => {
    const f = new CoreFixture();
    const [h] = f.file('/f');
    for (let v = 1; v < (row.version ?? 1); v++) {
      f.apply({ op: 'version', handle: h!, version: v + 1, pendingFrom: v });
      f.apply({ op: 'bumped', handle: h!, version: v + 1 });
    }
    f.beat(nowMs);
    row.setup?.(f, h!);
    const ctx: ReportContext = { nowMs, safe: false, role: 'master', isPendingCopy: () => false, ...row.ctx };
    const chunk = { handle: h!, version: row.reported(f.ns.chunks.get(h!)!.version), sizeBytes: 0 };
    assert.equal(judgeReplica(f.st, f.ns, 'a', chunk, ctx), row.verdict);
    const out = processReport(f.st, f.ns, { server: 'a', chunks: [chunk] }, ctx);
    assert.equal(f.st.servers.locations.get(h!)?.has('a') ?? false, row.listed, 'listed');
    assert.equal(out.deletes.includes(h!), row.deleted, 'deleted');
    assert.equal(out.records.length > 0, row.adopts ?? false, 'adopted');
    if (row.adopts) {
      assert.equal(f.ns.chunks.get(h!)!.version, chunk.version);
      assert.deepEqual([...f.st.servers.locations.get(h!)!], ['a'], 'replicas at the older version are dropped');
    }
  });
}

test('report: an orphan (no file refers to it) is deleted, except in safe mode', () => {
  const f = new CoreFixture();
  f.beat(nowMs);
  const ctx: ReportContext = { nowMs, safe: false, role: 'master', isPendingCopy: () => false };
  const orphan = { handle: '00000000000000ff', version: 1, sizeBytes: 0 };
  assert.equal(judgeReplica(f.st, f.ns, 'a', orphan, ctx), 'orphan');
  assert.deepEqual(processReport(f.st, f.ns, { server: 'a', chunks: [orphan] }, ctx).deletes, [orphan.handle]);
  assert.deepEqual(processReport(f.st, f.ns, { server: 'a', chunks: [orphan] }, { ...ctx, safe: true }).deletes, []);
});

test('report: a replica the server no longer holds is unlisted, and its corrupt mark forgotten', () => {
  const f = new CoreFixture();
  const [h] = f.file('/f');
  f.beat(nowMs);
  f.hold(h!, ['a', 'b']);
  const ctx: ReportContext = { nowMs, safe: false, role: 'master', isPendingCopy: () => false };
  f.st.markCorrupt('b', h!);
  processReport(f.st, f.ns, { server: 'a', chunks: [] }, ctx);
  processReport(f.st, f.ns, { server: 'b', chunks: [] }, ctx);
  assert.equal(f.st.servers.locations.has(h!), false);
  assert.equal(f.st.corrupt.has(h!), false);
});

test('report: corrupt replicas listed by the server are marked, never listed, and ordered deleted once a good replica exists', () => {
  const f = new CoreFixture();
  const [h] = f.file('/f');
  f.beat(nowMs);
  const ctx: ReportContext = { nowMs, safe: false, role: 'master', isPendingCopy: () => false };
  // The only replica is corrupt: kept (it may hold most of the data), not listed.
  let out = processReport(f.st, f.ns, { server: 'a', chunks: [], corruptChunks: [h!] }, ctx);
  assert.equal(out.corruptNew, 1);
  assert.equal(f.st.corrupt.get(h!)?.has('a'), true);
  assert.equal(f.st.pendingDeletes.get('a')?.has(h!) ?? false, false);
  // A good replica appears: the next report of the corrupt one orders it deleted.
  f.hold(h!, ['b']);
  out = processReport(f.st, f.ns, { server: 'a', chunks: [], corruptChunks: [h!] }, ctx);
  assert.equal(out.corruptNew, 0, 'reported again, not counted again');
  assert.deepEqual(f.st.takePendingDeletes('a'), [h]);
  assert.equal(f.st.servers.locations.get(h!)?.has('a') ?? false, false);
  // Deleted on the server: neither list names it any more, so the mark goes and the server may take a clone again.
  processReport(f.st, f.ns, { server: 'a', chunks: [] }, ctx);
  assert.equal(f.st.corrupt.has(h!), false, 'the corrupt mark outlived the replica');
  processReport(f.st, f.ns, { server: 'a', chunks: [], corruptChunks: [h!] }, ctx);
  // After a master restart the mark comes back with the first report: never listed.
  const g = f.restart(nowMs);
  g.beat(nowMs);
  processReport(g.st, g.ns, { server: 'a', chunks: [{ handle: h!, version: 1, sizeBytes: 0 }], corruptChunks: [h!] }, ctx);
  assert.equal(g.st.servers.locations.get(h!)?.has('a') ?? false, false);
});
