import { randomFillSync } from 'node:crypto';

// Small random values (request nonces, record ids) cut from a pool of CSPRNG
// bytes drawn 4 KiB at a time: as random as drawing each alone (the same
// generator, each byte handed out once), without randomBytes' per-call cost
// (~10 us here, and every signed request and every framed record paid it).

const pool = Buffer.allocUnsafe(4096);
let pos = pool.length;

/** Up to 64 fresh random bytes, as a buffer of their own. */
export function pooledRandomBytes(n: number): Buffer {
  if (!(n >= 1 && n <= 64)) throw new RangeError(`pooledRandomBytes takes 1 to 64 bytes, not ${n}`);
  if (pos + n > pool.length) {
    randomFillSync(pool);
    pos = 0;
  }
  const out = Buffer.from(pool.subarray(pos, pos + n));
  pos += n;
  return out;
}
