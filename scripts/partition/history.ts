// The history a partition run records: one JSON line per operation a
// workload process completed (or gave up on), written by
// scripts/partition-worker.ts and read by the checker.

export type OpStatus = 'ok' | 'fail' | 'unknown';
export type OpKind = 'mkdir' | 'create' | 'write' | 'append' | 'read' | 'delete' | 'undelete';

export interface HistoryEntry {
  /** Workload process number, and the operation's number within it. */
  proc: number;
  seq: number;
  op: OpKind;
  /** Wall clock (Date.now()) when the operation was invoked and when its outcome was known. */
  invokeMs: number;
  completeMs: number;
  /** ok: acknowledged; fail: refused, took no effect as far as the client knows; unknown: may or may not have taken effect. */
  status: OpStatus;
  path: string;
  /** Mutations: the file offset written (append: the offset the system chose). Reads: the offset read. */
  offset?: number;
  /** Bytes written, or asked for by a read. */
  sizeBytes?: number;
  /** sha256 (hex) of the bytes written, or of the bytes a read returned. */
  sha?: string;
  /** Reads: how many bytes came back. */
  gotBytes?: number;
  /** Reads: the mutation ("proc:seq") whose range was read. */
  target?: string;
  error?: string;
}

export function opId(e: Pick<HistoryEntry, 'proc' | 'seq'>): string {
  return `${e.proc}:${e.seq}`;
}

export function parseHistory(text: string): HistoryEntry[] {
  const out: HistoryEntry[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    try {
      out.push(JSON.parse(t) as HistoryEntry);
    } catch {
      // a line torn by a killed process: it was never acknowledged to anyone
    }
  }
  return out;
}
