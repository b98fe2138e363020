import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { ListEntry } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { authHeaders } from '../helpers/signed.js';

// Invariant 6 against a live master: bad input gets a clear 4xx with a JSON
// body {error, code}, and changes nothing (the whole namespace, mtimes
// included, and the operation log are the same before and after).

interface Case {
  name: string;
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  /** An object is sent as JSON; a string or Buffer as is; a function gives a fresh stream. */
  body?: unknown;
  contentType?: string;
  status: number;
  code?: string;
}

const MiB = 1024 * 1024;
const longName = 'n'.repeat(256);
const longPath = '/' + Array.from({ length: 25 }, () => 'd'.repeat(200)).join('/');

const cases: Case[] = [
  // ---- malformed bodies ----
  { name: 'truncated JSON', path: '/api/mkdir', body: '{"path": "/x"', status: 400, code: 'BAD_REQUEST' },
  { name: 'not JSON at all', path: '/api/create', body: 'path=/x', status: 400, code: 'BAD_REQUEST' },
  { name: 'JSON null', path: '/api/mkdir', body: 'null', status: 400, code: 'BAD_REQUEST' },
  { name: 'JSON array', path: '/api/mkdir', body: '["/x"]', status: 400, code: 'BAD_REQUEST' },
  { name: 'JSON string', path: '/api/delete', body: '"/a"', status: 400, code: 'BAD_REQUEST' },
  { name: 'body as text/plain', path: '/api/mkdir', body: '{"path":"/x"}', contentType: 'text/plain', status: 400, code: 'BAD_REQUEST' },
  { name: 'empty body', path: '/api/rename', body: '', status: 400, code: 'BAD_REQUEST' },
  // ---- wrong types ----
  { name: 'path is a number', path: '/api/mkdir', body: { path: 5 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'path is an array', path: '/api/create', body: { path: ['/x'] }, status: 400, code: 'BAD_REQUEST' },
  { name: 'path is null', path: '/api/delete', body: { path: null }, status: 400, code: 'BAD_REQUEST' },
  { name: 'parents is a string', path: '/api/mkdir', body: { path: '/x', parents: 'yes' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'recursive is a number', path: '/api/delete', body: { path: '/a', recursive: 1 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'replication is a string', path: '/api/create', body: { path: '/x', replication: '3' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'replication 0', path: '/api/create', body: { path: '/x', replication: 0 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'replication 17', path: '/api/create', body: { path: '/x', replication: 17 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'replication 2.5', path: '/api/create', body: { path: '/x', replication: 2.5 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'exclusive is a string', path: '/api/create', body: { path: '/x', exclusive: 'no' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'negative startIndex', path: '/api/chunks', body: { path: '/a/f', startIndex: -1, count: 1 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'count 0', path: '/api/chunks', body: { path: '/a/f', startIndex: 0, count: 0 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'count a string', path: '/api/chunks', body: { path: '/a/f', startIndex: 0, count: '1' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'negative chunk index', path: '/api/allocate', body: { path: '/a/f', index: -1 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'absurd chunk index', path: '/api/allocate', body: { path: '/a/f', index: 2 ** 41 }, status: 400, code: 'BAD_REQUEST' },
  // ---- missing fields ----
  { name: 'mkdir without path', path: '/api/mkdir', body: {}, status: 400, code: 'BAD_REQUEST' },
  { name: 'mkdir with only parents', path: '/api/mkdir', body: { parents: true }, status: 400, code: 'BAD_REQUEST' },
  { name: 'rename without dst', path: '/api/rename', body: { src: '/a/f' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'chunks without count', path: '/api/chunks', body: { path: '/a/f', startIndex: 0 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'lease without handle', path: '/api/lease', body: {}, status: 400, code: 'BAD_REQUEST' },
  // ---- unknown extra fields ----
  { name: 'mkdir with an extra field', path: '/api/mkdir', body: { path: '/x', owner: 'root' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'create with an extra field', path: '/api/create', body: { path: '/x', owner: 'root' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'rename with an extra field', path: '/api/rename', body: { src: '/a/f', dst: '/a/g', force: true }, status: 400, code: 'BAD_REQUEST' },
  { name: 'delete with an extra field', path: '/api/delete', body: { path: '/keep', force: true }, status: 400, code: 'BAD_REQUEST' },
  // ---- bad paths ----
  { name: "'..' segment", path: '/api/mkdir', body: { path: '/a/../x' }, status: 400, code: 'INVALID_PATH' },
  { name: "path '/..'", path: '/api/mkdir', body: { path: '/..' }, status: 400, code: 'INVALID_PATH' },
  { name: "'.' segment", path: '/api/create', body: { path: '/a/./x' }, status: 400, code: 'INVALID_PATH' },
  { name: 'empty segment', path: '/api/mkdir', body: { path: '/a//x' }, status: 400, code: 'INVALID_PATH' },
  { name: "path '//'", path: '/api/mkdir', body: { path: '//' }, status: 400, code: 'INVALID_PATH' },
  { name: 'empty path', path: '/api/create', body: { path: '' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'relative path', path: '/api/create', body: { path: 'a/x' }, status: 400, code: 'INVALID_PATH' },
  { name: 'NUL in a path', path: '/api/create', body: { path: '/a/x\u0000y' }, status: 400, code: 'INVALID_PATH' },
  { name: 'newline in a path', path: '/api/mkdir', body: { path: '/a/x\ny' }, status: 400, code: 'INVALID_PATH' },
  { name: 'name over 255 bytes', path: '/api/create', body: { path: `/a/${longName}` }, status: 400, code: 'NAME_TOO_LONG' },
  { name: 'path over 4096 bytes', path: '/api/mkdir', body: { path: longPath, parents: true }, status: 400 },
  { name: "rename to a '..' path", path: '/api/rename', body: { src: '/a/f', dst: '/a/../g' }, status: 400, code: 'INVALID_PATH' },
  { name: "rename from a '..' path", path: '/api/rename', body: { src: '/b/../a/f', dst: '/g' }, status: 400, code: 'INVALID_PATH' },
  { name: "delete of a '..' path", path: '/api/delete', body: { path: '/a/f/..', recursive: true }, status: 400, code: 'INVALID_PATH' },
  { name: 'mkdir of the reserved trash', path: '/api/mkdir', body: { path: '/.trash' }, status: 400, code: 'INVALID_PATH' },
  { name: 'mkdir -p in the reserved trash', path: '/api/mkdir', body: { path: '/.trash/x/y', parents: true }, status: 400, code: 'INVALID_PATH' },
  { name: 'create in the reserved trash', path: '/api/create', body: { path: '/.trash/x' }, status: 400, code: 'INVALID_PATH' },
  { name: 'rename into the reserved trash', path: '/api/rename', body: { src: '/keep', dst: '/.trash/keep' }, status: 400, code: 'INVALID_PATH' },
  // ---- well-formed but refused by the namespace ----
  { name: 'create over an existing file', path: '/api/create', body: { path: '/a/f' }, status: 409, code: 'EXISTS' },
  { name: 'mkdir over an existing file', path: '/api/mkdir', body: { path: '/keep' }, status: 409, code: 'EXISTS' },
  { name: 'create in a missing directory', path: '/api/create', body: { path: '/nodir/f' }, status: 404, code: 'NOT_FOUND' },
  { name: 'create under a file', path: '/api/create', body: { path: '/a/f/x' }, status: 409, code: 'NOT_A_DIRECTORY' },
  { name: 'rename of a missing file', path: '/api/rename', body: { src: '/missing', dst: '/z' }, status: 404, code: 'NOT_FOUND' },
  { name: 'rename of a directory into itself', path: '/api/rename', body: { src: '/a', dst: '/a/sub' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'rename of the root', path: '/api/rename', body: { src: '/', dst: '/r' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'rename onto an existing file', path: '/api/rename', body: { src: '/keep', dst: '/a/f' }, status: 409, code: 'EXISTS' },
  { name: 'delete of the root', path: '/api/delete', body: { path: '/', recursive: true }, status: 400, code: 'BAD_REQUEST' },
  { name: 'delete of a non-empty directory', path: '/api/delete', body: { path: '/a' }, status: 409, code: 'NOT_EMPTY' },
  { name: 'delete of a missing file', path: '/api/delete', body: { path: '/missing' }, status: 404, code: 'NOT_FOUND' },
  { name: 'chunks of a directory', path: '/api/chunks', body: { path: '/a', startIndex: 0, count: 1 }, status: 409, code: 'IS_A_DIRECTORY' },
  { name: 'allocate in a missing file', path: '/api/allocate', body: { path: '/missing', index: 0 }, status: 404, code: 'NOT_FOUND' },
  { name: "snapshot to a '..' path", path: '/api/snapshot', body: { src: '/a', dst: '/b/../x' }, status: 400, code: 'INVALID_PATH' },
  { name: 'snapshot with an extra field', path: '/api/snapshot', body: { src: '/a', dst: '/x', deep: true }, status: 400, code: 'BAD_REQUEST' },
  { name: 'snapshot of a missing path', path: '/api/snapshot', body: { src: '/missing', dst: '/x' }, status: 404, code: 'NOT_FOUND' },
  { name: 'snapshot onto an existing file', path: '/api/snapshot', body: { src: '/a', dst: '/keep' }, status: 409, code: 'EXISTS' },
  { name: 'snapshot into itself', path: '/api/snapshot', body: { src: '/a', dst: '/a/snap' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'snapshot into the reserved trash', path: '/api/snapshot', body: { src: '/a', dst: '/.trash/a' }, status: 400, code: 'INVALID_PATH' },
  { name: "undelete of a '..' path", path: '/api/undelete', body: { path: '/a/..' }, status: 400, code: 'INVALID_PATH' },
  { name: 'undelete of something never deleted', path: '/api/undelete', body: { path: '/never' }, status: 404, code: 'NOT_FOUND' },
  // ---- POSIX attributes and symbolic links (issue 20) ----
  { name: 'chmod with a mode over 07777', path: '/api/setattr', body: { path: '/a/f', mode: 0o10000 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'chmod with a fractional mode', path: '/api/setattr', body: { path: '/a/f', mode: 1.5 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'chown to a negative uid', path: '/api/setattr', body: { path: '/a/f', uid: -1 }, status: 400, code: 'BAD_REQUEST' },
  { name: "chown to uid 2^32-1 (chown's 'unchanged')", path: '/api/setattr', body: { path: '/a/f', gid: 0xffffffff }, status: 400, code: 'BAD_REQUEST' },
  { name: 'utimens with ns over 999999', path: '/api/setattr', body: { path: '/a/f', mtime: { ms: 1, ns: 1_000_000 } }, status: 400, code: 'BAD_REQUEST' },
  { name: 'utimens with a time as a string', path: '/api/setattr', body: { path: '/a/f', atime: 'later' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'setattr with an extra field', path: '/api/setattr', body: { path: '/a/f', mode: 0o600, sticky: true }, status: 400, code: 'BAD_REQUEST' },
  { name: 'setattr of a missing path', path: '/api/setattr', body: { path: '/missing', mode: 0o600 }, status: 404, code: 'NOT_FOUND' },
  { name: 'setattr of a name over 255 bytes', path: '/api/setattr', body: { path: `/a/${longName}`, mode: 0o600 }, status: 400, code: 'NAME_TOO_LONG' },
  { name: 'symlink with an empty target', path: '/api/symlink', body: { path: '/a/l', target: '' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'symlink with a target over 4096 bytes', path: '/api/symlink', body: { path: '/a/l', target: 'é'.repeat(2049) }, status: 400, code: 'NAME_TOO_LONG' },
  { name: 'symlink over an existing file', path: '/api/symlink', body: { path: '/a/f', target: 'x' }, status: 409, code: 'EXISTS' },
  { name: 'symlink named over 255 bytes', path: '/api/symlink', body: { path: `/a/${longName}`, target: 'x' }, status: 400, code: 'NAME_TOO_LONG' },
  { name: 'symlink in the reserved trash', path: '/api/symlink', body: { path: '/.trash/l', target: 'x' }, status: 400, code: 'INVALID_PATH' },
  { name: 'create with a mode over 07777', path: '/api/create', body: { path: '/a/m', mode: 0o170000 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'truncate to a negative length', path: '/api/truncate', body: { path: '/a/f', sizeBytes: -1 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'truncate past the largest file', path: '/api/truncate', body: { path: '/a/f', sizeBytes: 2 ** 51 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'truncate of a directory', path: '/api/truncate', body: { path: '/a', sizeBytes: 0 }, status: 409, code: 'IS_A_DIRECTORY' },
  { name: 'truncate of a missing file', path: '/api/truncate', body: { path: '/a/missing', sizeBytes: 0 }, status: 404, code: 'NOT_FOUND' },
  { name: 'truncate in the reserved trash', path: '/api/truncate', body: { path: '/.trash/f', sizeBytes: 0 }, status: 400, code: 'INVALID_PATH' },
  { name: 'mknod of an unknown type', path: '/api/mknod', body: { path: '/a/n', type: 'door' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'mknod of a FIFO with a device number', path: '/api/mknod', body: { path: '/a/n', type: 'fifo', rdev: 5 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'mknod with a device number over 2^32-1', path: '/api/mknod', body: { path: '/a/n', type: 'chardev', rdev: 2 ** 32 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'mknod over an existing file', path: '/api/mknod', body: { path: '/a/f', type: 'socket' }, status: 409, code: 'EXISTS' },
  { name: 'mknod in a missing directory', path: '/api/mknod', body: { path: '/nope/n', type: 'fifo' }, status: 404, code: 'NOT_FOUND' },
  { name: 'mknod in the reserved trash', path: '/api/mknod', body: { path: '/.trash/n', type: 'fifo' }, status: 400, code: 'INVALID_PATH' },
  { name: 'hard link to a directory', path: '/api/link', body: { src: '/a', dst: '/a2' }, status: 403, code: 'NOT_PERMITTED' },
  { name: 'hard link over an existing file', path: '/api/link', body: { src: '/a/f', dst: '/keep' }, status: 409, code: 'EXISTS' },
  { name: 'hard link of a missing file', path: '/api/link', body: { src: '/missing', dst: '/l' }, status: 404, code: 'NOT_FOUND' },
  { name: 'hard link in a missing directory', path: '/api/link', body: { src: '/a/f', dst: '/nope/l' }, status: 404, code: 'NOT_FOUND' },
  { name: 'hard link under a file', path: '/api/link', body: { src: '/a/f', dst: '/keep/l' }, status: 409, code: 'NOT_A_DIRECTORY' },
  { name: 'hard link into the reserved trash', path: '/api/link', body: { src: '/a/f', dst: '/.trash/l' }, status: 400, code: 'INVALID_PATH' },
  { name: 'hard link with an extra field', path: '/api/link', body: { src: '/a/f', dst: '/l', symbolic: true }, status: 400, code: 'BAD_REQUEST' },
  { name: "hard link to a '..' path", path: '/api/link', body: { src: '/a/f', dst: '/a/../l' }, status: 400, code: 'INVALID_PATH' },
  // ---- chunk handles ----
  { name: 'lease on an unknown handle', path: '/api/lease', body: { handle: '00000000deadbeef' }, status: 404, code: 'NOT_FOUND' },
  { name: 'lease on a malformed handle', path: '/api/lease', body: { handle: 'xyz' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'lease on an upper-case handle', path: '/api/lease', body: { handle: '00000000DEADBEEF' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'lease on a path-like handle', path: '/api/lease', body: { handle: '../../etc/passwd' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'lease on a 17-digit handle', path: '/api/lease', body: { handle: '000000000000000001' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'lease with a path but no index', path: '/api/lease', body: { handle: '00000000deadbeef', path: '/a/f' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'lease on a numeric handle', path: '/api/lease', body: { handle: 1 }, status: 400, code: 'BAD_REQUEST' },
  { name: 'lease confirm with a bad handle', path: '/api/cs/lease-confirm', body: { id: 'cs0', handle: 'zz' }, status: 400, code: 'BAD_REQUEST' },
  { name: 'register with a bad id', path: '/api/cs/register', body: { id: '../x', url: 'http://127.0.0.1:1', rack: 'r', capacityBytes: 1, usedBytes: 0, freeBytes: 1, chunks: [] }, status: 400, code: 'BAD_REQUEST' },
  { name: 'heartbeat with missing fields', path: '/api/cs/heartbeat', body: { id: 'cs0' }, status: 400, code: 'BAD_REQUEST' },
  // ---- queries ----
  { name: 'stat without a path', method: 'GET', path: '/api/stat', status: 400, code: 'BAD_REQUEST' },
  { name: "stat of a '..' path", method: 'GET', path: '/api/stat?path=' + encodeURIComponent('/a/../keep'), status: 400, code: 'INVALID_PATH' },
  { name: 'stat of a NUL path', method: 'GET', path: '/api/stat?path=%2Fa%00', status: 400, code: 'INVALID_PATH' },
  { name: 'stat with two paths', method: 'GET', path: '/api/stat?path=%2Fa&path=%2Fkeep', status: 400, code: 'BAD_REQUEST' },
  { name: 'stat with an extra parameter', method: 'GET', path: '/api/stat?path=%2Fa&x=1', status: 400, code: 'BAD_REQUEST' },
  { name: 'stat of a missing path', method: 'GET', path: '/api/stat?path=%2Fmissing', status: 404, code: 'NOT_FOUND' },
  { name: 'list with a bad recursive flag', method: 'GET', path: '/api/list?path=%2F&recursive=maybe', status: 400, code: 'BAD_REQUEST' },
  { name: 'list of a relative path', method: 'GET', path: '/api/list?path=a', status: 400, code: 'INVALID_PATH' },
  { name: 'list of a missing directory', method: 'GET', path: '/api/list?path=%2Fmissing', status: 404, code: 'NOT_FOUND' },
  // ---- huge bodies ----
  { name: 'body over 4 MiB (content-length)', path: '/api/mkdir', body: JSON.stringify({ path: '/huge', pad: 'a'.repeat(5 * MiB) }), status: 413, code: 'PAYLOAD_TOO_LARGE' },
  {
    name: 'body over 4 MiB (chunked)',
    path: '/api/create',
    body: () => Readable.from((function* () { yield '{"path":"/huge","pad":"'; for (let i = 0; i < 80; i++) yield 'b'.repeat(64 * 1024); yield '"}'; })()),
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
  },
  // ---- unknown endpoints and methods ----
  { name: 'unknown endpoint', method: 'GET', path: '/api/nope', status: 404, code: 'NOT_FOUND' },
  { name: 'unknown POST endpoint', path: '/api/mkdirs', body: { path: '/x' }, status: 404, code: 'NOT_FOUND' },
  { name: 'GET on a POST endpoint', method: 'GET', path: '/api/mkdir?path=%2Fx', status: 404, code: 'NOT_FOUND' },
  { name: 'DELETE on a POST endpoint', method: 'DELETE', path: '/api/create', body: { path: '/x' }, status: 404, code: 'NOT_FOUND' },
  { name: 'PUT on a POST endpoint', method: 'PUT', path: '/api/delete', body: { path: '/keep' }, status: 404, code: 'NOT_FOUND' },
  { name: 'unknown top-level path', method: 'GET', path: '/etc/passwd', status: 404, code: 'NOT_FOUND' },
];

describe('master API: bad input gets a 4xx and changes nothing', { timeout: 60_000 }, () => {
  let cluster: TestCluster | undefined;
  const agent = new Agent({ keepAliveTimeout: 1_000 });

  before(async () => {
    cluster = await startCluster({ chunkservers: 0 });
    const c = (endpoint: string, body: unknown) => rpcJson(cluster!.masterUrl, endpoint, body);
    await c('/api/mkdir', { path: '/a' });
    await c('/api/create', { path: '/a/f' });
    await c('/api/mkdir', { path: '/b/c', parents: true });
    await c('/api/create', { path: '/keep' });
  });

  after(async () => {
    await cluster?.stop();
    await agent.close();
    await closeRpc();
  });

  /** Everything a bad request must leave alone: the listing with mtimes, and the log. */
  async function picture() {
    const list = await rpcJson<{ entries: ListEntry[] }>(cluster!.masterUrl, '/api/list', undefined, { query: { path: '/', recursive: '1' } });
    const status = await rpcJson<{ files: number; oplog: { records: number; logBytes: number; logSeq: number } }>(cluster!.masterUrl, '/api/status');
    return { entries: list.entries, files: status.files, records: status.oplog.records, logBytes: status.oplog.logBytes, logSeq: status.oplog.logSeq };
  }

  it('answers every bad request with a 4xx {error, code} and leaves the namespace and log untouched', async () => {
    const beforePic = await picture();
    assert.ok(beforePic.entries.length === 5 && beforePic.records === 4, `seeded state: ${JSON.stringify(beforePic)}`);
    const wrong: string[] = [];
    for (const k of cases) {
      const method = k.method ?? 'POST';
      let body: string | Buffer | Readable | undefined;
      // Signed with the cluster secret, so the requests pass authentication and reach the handlers.
      let signed: string | Buffer | undefined;
      if (typeof k.body === 'function') {
        const parts: Buffer[] = [];
        for await (const c of (k.body as () => Readable)()) parts.push(Buffer.from(c as string));
        signed = Buffer.concat(parts);
        body = (k.body as () => Readable)();
      } else if (typeof k.body === 'string' || Buffer.isBuffer(k.body)) body = signed = k.body;
      else if (k.body !== undefined) body = signed = JSON.stringify(k.body);
      const res = await request(cluster!.masterUrl + k.path, {
        method,
        dispatcher: agent,
        headers: { ...(body !== undefined ? { 'content-type': k.contentType ?? 'application/json' } : {}), ...authHeaders(method, k.path, signed) },
        body,
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      const text = await res.body.text();
      let json: { error?: unknown; code?: unknown } | undefined;
      try {
        json = JSON.parse(text) as typeof json;
      } catch {
        json = undefined;
      }
      const problems: string[] = [];
      if (res.statusCode !== k.status) problems.push(`status ${res.statusCode}, want ${k.status}`);
      if (res.statusCode < 400 || res.statusCode > 499) problems.push('not a 4xx');
      if (!String(res.headers['content-type'] ?? '').startsWith('application/json')) problems.push(`content-type ${String(res.headers['content-type'])}`);
      if (!json || typeof json.error !== 'string' || json.error.length === 0 || typeof json.code !== 'string') problems.push(`body is not {error, code}: ${text.slice(0, 120)}`);
      else if (k.code && json.code !== k.code) problems.push(`code ${json.code}, want ${k.code} (${json.error.slice(0, 120)})`);
      if (problems.length) wrong.push(`${k.name} (${method} ${k.path.slice(0, 60)}): ${problems.join('; ')}`);
    }
    assert.ok(wrong.length === 0, `requests answered wrongly:\n${wrong.join('\n')}`);
    const afterPic = await picture();
    assert.deepEqual(afterPic, beforePic, 'bad requests changed nothing (namespace, mtimes, operation log)');
  });

  it('the master still serves and mutates normally afterwards', async () => {
    await rpcJson(cluster!.masterUrl, '/api/create', { path: '/b/c/ok' });
    const info = await rpcJson<{ type: string }>(cluster!.masterUrl, '/api/stat', undefined, { query: { path: '/b/c/ok' } });
    assert.equal(info.type, 'file');
  });

  it('the CLI reports errors in one line on stderr with a non-zero exit and changes nothing', async () => {
    const beforePic = await picture();
    const runs: { args: string[]; mention: RegExp }[] = [
      { args: ['mkdir', '/a/../b'], mention: /\.\./ },
      { args: ['stat', '/missing'], mention: /missing/ },
      { args: ['mkdir', '/a//x'], mention: /empty segment/ },
      { args: ['mv', '/keep', '/a/f'], mention: /exists/i },
      { args: ['rm', '/a'], mention: /not empty/i },
      { args: ['ls', '/nope'], mention: /nope/ },
    ];
    const results = await Promise.all(runs.map((r) => cluster!.cli(r.args)));
    const wrong: string[] = [];
    runs.forEach((r, i) => {
      const res = results[i]!;
      const lines = res.stderr.split('\n').filter((l) => l.length > 0);
      const cmd = `gfs ${r.args.join(' ')}`;
      if (res.code === 0) wrong.push(`${cmd}: exit code 0`);
      if (lines.length !== 1 || !res.stderr.endsWith('\n')) wrong.push(`${cmd}: stderr is not exactly one line: ${JSON.stringify(res.stderr)}`);
      else if (!r.mention.test(lines[0]!)) wrong.push(`${cmd}: stderr does not say why: ${JSON.stringify(lines[0])}`);
      if (res.stdout.length !== 0) wrong.push(`${cmd}: wrote to stdout: ${JSON.stringify(res.stdout.toString().slice(0, 100))}`);
    });
    assert.ok(wrong.length === 0, wrong.join('\n'));
    assert.deepEqual(await picture(), beforePic, 'failed CLI commands changed nothing');
  });
});
