// Removes compiled files whose source is gone (a moved or deleted .ts), so `npm test`,
// which runs every dist/test/**/*.test.js, never runs a test that no longer exists.
// Plain JavaScript: it runs before the TypeScript build.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dist = join(root, 'dist');

function walk(dir) {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.js')) {
      const rel = p.slice(dist.length + 1).replace(/\.js$/, '');
      if (!existsSync(join(root, `${rel}.ts`))) rmSync(p);
    }
  }
}
walk(dist);
