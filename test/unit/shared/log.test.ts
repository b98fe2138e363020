import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatLine, prettyStream } from '../../../shared/log-format.js';
import { logFormat, makeLogger, requestContext } from '../../../shared/log.js';

// Structured logs: the node id on every line, the request id on every line
// written while a call that carries one is served, the handle where the
// caller names one; human-readable lines for a terminal.

function capture(): { lines: string[]; stream: { write(s: string): void } } {
  const lines: string[] = [];
  return { lines, stream: { write: (s: string) => lines.push(...s.split('\n').filter(Boolean)) } };
}

describe('logs', () => {
  it('carry the node id, and the request id inside a call', async () => {
    const c = capture();
    const log = makeLogger('cs7', { format: 'json', destination: c.stream });
    log.info({ handle: '00000000000000a1' }, 'outside');
    await requestContext.run({ rid: 'client1:42', mutations: 0 }, async () => {
      await new Promise((r) => setTimeout(r, 1));
      log.warn({ handle: '00000000000000a2' }, 'inside, after an await');
      log.warn({ rid: 'explicit:1' }, 'an explicit rid wins');
    });
    const [a, b, e] = c.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(a!.node, 'cs7');
    assert.equal(a!.handle, '00000000000000a1');
    assert.equal(a!.rid, undefined);
    assert.equal(b!.node, 'cs7');
    assert.equal(b!.rid, 'client1:42');
    assert.equal(b!.handle, '00000000000000a2');
    assert.equal(e!.rid, 'explicit:1');
  });

  it('are human-readable on a terminal', () => {
    const line = JSON.stringify({ level: 40, time: Date.UTC(2024, 0, 2, 3, 4, 5, 6), node: 'master', rid: 'c:1', handle: '00000000000000ff', msg: 'clone failed', source: 'cs1', err: 'connection refused' });
    const out = formatLine(line);
    assert.match(out, /^\d\d:\d\d:\d\d\.006 WARN  master \[rid=c:1\] \[handle=00000000000000ff\] clone failed {2}source=cs1 err="connection refused"$/);
    assert.ok(formatLine(line, true).includes('\x1b[33mWARN'), 'coloured level');
    assert.equal(formatLine('not json'), 'not json');
    const got: string[] = [];
    const s = prettyStream({ write: (x: string) => got.push(x) } as unknown as NodeJS.WritableStream, false);
    s.write(JSON.stringify({ level: 30, msg: 'a', node: 'n' }) + '\n' + JSON.stringify({ level: 50, msg: 'b', node: 'n' }).slice(0, 10));
    assert.equal(got.length, 1, 'a partial line waits for its end');
    assert.match(got[0]!, / INFO  n a\n$/);
  });

  it('format: pretty on a terminal, JSON otherwise, GFS_LOG_FORMAT overrides', () => {
    const old = process.env.GFS_LOG_FORMAT;
    try {
      delete process.env.GFS_LOG_FORMAT;
      assert.equal(logFormat(true), 'pretty');
      assert.equal(logFormat(false), 'json');
      process.env.GFS_LOG_FORMAT = 'json';
      assert.equal(logFormat(true), 'json');
      process.env.GFS_LOG_FORMAT = 'fancy';
      assert.throws(() => logFormat(true), /GFS_LOG_FORMAT must be json or pretty/);
    } finally {
      if (old === undefined) delete process.env.GFS_LOG_FORMAT;
      else process.env.GFS_LOG_FORMAT = old;
    }
  });
});
