import { invariant } from '../shared/errors.js';

// A secondary's ordering of the primary's mutations (pure: no I/O, no
// processes). Per serial space (a chunk, its version and the primary's
// stream) serials run one at a time in order from 1: a serial that arrives
// early is held back until the ones before it have run, a serial that has run
// already is answered with its earlier result (the primary re-sends under the
// same serial after a lost or late answer), and a gap that does not fill in
// time fails the held serial with a clear error, so the primary fails the
// mutation and the client retries. Everything is bounded: held serials per
// space and in all, remembered results per space, and spaces.

/** Answers for serials that did NOT run here (held back too long, or no room to hold them): the primary sends them again. */
export const notRunCodes: ReadonlySet<string> = new Set(['SERIAL_GAP', 'SERIAL_BUSY']);

export interface OpResult {
  ok: boolean;
  code?: string;
  error?: string;
}

export interface SerialOrderOptions {
  /** A held serial whose predecessors have not all arrived after this long fails (SERIAL_GAP). */
  gapTimeoutMs: number;
  /** Held serials per space; more fail at once (SERIAL_BUSY). */
  maxHeldPerSpace?: number;
  /** Held serials in all spaces together. */
  maxHeldTotal?: number;
  /** Results remembered per space for duplicates. */
  maxResults?: number;
  /** Spaces remembered; the least recently used idle one is forgotten beyond this. */
  maxSpaces?: number;
}

interface Held {
  run: () => Promise<OpResult>;
  result: Promise<OpResult>;
  settle: (r: OpResult) => void;
  timer: NodeJS.Timeout;
}

interface Space {
  /** The serial to run next. */
  next: number;
  running: boolean;
  held: Map<number, Held>;
  /** Results of serials that have run (or are running), oldest first. */
  results: Map<number, Promise<OpResult>>;
}

export class SerialOrder {
  private readonly spaces = new Map<string, Space>();
  private heldTotal = 0;
  private readonly maxHeldPerSpace: number;
  private readonly maxHeldTotal: number;
  private readonly maxResults: number;
  private readonly maxSpaces: number;
  readonly counters = { duplicates: 0, heldBack: 0, gapTimeouts: 0, refusedHeld: 0 };

  constructor(private readonly o: SerialOrderOptions) {
    this.maxHeldPerSpace = o.maxHeldPerSpace ?? 256;
    this.maxHeldTotal = o.maxHeldTotal ?? 4096;
    this.maxResults = o.maxResults ?? 1024;
    this.maxSpaces = o.maxSpaces ?? 10_000;
    invariant(o.gapTimeoutMs > 0 && this.maxHeldPerSpace > 0 && this.maxResults > 0 && this.maxSpaces > 0, 'serial order bounds must be positive');
  }

  /** Serials held back now, in all spaces. */
  get held(): number {
    return this.heldTotal;
  }

  /**
   * Runs `run` for serial in space once every earlier serial has run; a
   * serial seen before gets its earlier result. ackedThrough: the primary
   * has answers for every serial up to it, so none of them needs to run here
   * again (a space this server has forgotten resumes after it).
   */
  submit(key: string, serial: number, ackedThrough: number, run: () => Promise<OpResult>): Promise<OpResult> {
    invariant(Number.isSafeInteger(serial) && serial >= 0, 'serial must be a non-negative integer');
    const space = this.space(key, ackedThrough);
    if (ackedThrough + 1 > space.next) this.skipTo(space, ackedThrough + 1);
    if (serial < space.next) {
      this.counters.duplicates++;
      return space.results.get(serial) ?? Promise.resolve({ ok: false, code: 'STALE_SERIAL', error: `serial ${serial} ran long ago; its result is no longer kept` });
    }
    const held = space.held.get(serial);
    if (held) {
      this.counters.duplicates++;
      return held.result;
    }
    if (serial === space.next && !space.running) return this.start(space, serial, run);
    return this.hold(key, space, serial, run);
  }

  private space(key: string, ackedThrough: number): Space {
    let space = this.spaces.get(key);
    if (space) {
      // Most recently used last, so eviction finds the oldest first.
      this.spaces.delete(key);
      this.spaces.set(key, space);
      return space;
    }
    space = { next: ackedThrough + 1, running: false, held: new Map(), results: new Map() };
    this.spaces.set(key, space);
    if (this.spaces.size > this.maxSpaces) {
      for (const [k, s] of this.spaces) {
        if (this.spaces.size <= this.maxSpaces) break;
        if (s !== space && !s.running && s.held.size === 0) this.spaces.delete(k);
      }
    }
    return space;
  }

  private start(space: Space, serial: number, run: () => Promise<OpResult>): Promise<OpResult> {
    invariant(serial === space.next && !space.running, 'serial started out of order');
    space.running = true;
    space.next = serial + 1;
    const result = (async () => {
      try {
        return await run();
      } catch (e) {
        return { ok: false, code: 'INTERNAL', error: (e as Error).message };
      }
    })();
    space.results.set(serial, result);
    while (space.results.size > this.maxResults) space.results.delete(space.results.keys().next().value!);
    void result.then(() => {
      space.running = false;
      this.startNext(space);
    });
    return result;
  }

  private startNext(space: Space): void {
    if (space.running) return;
    const serial = space.next;
    const h = space.held.get(serial);
    if (!h) return;
    this.unhold(space, serial, h);
    void this.start(space, serial, h.run).then(h.settle);
  }

  private hold(key: string, space: Space, serial: number, run: () => Promise<OpResult>): Promise<OpResult> {
    if (space.held.size >= this.maxHeldPerSpace || this.heldTotal >= this.maxHeldTotal) {
      this.counters.refusedHeld++;
      return Promise.resolve({ ok: false, code: 'SERIAL_BUSY', error: `too many mutations held back waiting for serial ${space.next} of ${key}` });
    }
    this.counters.heldBack++;
    let settle!: (r: OpResult) => void;
    const result = new Promise<OpResult>((r) => (settle = r));
    const timer = setTimeout(() => {
      if (space.held.get(serial)?.result !== result) return;
      this.unhold(space, serial, space.held.get(serial)!);
      this.counters.gapTimeouts++;
      settle({ ok: false, code: 'SERIAL_GAP', error: `serial ${serial} of ${key} held back ${this.o.gapTimeoutMs} ms waiting for serial ${space.next}, which never arrived` });
    }, this.o.gapTimeoutMs);
    space.held.set(serial, { run, result, settle, timer });
    this.heldTotal++;
    return result;
  }

  private unhold(space: Space, serial: number, h: Held): void {
    clearTimeout(h.timer);
    space.held.delete(serial);
    this.heldTotal--;
  }

  /** The primary has answers up to next - 1: held serials below it are stale, and the next one may be waiting. */
  private skipTo(space: Space, next: number): void {
    space.next = next;
    for (const [serial, h] of space.held) {
      if (serial >= next) continue;
      this.unhold(space, serial, h);
      h.settle({ ok: false, code: 'STALE_SERIAL', error: `serial ${serial} was already answered` });
    }
    this.startNext(space);
  }
}
