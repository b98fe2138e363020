import { GfsError } from './errors.js';

// A chunk handle is a 64-bit number written as 16 lower-case hex digits. It
// becomes part of a file name on chunkservers, so nothing but this exact
// shape is ever accepted from the wire.
const handleRe = /^[0-9a-f]{16}$/;

export function isHandle(h: unknown): h is string {
  return typeof h === 'string' && handleRe.test(h);
}

export function checkHandle(h: unknown): string {
  if (!isHandle(h)) throw new GfsError('INVALID_HANDLE', `invalid chunk handle: ${JSON.stringify(h)?.slice(0, 40)}`);
  return h;
}

export function handleFromBigInt(n: bigint): string {
  if (n < 0n || n >= 1n << 64n) throw new Error(`handle out of range: ${n}`);
  return n.toString(16).padStart(16, '0');
}

export function handleToBigInt(h: string): bigint {
  return BigInt('0x' + checkHandle(h));
}
