// Loads fuse-native, with the binding scripts/build-fuse-binding.mjs builds when there is one: it
// passes utimens's mtime, tells UTIME_NOW from UTIME_OMIT, and names the calling process (uid, gid).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type FuseNative from 'fuse-native';

const require = createRequire(import.meta.url);

/** From dist/client/ (and client/ when run from source): the repository's build/fuse-native. */
const patchedPath = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'fuse-native', 'fuse.node');

interface PatchedBinding {
  fuse_native_caller_uid(): number;
  fuse_native_caller_gid(): number;
}

let loaded: { Fuse: typeof FuseNative; patched?: PatchedBinding } | undefined;

/**
 * fuse-native, loaded once. Its index.js takes its binding from node-gyp-build(its directory); while
 * it loads, that call answers with the patched binding instead (GFS_FUSE_BINDING=stock keeps the
 * package's own). Throws what fuse-native throws when it cannot load.
 */
export function loadFuseNative(): { Fuse: typeof FuseNative; patched?: PatchedBinding } {
  if (loaded) return loaded;
  const usePatched = process.env.GFS_FUSE_BINDING !== 'stock' && existsSync(patchedPath);
  if (!usePatched) return (loaded = { Fuse: require('fuse-native') as typeof FuseNative });
  const pkgDir = dirname(require.resolve('fuse-native/package.json'));
  const ngbPath = require.resolve('node-gyp-build', { paths: [pkgDir] });
  const ngb = require(ngbPath) as (dir: string) => unknown;
  const cached = require.cache[ngbPath]!;
  const patched = require(patchedPath) as PatchedBinding;
  cached.exports = (dir: string) => (resolve(dir) === pkgDir ? patched : ngb(dir));
  try {
    return (loaded = { Fuse: require('fuse-native') as typeof FuseNative, patched });
  } finally {
    cached.exports = ngb;
  }
}

/** Which binding the mount uses: 'patched' (exact utimens, the caller's uid/gid) or 'stock'. */
export function fuseBinding(): 'patched' | 'stock' {
  return loadFuseNative().patched ? 'patched' : 'stock';
}

/**
 * The uid and gid of the process whose call is being handled, with the patched binding (read in the
 * synchronous part of a handler); undefined with the stock one.
 */
export function fuseCaller(): { uid: number; gid: number } | undefined {
  const b = loaded?.patched;
  return b ? { uid: b.fuse_native_caller_uid(), gid: b.fuse_native_caller_gid() } : undefined;
}
