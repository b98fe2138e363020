import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GfsError } from '../../../shared/errors.js';
import type { ReplicaRef } from '../../../shared/wire.js';
import { readFromReplicas, type PieceRead } from '../../../client/replica-read.js';

// What one piece of a chunk reads as, from scripted replica answers: a short
// replica is failed over like an erroring one and never padded with zeros;
// only replicas that all end at the same place describe a hole or the end.

const refs = (n: number): ReplicaRef[] => Array.from({ length: n }, (_, i) => ({ id: `cs${i}`, url: `http://cs${i}`, rack: 'r' }));

function script(answers: (Buffer | Error)[]) {
  const asked: string[] = [];
  const readOne = async (r: ReplicaRef) => {
    asked.push(r.id);
    const a = answers[Number(r.id.slice(2))]!;
    if (a instanceof Error) throw a;
    return a;
  };
  return { asked, readOne };
}

const piece = (o: Partial<PieceRead> = {}): PieceRead => ({ len: 10, tail: false, lastTry: false, what: 'chunk 0 of /f', ...o });
const full = Buffer.from('0123456789');

test('a short replica in a middle chunk is skipped for one with every byte', async () => {
  const s = script([full.subarray(0, 4), full]);
  const out = await readFromReplicas(refs(2), piece(), s.readOne);
  assert.deepEqual(out, { kind: 'data', data: full });
  assert.deepEqual(s.asked, ['cs0', 'cs1']);
});

test('the first whole answer ends the search', async () => {
  const s = script([full, full.subarray(0, 1)]);
  const out = await readFromReplicas(refs(2), piece(), s.readOne);
  assert.deepEqual(out, { kind: 'data', data: full });
  assert.deepEqual(s.asked, ['cs0']);
});

test('a short replica whose peers failed is an error naming each, not zeros', async () => {
  const s = script([full.subarray(0, 4), new GfsError('UNAVAILABLE', 'connection refused')]);
  const out = await readFromReplicas(refs(2), piece({ lastTry: true }), s.readOne);
  assert.equal(out.kind, 'failed');
  const e = (out as { error: GfsError }).error;
  assert.equal(e.code, 'UNAVAILABLE');
  assert.match(e.message, /cs0 had 4 of 10 bytes; cs1: connection refused/);
});

test('replicas that disagree on a middle chunk\'s length are an error', async () => {
  const s = script([full.subarray(0, 4), full.subarray(0, 7)]);
  const out = await readFromReplicas(refs(2), piece({ lastTry: true }), s.readOne);
  assert.equal(out.kind, 'failed');
});

test('every replica ending at the same place in a middle chunk is a hole: zeros after the data', async () => {
  const s = script([full.subarray(0, 4), full.subarray(0, 4)]);
  const out = await readFromReplicas(refs(2), piece(), s.readOne);
  assert.equal(out.kind, 'data');
  assert.deepEqual((out as { data: Buffer }).data, Buffer.concat([full.subarray(0, 4), Buffer.alloc(6)]));
});

test('in the last chunk agreeing short answers end the data, unpadded', async () => {
  const s = script([full.subarray(0, 4), full.subarray(0, 4)]);
  const out = await readFromReplicas(refs(2), piece({ tail: true }), s.readOne);
  assert.deepEqual(out, { kind: 'data', data: full.subarray(0, 4) });
});

test('in the last chunk, disagreement fails until the last try, which takes the longest when every replica answered', async () => {
  const answers = [full.subarray(0, 4), full.subarray(0, 5), full.subarray(0, 6)];
  assert.equal((await readFromReplicas(refs(3), piece({ tail: true }), script(answers).readOne)).kind, 'failed');
  const out = await readFromReplicas(refs(3), piece({ tail: true, lastTry: true }), script(answers).readOne);
  assert.deepEqual(out, { kind: 'data', data: full.subarray(0, 6) });
});

test('in the last chunk, a replica that failed may hold more: short answers with a failure are no end of file', async () => {
  // Seen in the partition suite: a reader that reached only a lagging replica took its length for the end.
  const answers = [full.subarray(0, 4), new GfsError('UNAVAILABLE', 'down'), full.subarray(0, 6)];
  const out = await readFromReplicas(refs(3), piece({ tail: true, lastTry: true }), script(answers).readOne);
  assert.equal(out.kind, 'failed');
});

test('only failures: the last error is passed on as it is', async () => {
  const last = new GfsError('STALE_VERSION', 'old');
  const out = await readFromReplicas(refs(2), piece(), script([new GfsError('NOT_FOUND', 'gone'), last]).readOne);
  assert.deepEqual(out, { kind: 'failed', error: last });
});

test('a longer answer than asked is cut to the piece', async () => {
  const out = await readFromReplicas(refs(1), piece({ len: 3 }), script([full]).readOne);
  assert.deepEqual(out, { kind: 'data', data: full.subarray(0, 3) });
});
