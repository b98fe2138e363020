// Builds fuse-native's C binding with three fixes the mount needs for POSIX times and owners
// (issue 20), into build/fuse-native/fuse.node; client/mount-binding.ts loads it in place of the
// package's own build when present. Plain JavaScript: it runs after the TypeScript build.
//
// 1. utimens handed JavaScript the access time twice (its mtime argument was atime), so tar's
//    utimensat(UTIME_OMIT, mtime) lost the mtime: mtime is passed.
// 2. UTIME_NOW and UTIME_OMIT (tv_nsec 2^30-1 and 2^30-2) both became 1073 ms: they are passed as
//    2^53-1 and 2^53-2 (client/mount-fs.ts fuseTimeNow/fuseTimeOmit).
//    And libfuse is told so (flag_utime_omit_ok): without it, libfuse 2 drops a utimens that sets
//    only one of the two times (touch -m, and tar, which sets mtime with atime UTIME_OMIT).
// 3. The calling process's uid and gid (FUSE's context) were not passed: each call stores them and
//    fuse_native_caller_uid()/_gid() return them while JavaScript handles the call (the handler runs
//    synchronously on the main thread, so they belong to the call being handled).
//
// Never fails the build: without a C compiler, Node's headers or libfuse2 it says why and exits 0,
// and the mount uses the package's binding (times then as described in client/mount-fs.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const require = createRequire(join(root, 'package.json'));
const outDir = join(root, 'build', 'fuse-native');
const out = join(outDir, 'fuse.node');

function skip(why) {
  process.stderr.write(`build-fuse-binding: skipped (${why}); gfs mount uses fuse-native's own binding\n`);
  process.exit(0);
}

if (process.platform !== 'linux') skip(`not Linux: ${process.platform}`);
let pkgDir;
try {
  pkgDir = dirname(require.resolve('fuse-native/package.json'));
} catch {
  skip('fuse-native is not installed');
}
const source = join(pkgDir, 'fuse-native.c');
const self = new URL(import.meta.url).pathname;
if (existsSync(out) && statSync(out).mtimeMs > Math.max(statSync(source).mtimeMs, statSync(self).mtimeMs)) process.exit(0);

let c = readFileSync(source, 'utf8');
function patch(from, to) {
  const n = c.split(from).length - 1;
  if (n !== 1) skip(`fuse-native.c is not the version this patch knows (${JSON.stringify(from.slice(0, 60))} found ${n} times)`);
  c = c.replace(from, to);
}
patch('  FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)', '  FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)');
patch(
  'static uint64_t timespec_to_uint64 (const struct timespec* ts) {',
  `#ifndef UTIME_NOW
#define UTIME_NOW ((1l << 30) - 1l)
#define UTIME_OMIT ((1l << 30) - 2l)
#endif
static uint64_t timespec_to_uint64 (const struct timespec* ts) {
  if (ts->tv_nsec == UTIME_NOW) return 9007199254740991ULL;
  if (ts->tv_nsec == UTIME_OMIT) return 9007199254740990ULL;`,
);
patch('  if (implemented[op_utimens]) ops.utimens = fuse_native_utimens;', '  if (implemented[op_utimens]) ops.utimens = fuse_native_utimens;\n  ops.flag_utime_omit_ok = 1;');
patch('static int IS_ARRAY_BUFFER_DETACH_SUPPORTED = 0;', 'static int IS_ARRAY_BUFFER_DETACH_SUPPORTED = 0;\nstatic uint32_t gfs_caller_uid = 0;\nstatic uint32_t gfs_caller_gid = 0;');
patch('  l->op_fn = fuse_native_dispatch_##name;\\\n', '  l->op_fn = fuse_native_dispatch_##name;\\\n  l->caller_uid = fuse_get_context()->uid;\\\n  l->caller_gid = fuse_get_context()->gid;\\\n');
patch('      callbackBlk\\\n      NAPI_MAKE_CALLBACK', '      callbackBlk\\\n      gfs_caller_uid = l->caller_uid;\\\n      gfs_caller_gid = l->caller_gid;\\\n      NAPI_MAKE_CALLBACK');
patch('  uid_t uid;\n  gid_t gid;\n', '  uid_t uid;\n  gid_t gid;\n  uid_t caller_uid;\n  gid_t caller_gid;\n');
patch(
  'NAPI_INIT() {',
  `NAPI_METHOD(fuse_native_caller_uid) {
  NAPI_RETURN_UINT32(gfs_caller_uid)
}

NAPI_METHOD(fuse_native_caller_gid) {
  NAPI_RETURN_UINT32(gfs_caller_gid)
}

NAPI_INIT() {
  NAPI_EXPORT_FUNCTION(fuse_native_caller_uid)
  NAPI_EXPORT_FUNCTION(fuse_native_caller_gid)`,
);

const nodeInclude = join(dirname(dirname(process.execPath)), 'include', 'node');
if (!existsSync(join(nodeInclude, 'node_api.h'))) skip(`Node's headers are not at ${nodeInclude}`);
let napiMacros;
let fuseInclude;
try {
  napiMacros = dirname(require.resolve('napi-macros/napi-macros.h'));
  fuseInclude = join(dirname(require.resolve('fuse-shared-library-linux/package.json')), 'libfuse', 'include');
} catch (e) {
  skip(`a header package is missing: ${e.message}`);
}
mkdirSync(outDir, { recursive: true });
const patched = join(outDir, 'fuse-native.c');
writeFileSync(patched, c);
try {
  const tmp = `${out}.tmp`;
  execFileSync('cc', ['-shared', '-fPIC', '-O2', '-D_FILE_OFFSET_BITS=64', '-I', nodeInclude, '-I', napiMacros, '-I', fuseInclude, patched, '-o', tmp, '-l:libfuse.so.2', '-lpthread'], { stdio: ['ignore', 'ignore', 'pipe'] });
  renameSync(tmp, out);
} catch (e) {
  skip(`cc failed: ${String(e.stderr ?? e.message).split('\n').slice(0, 3).join(' ')}`);
}
