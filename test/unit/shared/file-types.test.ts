import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { defaultModeOf, devMajor, devMinor, typeBits, typeLetter, typeOfMode } from '../../../shared/file-types.js';

// Entry types against the kernel's S_IFMT values (node's fs.constants are the platform's own).

test('type bits are the platform\'s S_IF* values, and a mode maps back to its type', () => {
  assert.deepEqual(typeBits, {
    fifo: constants.S_IFIFO,
    chardev: constants.S_IFCHR,
    dir: constants.S_IFDIR,
    blockdev: constants.S_IFBLK,
    file: constants.S_IFREG,
    symlink: constants.S_IFLNK,
    socket: constants.S_IFSOCK,
  });
  assert.equal(typeOfMode(constants.S_IFIFO | 0o644), 'fifo');
  assert.equal(typeOfMode(constants.S_IFSOCK | 0o755), 'socket');
  assert.equal(typeOfMode(constants.S_IFREG), 'file');
  assert.equal(typeOfMode(0o644), undefined, 'no type bits');
  assert.deepEqual(Object.values(typeLetter).join(''), '-dlpscb');
  assert.deepEqual([defaultModeOf('dir'), defaultModeOf('symlink'), defaultModeOf('fifo')], [0o755, 0o777, 0o644]);
});

test('device numbers split as glibc\'s major() and minor() do', () => {
  // makedev(1, 3) = /dev/null; makedev(8, 17); makedev(4095, 0xfffff) in 32 bits
  assert.deepEqual([devMajor(0x103), devMinor(0x103)], [1, 3]);
  assert.deepEqual([devMajor((8 << 8) | 17), devMinor((8 << 8) | 17)], [8, 17]);
  const big = ((0xfff00 << 12) | (0xfff << 8) | 0xff) >>> 0;
  assert.deepEqual([devMajor(big), devMinor(big)], [4095, 0xfffff]);
});
