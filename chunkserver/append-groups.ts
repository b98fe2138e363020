import { GfsError } from '../shared/errors.js';

// Group commit of record appends at the primary. Appends to one chunk that
// arrive while the previous group is being written and forwarded wait here
// and form the next group: one local write, one ordered mutation to each
// secondary, every record answered once all secondaries applied it. A
// request arriving when nothing is under way starts a group at once (it is
// never delayed to wait for company). What a group takes and where each
// record goes is planGroup's (chunkserver/append.ts); committing it is the
// mutator's (chunkserver/mutations.ts).

export interface WaitingAppend {
  records: Buffer[];
  sizes: number[];
  resolve: (offsets: number[]) => void;
  reject: (e: Error) => void;
}

interface Queue {
  pending: WaitingAppend[];
  running: boolean;
}

/** Commits the next group from `pending`: removes the requests it takes, settles each of them, and says how many it took. */
export type CommitGroup = (handle: string, version: number, pending: WaitingAppend[]) => Promise<number>;

export class AppendGroups {
  private readonly queues = new Map<string, Queue>();
  readonly counters = { groups: 0, refusedBusy: 0 };

  constructor(
    private readonly commit: CommitGroup,
    /** Requests waiting per chunk at most; more are refused (TOO_BUSY, retried by the client). */
    private readonly maxWaiting = 4096,
  ) {}

  /** The chunk offsets of the records placed (a prefix of them; the rest found the chunk full), once every replica applied them. */
  submit(handle: string, version: number, records: Buffer[]): Promise<number[]> {
    const key = `${handle}@${version}`;
    let q = this.queues.get(key);
    if (!q) this.queues.set(key, (q = { pending: [], running: false }));
    if (q.pending.length >= this.maxWaiting) {
      this.counters.refusedBusy++;
      return Promise.reject(new GfsError('TOO_BUSY', `too many appends to ${handle} waiting`, { retryAfterMs: 50 }));
    }
    const p = new Promise<number[]>((resolve, reject) => q.pending.push({ records, sizes: records.map((r) => r.length), resolve, reject }));
    if (!q.running) void this.drain(key, handle, version, q);
    return p;
  }

  private async drain(key: string, handle: string, version: number, q: Queue): Promise<void> {
    q.running = true;
    try {
      while (q.pending.length > 0) {
        let taken = 0;
        try {
          taken = await this.commit(handle, version, q.pending);
          this.counters.groups++;
        } catch (e) {
          // commit settles what it takes; anything else left waiting must not hang.
          for (const w of q.pending.splice(0)) w.reject(e instanceof Error ? e : new Error(String(e)));
        }
        // Nothing taken: never spin.
        if (taken === 0) for (const w of q.pending.splice(0)) w.reject(new GfsError('INTERNAL', 'append group took nothing'));
      }
    } finally {
      q.running = false;
      if (q.pending.length === 0 && this.queues.get(key) === q) this.queues.delete(key);
    }
  }
}
