import type { EntryType } from './wire.js';

// The kinds of namespace entry as POSIX names them: the S_IFMT bits the
// kernel sees (the mount), the letter `ls -l` prints (the CLI), and the
// permission bits an entry has when nothing set them (entries from before
// modes were kept, and creations without a mode).

/** S_IFMT bits of each entry type (Linux values; sys/stat.h). */
export const typeBits: Readonly<Record<EntryType, number>> = {
  fifo: 0o010000,
  chardev: 0o020000,
  dir: 0o040000,
  blockdev: 0o060000,
  file: 0o100000,
  symlink: 0o120000,
  socket: 0o140000,
};
export const S_IFMT = 0o170000;

/** The entry type of a mode's S_IFMT bits; undefined for bits naming no type. */
export function typeOfMode(mode: number): EntryType | undefined {
  const bits = mode & S_IFMT;
  for (const [t, b] of Object.entries(typeBits) as [EntryType, number][]) if (b === bits) return t;
  return undefined;
}

/** The first letter of `ls -l`'s mode column. */
export const typeLetter: Readonly<Record<EntryType, string>> = { file: '-', dir: 'd', symlink: 'l', fifo: 'p', socket: 's', chardev: 'c', blockdev: 'b' };

/** Permission bits of an entry nothing set them for. */
export function defaultModeOf(type: EntryType): number {
  return type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644;
}

// A device number as glibc's makedev encodes it, in the 32 bits FUSE hands over: minor in bits
// 0-7 and 20-31, major in bits 8-19 (majors up to 4095, minors up to 2^20-1).
/** The major number of a device number (glibc's gnu_dev_major). */
export function devMajor(rdev: number): number {
  return ((rdev >>> 8) & 0xfff) >>> 0;
}
/** The minor number of a device number (glibc's gnu_dev_minor, low 32 bits). */
export function devMinor(rdev: number): number {
  return ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)) >>> 0;
}
