import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LOG_NAME_RE } from '../../master/oplog.js';
import { FRAME_HEADER_BYTES, MAX_RECORD_BYTES } from '../../master/oplog-scan.js';

// Watches a master's op log on disk (master/oplog.ts: files oplog.<seq>.log
// of frames [u32 LE length][u32 LE crc][JSON]) for version bumps under way:
// a {op:'version', pendingFrom} record not yet followed by the matching
// {op:'bumped'}. The master makes the first durable before it tells any
// replica and the second after they answered, so a SIGKILL while one is
// pending lands inside the bump (the 'bump' nemesis).

// Read incrementally (scanLog in master/oplog-scan.ts reads a log from its start): the nemesis polls
// every few ms while the master runs.

export class OpLogWatch {
  private file: string | undefined;
  private offset = 0;
  /** "handle@version" of bumps logged and not yet confirmed -> when this watch first read it. */
  readonly pending = new Map<string, number>();

  constructor(
    private readonly dir: string,
    /** Wall-clock ms (a test passes its own). */
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Reads what was appended since the last call; returns the bumps under way seen within the last
   * `freshMs` (a bump no replica took is never confirmed: it must not count as under way for ever).
   */
  inWindow(freshMs: number): string[] {
    this.poll();
    const since = this.clock() - freshMs;
    return [...this.pending].filter(([, seenAtMs]) => seenAtMs >= since).map(([k]) => k);
  }

  private poll(): void {
    const names = readdirSync(this.dir).filter((n) => LOG_NAME_RE.test(n)).sort();
    const newest = names[names.length - 1];
    if (!newest) return;
    const path = join(this.dir, newest);
    if (path !== this.file) {
      // A new log after a checkpoint: what was pending stays so (the checkpoint holds it, not the new log).
      this.file = path;
      this.offset = 0;
    }
    const size = statSync(path).size;
    if (size <= this.offset) return;
    const buf = Buffer.alloc(size - this.offset);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, buf.length, this.offset);
    } finally {
      closeSync(fd);
    }
    let at = 0;
    while (at + FRAME_HEADER_BYTES <= buf.length) {
      const len = buf.readUInt32LE(at);
      if (len > MAX_RECORD_BYTES || at + FRAME_HEADER_BYTES + len > buf.length) break;
      this.note(buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + len).toString('utf8'));
      at += FRAME_HEADER_BYTES + len;
    }
    this.offset += at;
  }

  private note(text: string): void {
    let r: { op?: string; handle?: string; version?: number; pendingFrom?: number };
    try {
      r = JSON.parse(text);
    } catch {
      return;
    }
    if (r.op === 'version' && r.pendingFrom !== undefined) this.pending.set(`${r.handle}@${r.version}`, this.clock());
    else if (r.op === 'bumped') this.pending.delete(`${r.handle}@${r.version}`);
  }
}
