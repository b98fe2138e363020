import type { ChunkReport, ReplicaRef } from '../../shared/wire.js';
import type { ServerView } from './placement.js';

// The master's view of chunkservers and of where replicas live. None of it
// is persisted: after a restart it is rebuilt from registrations and
// heartbeats, as in GFS (the chunkserver has the final word on what it holds).

export interface ChunkServerState {
  id: string;
  url: string;
  rack: string;
  capacityBytes: number;
  usedBytes: number;
  freeBytes: number;
  load: number;
  lastSeenMs: number;
  registeredAtMs: number;
  /** What it reported holding, by handle. */
  held: Map<string, { version: number; sizeBytes: number }>;
  /** Times of recent chunk creations here (bounded: only the window is kept). */
  recentCreatesMs: number[];
}

export interface SpaceOptions {
  /** The space a new chunk may grow to: placement needs this much usable room. */
  chunkSizeBytes: number;
  /** Kept free on every server, as a fraction of its capacity: below it a server takes no new chunks. */
  reserveFraction: number;
}

export class ChunkServers {
  readonly servers = new Map<string, ChunkServerState>();
  /** handle -> ids of servers holding the master's current version of it. */
  readonly locations = new Map<string, Set<string>>();

  constructor(
    private readonly deadMs: number,
    private readonly recentWindowMs: number,
    private readonly space: SpaceOptions = { chunkSizeBytes: 0, reserveFraction: 0 },
  ) {}

  /**
   * Free space placement may use: what the server reported, minus its reserve, minus a whole chunk
   * for each chunk created there since its last heartbeat (not in its report yet, and about to be written).
   */
  usableFreeBytes(s: ChunkServerState): number {
    const promised = s.recentCreatesMs.filter((t) => t >= s.lastSeenMs).length * this.space.chunkSizeBytes;
    return Math.max(0, s.freeBytes - this.reserveBytes(s) - promised);
  }

  reserveBytes(s: ChunkServerState): number {
    return Math.ceil(s.capacityBytes * this.space.reserveFraction);
  }

  /** Below its reserve (or too full for one more chunk): takes no new chunks, and `gfs status` says so. */
  isFull(s: ChunkServerState): boolean {
    return this.usableFreeBytes(s) < this.space.chunkSizeBytes;
  }

  isAlive(s: ChunkServerState | undefined, nowMs: number): boolean {
    return !!s && nowMs - s.lastSeenMs <= this.deadMs;
  }

  alive(nowMs: number): ChunkServerState[] {
    return [...this.servers.values()].filter((s) => this.isAlive(s, nowMs));
  }

  ref(id: string): ReplicaRef | undefined {
    const s = this.servers.get(id);
    return s ? { id: s.id, url: s.url, rack: s.rack } : undefined;
  }

  /** Live servers holding the current version of handle. */
  liveLocations(handle: string, nowMs: number): string[] {
    const set = this.locations.get(handle);
    if (!set) return [];
    return [...set].filter((id) => this.isAlive(this.servers.get(id), nowMs));
  }

  addLocation(handle: string, id: string): void {
    let set = this.locations.get(handle);
    if (!set) this.locations.set(handle, (set = new Set()));
    set.add(id);
  }

  removeLocation(handle: string, id: string): void {
    const set = this.locations.get(handle);
    if (!set) return;
    set.delete(id);
    if (set.size === 0) this.locations.delete(handle);
  }

  upsert(info: { id: string; url: string; rack: string; capacityBytes: number; usedBytes: number; freeBytes: number; load?: number }, nowMs: number): ChunkServerState {
    let s = this.servers.get(info.id);
    if (!s) {
      s = { ...info, load: info.load ?? 0, lastSeenMs: nowMs, registeredAtMs: nowMs, held: new Map(), recentCreatesMs: [] };
      this.servers.set(info.id, s);
    } else {
      Object.assign(s, { url: info.url, rack: info.rack, capacityBytes: info.capacityBytes, usedBytes: info.usedBytes, freeBytes: info.freeBytes, load: info.load ?? s.load, lastSeenMs: nowMs });
    }
    return s;
  }

  setHeld(s: ChunkServerState, chunks: ChunkReport[]): void {
    s.held = new Map(chunks.map((c) => [c.handle, { version: c.version, sizeBytes: c.sizeBytes }]));
  }

  noteCreate(id: string, nowMs: number): void {
    const s = this.servers.get(id);
    if (!s) return;
    s.recentCreatesMs = s.recentCreatesMs.filter((t) => nowMs - t < this.recentWindowMs);
    s.recentCreatesMs.push(nowMs);
  }

  views(nowMs: number): ServerView[] {
    return this.alive(nowMs).map((s) => ({
      id: s.id,
      rack: s.rack,
      usedBytes: s.usedBytes,
      capacityBytes: s.capacityBytes,
      freeBytes: this.usableFreeBytes(s),
      recentCreates: s.recentCreatesMs.filter((t) => nowMs - t < this.recentWindowMs).length,
    }));
  }

  /** Largest size any live holder of the current version reported for handle. */
  reportedSize(handle: string, nowMs: number): number {
    let max = 0;
    for (const id of this.liveLocations(handle, nowMs)) {
      const h = this.servers.get(id)!.held.get(handle);
      if (h && h.sizeBytes > max) max = h.sizeBytes;
    }
    return max;
  }
}
