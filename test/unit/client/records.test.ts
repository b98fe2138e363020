import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frameRecord, parseRecords, recordMagic, recordHeaderBytes } from '../../../client/records.js';

function id(n: number): Buffer {
  return Buffer.alloc(16, n);
}

function parse(buf: Buffer) {
  return [...parseRecords(buf)].map((r) => ({ offset: r.offset, id: r.id, payload: r.payload.toString('latin1') }));
}

test('frame layout: magic, length, crc, id, payload', () => {
  const payload = Buffer.from('hello');
  const f = frameRecord(payload, id(1));
  assert.equal(f.length, recordHeaderBytes + 5);
  assert.deepEqual(f.subarray(0, 4), recordMagic);
  assert.equal(f.subarray(0, 4).toString('latin1'), 'GFR1');
  assert.equal(f.readUInt32LE(4), 5);
  assert.deepEqual(f.subarray(12, 28), id(1));
  assert.deepEqual(f.subarray(28), payload);
  assert.deepEqual(parse(f), [{ offset: 0, id: id(1).toString('hex'), payload: 'hello' }]);
});

test('frameRecord gives each record a fresh random id by default', () => {
  const a = [...parseRecords(frameRecord(Buffer.from('x')))][0]!;
  const b = [...parseRecords(frameRecord(Buffer.from('x')))][0]!;
  assert.match(a.id, /^[0-9a-f]{32}$/);
  assert.notEqual(a.id, b.id);
});

test('empty payloads and empty buffers', () => {
  assert.deepEqual(parse(Buffer.alloc(0)), []);
  assert.deepEqual(parse(Buffer.alloc(1000)), []);
  assert.deepEqual(parse(frameRecord(Buffer.alloc(0), id(2))), [{ offset: 0, id: id(2).toString('hex'), payload: '' }]);
});

test('records, zero padding, torn fragments and a duplicate: every whole frame, torn ones skipped', () => {
  const r1 = frameRecord(Buffer.from('first record'), id(1));
  const r2 = frameRecord(Buffer.from('second'), id(2));
  const r3 = frameRecord(Buffer.from('third, after the torn ones'), id(3));
  const cut = frameRecord(Buffer.from('this one was cut short by a failed append'), id(4)).subarray(0, 35);
  const flipped = Buffer.from(frameRecord(Buffer.from('a flipped payload byte'), id(5)));
  flipped[recordHeaderBytes + 3]! ^= 0x01;
  const badLen = Buffer.from(frameRecord(Buffer.from('length says more'), id(6)));
  badLen.writeUInt32LE(0xfffffff0, 4);
  const r7 = frameRecord(Buffer.from('last'), id(7));
  const parts = [r1, Buffer.alloc(100), r2, cut, flipped, badLen, r3, Buffer.alloc(13), r2, r7, Buffer.alloc(4096)];
  const buf = Buffer.concat(parts);
  const offsets: number[] = [];
  let o = 0;
  for (const p of parts) {
    offsets.push(o);
    o += p.length;
  }
  const got = parse(buf);
  assert.deepEqual(got, [
    { offset: offsets[0], id: id(1).toString('hex'), payload: 'first record' },
    { offset: offsets[2], id: id(2).toString('hex'), payload: 'second' },
    { offset: offsets[6], id: id(3).toString('hex'), payload: 'third, after the torn ones' },
    // the duplicate is a whole frame, yielded again: readers drop it by id
    { offset: offsets[8], id: id(2).toString('hex'), payload: 'second' },
    { offset: offsets[9], id: id(7).toString('hex'), payload: 'last' },
  ]);
  // deduplicating by id (as readRecords does) leaves each record once
  const seen = new Set<string>();
  const unique = got.filter((r) => !seen.has(r.id) && seen.add(r.id));
  assert.deepEqual(unique.map((r) => r.payload), ['first record', 'second', 'third, after the torn ones', 'last']);
});

test('a frame cut short at the end of the buffer is skipped, whatever the cut', () => {
  const whole = frameRecord(Buffer.from('whole'), id(1));
  const last = frameRecord(Buffer.from('the last one, torn'), id(2));
  for (let n = 0; n < last.length; n++) {
    const got = parse(Buffer.concat([whole, last.subarray(0, n)]));
    assert.deepEqual(got.map((r) => r.payload), ['whole'], `cut at ${n}`);
  }
  // a torn head followed by a whole record: the record is found, whatever the cut
  for (let n = 0; n < last.length; n++) {
    const got = parse(Buffer.concat([last.subarray(0, n), whole]));
    assert.deepEqual(got.map((r) => r.payload), ['whole'], `cut at ${n}`);
  }
});

test('any single flipped byte in a frame makes the frame disappear, never corrupts a neighbour', () => {
  const a = frameRecord(Buffer.from('alpha'), id(1));
  const b = frameRecord(Buffer.from('bravo bravo'), id(2));
  const c = frameRecord(Buffer.from('charlie'), id(3));
  for (let i = 0; i < b.length; i++) {
    const bad = Buffer.from(b);
    bad[i]! ^= 0x40;
    const got = parse(Buffer.concat([a, bad, c]));
    assert.deepEqual(got.map((r) => r.payload), ['alpha', 'charlie'], `byte ${i} flipped`);
  }
});

test('payloads containing the magic bytes still parse', () => {
  const tricky = [
    Buffer.from('GFR1'),
    Buffer.from('GFR1GFR1GFR1'),
    Buffer.concat([Buffer.from('xxGFR1'), Buffer.alloc(40, 0xff), Buffer.from('GFR1')]),
    // a payload that looks like a whole header with a plausible length
    Buffer.concat([recordMagic, Buffer.from([4, 0, 0, 0]), Buffer.alloc(24)]),
  ];
  const frames = tricky.map((p, i) => frameRecord(p, id(10 + i)));
  const buf = Buffer.concat([Buffer.alloc(7), ...frames.flatMap((f) => [f, Buffer.alloc(5)])]);
  const got = [...parseRecords(buf)];
  assert.equal(got.length, tricky.length);
  got.forEach((r, i) => {
    assert.deepEqual(r.payload, tricky[i]);
    assert.equal(r.id, id(10 + i).toString('hex'));
  });
  // the offsets point at the frames
  for (const r of got) assert.deepEqual(buf.subarray(r.offset, r.offset + 4), recordMagic);
});

test('a payload that is itself a whole frame yields only the outer record', () => {
  const inner = frameRecord(Buffer.from('inner'), id(1));
  const outer = frameRecord(Buffer.concat([Buffer.from('xx'), inner, Buffer.from('yy')]), id(2));
  const after = frameRecord(Buffer.from('after'), id(3));
  const got = parse(Buffer.concat([outer, after]));
  assert.deepEqual(got.map((r) => r.id), [id(2).toString('hex'), id(3).toString('hex')]);
});

test('a whole frame after a torn one whose payload holds the magic bytes is still found', () => {
  const torn = frameRecord(Buffer.from('GFR1 inside a torn record GFR1'), id(1)).subarray(0, 50);
  const whole = frameRecord(Buffer.from('GFR1 whole GFR1'), id(2));
  assert.deepEqual(parse(Buffer.concat([torn, whole])).map((r) => r.payload), ['GFR1 whole GFR1']);
});

test('random chunks: every appended frame is found in order among garbage', () => {
  let seed = 99;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (let round = 0; round < 200; round++) {
    const parts: Buffer[] = [];
    const expected: string[] = [];
    for (let i = 0; i < 20; i++) {
      const len = Math.floor(rnd() * 200);
      const payload = Buffer.alloc(len);
      for (let j = 0; j < len; j++) payload[j] = rnd() < 0.1 ? 'GFR1'.charCodeAt(j % 4) : Math.floor(rnd() * 256);
      const f = frameRecord(payload, id(i));
      const k = rnd();
      if (k < 0.6) {
        parts.push(f);
        expected.push(payload.toString('hex'));
      } else if (k < 0.75) parts.push(Buffer.alloc(Math.floor(rnd() * 64)));
      else if (k < 0.9) parts.push(f.subarray(0, Math.floor(rnd() * f.length)));
      else {
        const bad = Buffer.from(f);
        // a flipped byte in the payload, or in the crc when there is no payload
        bad[len > 0 ? recordHeaderBytes + Math.floor(rnd() * len) : 8]! ^= 0x01;
        parts.push(bad);
      }
    }
    const got = [...parseRecords(Buffer.concat(parts))].map((r) => r.payload.toString('hex'));
    assert.deepEqual(got, expected, `round ${round}`);
  }
});

test('followRecords: what is there, then each later record once, across chunk ends, duplicates and a torn tail', async () => {
  const { followRecords } = await import('../../../client/records.js');
  const cs = 128;
  let file = Buffer.alloc(0);
  const put = (b: Buffer) => (file = Buffer.concat([file, b]));
  const padTo = (n: number) => put(Buffer.alloc(n - file.length));
  const io = {
    appendRaw: async () => 0,
    extent: async () => ({ chunkSizeBytes: cs, sizeBytes: file.length, chunkCount: Math.ceil(file.length / cs), chunks: new Map(), fetchedAtMs: 0 }),
    read: async (_p: string, offset: number, length: number) => file.subarray(offset, offset + length),
  };
  put(frameRecord(Buffer.from('a'), id(1)));
  put(frameRecord(Buffer.from('a'), id(1))); // a retried append's duplicate
  const got: string[] = [];
  let polls = 0;
  const steps: (() => void)[] = [
    () => put(frameRecord(Buffer.from('torn!'), id(3)).subarray(0, 10)), // half a record at the end
    () => {
      file = file.subarray(0, file.length - 10); // (a reader never sees it whole: the append was retried)
      put(frameRecord(Buffer.from('b'), id(4)));
    },
    () => {
      padTo(cs); // the chunk is padded; the next record starts the next chunk
      put(frameRecord(Buffer.from('c'), id(5)));
      put(frameRecord(Buffer.from('b'), id(4))); // a duplicate in the next chunk
    },
  ];
  // stop() is asked once per poll: it makes the next change, and ends the follow after the last was seen.
  const stop = () => {
    if (polls < steps.length) steps[polls]!();
    return ++polls > steps.length;
  };
  for await (const r of followRecords(io, '/f', { intervalMs: 1, stop })) {
    got.push(r.payload.toString());
    if (r.payload.toString() === 'c') assert.equal(r.offset, cs, 'offsets are file offsets');
  }
  assert.deepEqual(got, ['a', 'b', 'c']);
});
