import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

// What `npm pack` puts in the package: the library's entry point and its types
// (package.json "exports"), the three programs, no tests. Installing the
// tarball in an empty folder and importing 'gfs' there is checked by hand (it
// needs the registry for the dependencies): see docs/client.md.

const root = resolve(import.meta.dirname, '../../..');

test('the packed package holds the library, its types and the programs, and no tests', { timeout: 120_000 }, () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const files = new Set((JSON.parse(out) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path));
  const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as { exports: Record<string, { types: string; import: string }>; bin: Record<string, string> };
  const entry = pkg.exports['.']!;
  for (const f of [entry.import, entry.types, ...Object.values(pkg.bin)]) assert.ok(files.has(f.replace(/^\.\//, '')), `${f} is not in the package`);
  assert.ok(files.has('README.md') && files.has('docs/client.md'));
  const tests = [...files].filter((f) => f.startsWith('dist/test/'));
  assert.deepEqual(tests, [], 'tests are not shipped');
});
