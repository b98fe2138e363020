// Reusable buffers for pushed data. On these machines memory touched for the
// first time is expensive (page faults and zeroing: a fresh 8 MiB buffer per
// push cost more CPU than everything else the hop did with the bytes), and
// every fresh buffer counts as external memory that drives V8 into full
// garbage collections. So pushes of a piece's size are received into slots
// that are allocated (and touched) once and then reused: a slot goes back to
// the pool when the push fails, expires, or the mutation that took it has
// written it (chunkserver/mutations.ts); every holder calls release() exactly
// once, and a second call is a no-op, so no path can return a slot twice.
// Small or oversized pushes get ordinary buffers.

export interface Lease {
  /** Exactly the bytes asked for (a prefix of a slot, or a buffer of its own). */
  buf: Buffer;
  /** Gives the slot back; idempotent. */
  release(): void;
}

export class BufferPool {
  private readonly free: Buffer[] = [];
  private made = 0;
  private outstanding = 0;
  /** Leases handed out from slots and from fresh buffers, ever (tests and /debug/state). */
  readonly counters = { pooled: 0, unpooled: 0, released: 0 };

  constructor(
    readonly slotBytes: number,
    /** Slots kept when free, at most; more may be lent at once (the push buffer bounds that), and are dropped when returned. */
    readonly keepSlots: number,
    /** Slots made and touched at start-up. */
    prefillSlots = 0,
    /** Pushes smaller than this get a buffer of their own (a record does not hold a whole slot). */
    readonly minPooledBytes = Math.min(slotBytes, 1024 * 1024),
    /** Makes a slot's memory: aligned for O_DIRECT where the store has it (chunkserver/direct-io.ts). */
    private readonly alloc: (bytes: number) => Buffer = (bytes) => Buffer.allocUnsafeSlow(bytes),
  ) {
    for (let i = 0; i < Math.min(prefillSlots, keepSlots); i++) this.free.push(this.make());
  }

  private make(): Buffer {
    this.made++;
    // fill() touches every page now, at start-up or the first time the pool grows, not while a push streams in.
    return this.alloc(this.slotBytes).fill(0);
  }

  /** Slots lent out now. */
  get inUse(): number {
    return this.outstanding;
  }

  /** Free slots held. */
  get idle(): number {
    return this.free.length;
  }

  /** Slots ever made. */
  get slotsMade(): number {
    return this.made;
  }

  lend(sizeBytes: number): Lease {
    if (sizeBytes < this.minPooledBytes || sizeBytes > this.slotBytes) {
      this.counters.unpooled++;
      return { buf: Buffer.allocUnsafe(sizeBytes), release: () => undefined };
    }
    const slot = this.free.pop() ?? this.make();
    this.outstanding++;
    this.counters.pooled++;
    let returned = false;
    return {
      buf: slot.subarray(0, sizeBytes),
      release: () => {
        if (returned) return;
        returned = true;
        this.outstanding--;
        this.counters.released++;
        if (this.free.length < this.keepSlots) this.free.push(slot);
      },
    };
  }
}
