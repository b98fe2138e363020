import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pooledRandomBytes } from '../../../shared/random-pool.js';

// The pool of random bytes behind nonces and record ids (shared/random-pool.ts).

describe('pooledRandomBytes', () => {
  it('hands out distinct values of the asked length, across refills, each its own copy', () => {
    const seen = new Set<string>();
    let first: Buffer | undefined;
    let firstHex = '';
    // 1000 x 16 bytes: the 4 KiB pool refills several times.
    for (let i = 0; i < 1000; i++) {
      const b = pooledRandomBytes(16);
      assert.equal(b.length, 16);
      seen.add(b.toString('hex'));
      if (!first) {
        first = b;
        firstHex = b.toString('hex');
      }
    }
    assert.equal(seen.size, 1000);
    // A refill must not change a value handed out earlier.
    assert.equal(first!.toString('hex'), firstHex);
    assert.equal(pooledRandomBytes(64).length, 64);
  });

  it('refuses sizes outside 1..64', () => {
    assert.throws(() => pooledRandomBytes(0), RangeError);
    assert.throws(() => pooledRandomBytes(65), RangeError);
  });
});
