import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, ancestorsOf, parentOf, isUnder, baseName, joinPath, maxNameBytes, maxPathBytes } from '../../../shared/paths.js';
import { isGfsError } from '../../../shared/errors.js';

function refuses(raw: unknown, code: 'INVALID_PATH' | 'NAME_TOO_LONG' = 'INVALID_PATH'): void {
  assert.throws(() => normalizePath(raw), (e: unknown) => isGfsError(e, code) && e.status === 400, `should refuse ${JSON.stringify(raw)?.slice(0, 60)}`);
}

test('normalizePath accepts absolute paths and drops one trailing slash', () => {
  assert.equal(normalizePath('/'), '/');
  assert.equal(normalizePath('/a'), '/a');
  assert.equal(normalizePath('/a/b'), '/a/b');
  assert.equal(normalizePath('/a/b/'), '/a/b');
  assert.equal(normalizePath('/a b/ü-ñ.txt'), '/a b/ü-ñ.txt');
  assert.equal(normalizePath('/.hidden/..x/x..'), '/.hidden/..x/x..');
});

test('normalizePath refuses empty, relative and non-string paths', () => {
  for (const raw of ['', 'a', 'a/b', './a', '../a', ' /a']) refuses(raw);
  for (const raw of [undefined, null, 1, {}, ['/a']]) refuses(raw);
});

test('normalizePath refuses empty, . and .. segments', () => {
  for (const raw of ['//', '/a//b', '//a', '/a/b//', '/a/../b', '/..', '/a/..', '/./a', '/a/.', '/a/./b']) refuses(raw);
});

test('normalizePath refuses NUL and control characters', () => {
  for (const raw of ['/a\u0000b', '/a\nb', '/a\tb', '/a\rb', '/\u001f', '/a\u007f', '/\u0001/b']) refuses(raw);
});

test('normalizePath bounds name and path lengths in bytes', () => {
  const name255 = 'x'.repeat(maxNameBytes);
  assert.equal(normalizePath('/' + name255), '/' + name255);
  refuses('/' + 'x'.repeat(maxNameBytes + 1), 'NAME_TOO_LONG');
  // 128 two-byte characters = 256 bytes: too long although only 128 characters
  refuses('/' + 'é'.repeat(128), 'NAME_TOO_LONG');
  assert.equal(normalizePath('/' + 'é'.repeat(127)), '/' + 'é'.repeat(127));

  // a path of exactly maxPathBytes bytes is fine, one more is not
  const seg = '/' + 'y'.repeat(255); // 256 bytes
  const exact = seg.repeat(maxPathBytes / 256);
  assert.equal(Buffer.byteLength(exact), maxPathBytes);
  assert.equal(normalizePath(exact), exact);
  refuses(exact + '/z', 'NAME_TOO_LONG');
  refuses(('/' + 'é'.repeat(100)).repeat(21), 'NAME_TOO_LONG'); // 201 bytes * 21 = 4221 bytes
});

test('parentOf, baseName and joinPath', () => {
  assert.equal(parentOf('/'), '/');
  assert.equal(parentOf('/a'), '/');
  assert.equal(parentOf('/a/b'), '/a');
  assert.equal(parentOf('/a/b/c'), '/a/b');
  assert.equal(baseName('/'), '/');
  assert.equal(baseName('/a/b'), 'b');
  assert.equal(joinPath('/', 'a'), '/a');
  assert.equal(joinPath('/a', 'b'), '/a/b');
});

test('ancestorsOf lists proper ancestors root first', () => {
  assert.deepEqual(ancestorsOf('/'), []);
  assert.deepEqual(ancestorsOf('/a'), ['/']);
  assert.deepEqual(ancestorsOf('/a/b'), ['/', '/a']);
  assert.deepEqual(ancestorsOf('/a/b/c'), ['/', '/a', '/a/b']);
});

test('isUnder matches the root itself and paths below, not siblings with a common prefix', () => {
  assert.equal(isUnder('/a', '/a'), true);
  assert.equal(isUnder('/a/b', '/a'), true);
  assert.equal(isUnder('/a/b/c', '/a'), true);
  assert.equal(isUnder('/ab', '/a'), false);
  assert.equal(isUnder('/a-b/c', '/a'), false);
  assert.equal(isUnder('/b', '/a'), false);
  assert.equal(isUnder('/', '/a'), false);
  assert.equal(isUnder('/anything', '/'), true);
  assert.equal(isUnder('/', '/'), true);
});
