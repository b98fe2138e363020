import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SerialOrder, type OpResult } from '../../../chunkserver/serial-order.js';

// The secondary's ordering of forwarded mutations, without processes: serials
// run in order, gaps are held back (bounded, timed out), duplicates get the
// earlier result.

/** A run function that records its serial in `log` and resolves when released (or at once). */
function recorder(log: number[]) {
  const gates = new Map<number, () => void>();
  const make = (serial: number, result: OpResult = { ok: true }, hold = false) => async (): Promise<OpResult> => {
    if (hold) await new Promise<void>((r) => gates.set(serial, r));
    log.push(serial);
    return result;
  };
  return { make, release: (serial: number) => gates.get(serial)!() };
}

describe('SerialOrder', () => {
  it('runs serials in order whatever order they arrive in', async () => {
    const order = new SerialOrder({ gapTimeoutMs: 10_000 });
    const log: number[] = [];
    const { make } = recorder(log);
    const p3 = order.submit('h@1/s', 3, 0, make(3));
    const p2 = order.submit('h@1/s', 2, 0, make(2));
    assert.equal(order.held, 2);
    assert.deepEqual(log, []);
    const p1 = order.submit('h@1/s', 1, 0, make(1));
    assert.deepEqual(await Promise.all([p1, p2, p3]), [{ ok: true }, { ok: true }, { ok: true }]);
    assert.deepEqual(log, [1, 2, 3]);
    assert.equal(order.held, 0);
    assert.equal(order.counters.heldBack, 2);
  });

  it('does not start the next serial before the running one has finished', async () => {
    const order = new SerialOrder({ gapTimeoutMs: 10_000 });
    const log: number[] = [];
    const { make, release } = recorder(log);
    const p1 = order.submit('k', 1, 0, make(1, { ok: true }, true));
    const p2 = order.submit('k', 2, 0, make(2));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(log, [], 'serial 2 ran while serial 1 was still running');
    release(1);
    await Promise.all([p1, p2]);
    assert.deepEqual(log, [1, 2]);
  });

  it('answers a duplicate with the earlier result and never runs it twice', async () => {
    const order = new SerialOrder({ gapTimeoutMs: 10_000 });
    const log: number[] = [];
    const { make } = recorder(log);
    const failed: OpResult = { ok: false, code: 'UNKNOWN_DATA', error: 'gone' };
    assert.deepEqual(await order.submit('k', 1, 0, make(1, failed)), failed);
    assert.deepEqual(await order.submit('k', 1, 0, make(1)), failed);
    // A duplicate of a serial still held back shares its answer.
    const p3 = order.submit('k', 3, 0, make(3));
    const p3again = order.submit('k', 3, 0, make(3));
    await order.submit('k', 2, 0, make(2));
    assert.deepEqual(await p3, { ok: true });
    assert.deepEqual(await p3again, { ok: true });
    assert.deepEqual(log, [1, 2, 3]);
    assert.equal(order.counters.duplicates, 2);
  });

  it('fails a serial whose gap never fills, and runs it when sent again after the gap filled', async () => {
    const order = new SerialOrder({ gapTimeoutMs: 30 });
    const log: number[] = [];
    const { make } = recorder(log);
    const r = await order.submit('k', 2, 0, make(2));
    assert.equal(r.ok, false);
    assert.equal(r.code, 'SERIAL_GAP');
    assert.match(r.error!, /waiting for serial 1/);
    assert.deepEqual(log, []);
    assert.equal(order.held, 0);
    await order.submit('k', 1, 0, make(1));
    assert.deepEqual(await order.submit('k', 2, 0, make(2)), { ok: true });
    assert.deepEqual(log, [1, 2]);
    assert.equal(order.counters.gapTimeouts, 1);
  });

  it('bounds the serials it holds back', async () => {
    const order = new SerialOrder({ gapTimeoutMs: 10_000, maxHeldPerSpace: 2 });
    const log: number[] = [];
    const { make } = recorder(log);
    const held = [order.submit('k', 2, 0, make(2)), order.submit('k', 3, 0, make(3))];
    const refused = await order.submit('k', 4, 0, make(4));
    assert.equal(refused.code, 'SERIAL_BUSY');
    assert.equal(order.held, 2);
    await order.submit('k', 1, 0, make(1));
    await Promise.all(held);
    assert.deepEqual(log, [1, 2, 3]);
    // The refused serial was not run; sent again it runs.
    assert.deepEqual(await order.submit('k', 4, 0, make(4)), { ok: true });
    assert.deepEqual(log, [1, 2, 3, 4]);
  });

  it('keeps spaces apart: a new version starts again at serial 1', async () => {
    const order = new SerialOrder({ gapTimeoutMs: 10_000 });
    const log: number[] = [];
    const { make } = recorder(log);
    await order.submit('h@1/s', 1, 0, make(1));
    await order.submit('h@1/s', 2, 0, make(2));
    assert.deepEqual(await order.submit('h@2/s', 1, 0, make(101)), { ok: true });
    assert.deepEqual(log, [1, 2, 101]);
  });

  it('resumes after ackedThrough in a space it does not know (restarted secondary)', async () => {
    const order = new SerialOrder({ gapTimeoutMs: 10_000 });
    const log: number[] = [];
    const { make } = recorder(log);
    assert.deepEqual(await order.submit('k', 41, 40, make(41)), { ok: true });
    // And ackedThrough moving on releases a serial held behind a gap the primary has answers for.
    const p43 = order.submit('k', 43, 40, make(43));
    assert.deepEqual(await order.submit('k', 44, 42, make(44)), { ok: true });
    assert.deepEqual(await p43, { ok: true });
    assert.deepEqual(log, [41, 43, 44]);
  });

  it('forgets old results beyond its bound and says so', async () => {
    const order = new SerialOrder({ gapTimeoutMs: 10_000, maxResults: 2 });
    const log: number[] = [];
    const { make } = recorder(log);
    for (let s = 1; s <= 4; s++) await order.submit('k', s, 0, make(s));
    const old = await order.submit('k', 1, 0, make(1));
    assert.equal(old.code, 'STALE_SERIAL');
    assert.deepEqual(await order.submit('k', 4, 0, make(4)), { ok: true });
    assert.deepEqual(log, [1, 2, 3, 4]);
  });

  it('turns a throwing run into a failed result and goes on', async () => {
    const order = new SerialOrder({ gapTimeoutMs: 10_000 });
    const r = await order.submit('k', 1, 0, async () => {
      throw new Error('disk on fire');
    });
    assert.deepEqual(r, { ok: false, code: 'INTERNAL', error: 'disk on fire' });
    assert.deepEqual(await order.submit('k', 2, 0, async () => ({ ok: true })), { ok: true });
  });
});
