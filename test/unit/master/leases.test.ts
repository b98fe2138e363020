import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideLease, extendLease, type Lease, type LeaseInput } from '../../../master/core/leases.js';
import { primaryExpiryMs } from '../../../shared/lease-time.js';
import { rng } from '../../../shared/rng.js';

const leaseMs = 1000;

function lease(primary: string, expiresAtMs: number, version = 7, secondaries = ['s1', 's2', 's3'].filter((s) => s !== primary)): Lease {
  return { primary, secondaries, version, expiresAtMs };
}

function input(over: Partial<LeaseInput>): LeaseInput {
  return { nowMs: 5000, lease: undefined, upToDate: ['s1', 's2', 's3'], grantsAllowedAtMs: 0, version: 7, ...over };
}

test('decideLease: the current lease while it is valid and its holder up to date', () => {
  const l = lease('s2', 5500);
  assert.deepEqual(decideLease(input({ lease: l })), { kind: 'current', lease: l });
  assert.deepEqual(decideLease(input({ lease: l, nowMs: 5499 })), { kind: 'current', lease: l });
});

test('decideLease: a holder whose secondary is gone gets a new lease (same primary), never another primary', () => {
  // s3 dropped out of the up-to-date list while s1 holds the lease
  const l = lease('s1', 5500);
  assert.deepEqual(decideLease(input({ lease: l, upToDate: ['s2', 's1'] })), { kind: 'regrant', primary: 's1' });
  assert.deepEqual(decideLease(input({ lease: l, upToDate: ['s1'] })), { kind: 'regrant', primary: 's1' });
  // a lease with no secondaries to lose stays current
  const solo = lease('s1', 5500, 7, []);
  assert.deepEqual(decideLease(input({ lease: solo, upToDate: ['s1'] })), { kind: 'current', lease: solo });
});

test('decideLease: waits (never grants) while a previous lease may be valid', () => {
  // holder gone from the up-to-date list (dead, partitioned, stale)
  const l = lease('s9', 5500);
  for (const now of [4000, 5000, 5499]) {
    const d = decideLease(input({ lease: l, nowMs: now }));
    assert.equal(d.kind, 'wait');
    assert.equal(d.kind === 'wait' && d.untilMs, 5500);
  }
  // even with no replicas at all
  assert.equal(decideLease(input({ lease: l, upToDate: [] })).kind, 'wait');
  // version changed under the lease (revoked): wait it out
  const d = decideLease(input({ lease: lease('s1', 5500, 6), version: 7 }));
  assert.deepEqual(d.kind === 'wait' && d.untilMs, 5500);
});

test('decideLease: grants to the best candidate once the old lease has expired', () => {
  const l = lease('s9', 5000);
  assert.deepEqual(decideLease(input({ lease: l, nowMs: 5000 })), { kind: 'grant', primary: 's1' });
  assert.deepEqual(decideLease(input({ lease: l, nowMs: 9000, upToDate: ['s3', 's1'] })), { kind: 'grant', primary: 's3' });
  // an expired lease of an up-to-date holder is replaced by a grant too (new version)
  assert.deepEqual(decideLease(input({ lease: lease('s2', 4999), upToDate: ['s2', 's1'] })), { kind: 'grant', primary: 's2' });
  assert.deepEqual(decideLease(input({ lease: undefined })), { kind: 'grant', primary: 's1' });
});

test('decideLease: a restarted master waits until grantsAllowedAtMs', () => {
  const d = decideLease(input({ lease: undefined, nowMs: 100, grantsAllowedAtMs: 1100 }));
  assert.equal(d.kind, 'wait');
  assert.equal(d.kind === 'wait' && d.untilMs, 1100);
  assert.equal(decideLease(input({ lease: undefined, nowMs: 1099, grantsAllowedAtMs: 1100 })).kind, 'wait');
  assert.equal(decideLease(input({ lease: undefined, nowMs: 100, grantsAllowedAtMs: 1100, upToDate: [] })).kind, 'wait');
  assert.deepEqual(decideLease(input({ lease: undefined, nowMs: 1100, grantsAllowedAtMs: 1100 })), { kind: 'grant', primary: 's1' });
});

test('decideLease: no-replicas when nothing is up to date and nothing must be waited for', () => {
  assert.deepEqual(decideLease(input({ upToDate: [] })), { kind: 'no-replicas' });
  assert.deepEqual(decideLease(input({ upToDate: [], lease: lease('s1', 10) })), { kind: 'no-replicas' });
});

test('extendLease: only the current holder, only before expiry, only at the current version', () => {
  const l = lease('s1', 5500);
  const ext = extendLease(l, 's1', 5000, leaseMs, 7);
  assert.deepEqual(ext, { ...l, expiresAtMs: 6000 });
  assert.equal(l.expiresAtMs, 5500, 'the input lease is not mutated');
  assert.equal(extendLease(l, 's2', 5000, leaseMs, 7), undefined);
  assert.equal(extendLease(l, 's1', 5500, leaseMs, 7), undefined, 'expired exactly at expiresAtMs');
  assert.equal(extendLease(l, 's1', 7000, leaseMs, 7), undefined);
  assert.equal(extendLease(l, 's1', 5000, leaseMs, 8), undefined, 'version moved on');
  assert.equal(extendLease(undefined, 's1', 5000, leaseMs, 7), undefined);
  // an extension never shortens a lease
  assert.equal(extendLease(lease('s1', 9000), 's1', 5000, leaseMs, 7)!.expiresAtMs, 9000);
});

test('primaryExpiryMs: never later than the master expiry, whatever the delay (property)', () => {
  const rnd = rng(42);
  const drift = 0.01;
  for (let i = 0; i < 20_000; i++) {
    const masterNow = rnd() * 1e9;
    const masterExpiry = masterNow + 1e-3 + rnd() * 120_000; // the lease is valid at masterNow
    const remaining = masterExpiry - masterNow;
    // the question was sent at or before the master answered it, same clock
    const sentAt = masterNow - (rnd() < 0.1 ? 0 : rnd() * 30_000);
    const p = primaryExpiryMs(sentAt, remaining, drift);
    assert.ok(p < masterExpiry, `sent ${sentAt}, master ${masterNow}, remaining ${remaining}: ${p} >= ${masterExpiry}`);
    assert.ok(p >= sentAt);

    // the primary's clock runs at a rate within the drift bound and with any offset
    const rate = 1 + (rnd() * 2 - 1) * drift;
    const offset = (rnd() * 2 - 1) * 1e9;
    const localSent = offset + rate * sentAt;
    const localExpiry = primaryExpiryMs(localSent, remaining, drift);
    const realExpiry = (localExpiry - offset) / rate;
    assert.ok(realExpiry < masterExpiry, `rate ${rate}: primary expiry ${realExpiry} not before master ${masterExpiry}`);
  }
  // nothing left: the primary holds no time at all
  assert.equal(primaryExpiryMs(123, 0, drift), 123);
  assert.equal(primaryExpiryMs(123, 0.5, drift), 123);
});

// ---------------------------------------------------------------------------
// Randomized simulation: a master, four chunkservers with drifting clocks,
// message delays and losses, partitions, master restarts and version
// adoption. Check that lease intervals by the master's records never overlap,
// and that the primaries' own beliefs never overlap either.

interface Granted {
  id: number;
  primary: string;
  version: number;
  grantedAtMs: number;
  expiresAtMs: number;
}

interface Belief {
  server: string;
  fromMs: number;
  untilMs: number;
  leaseId: number;
}

type Ev =
  | { at: number; seq: number; kind: 'request' }
  | { at: number; seq: number; kind: 'confirm-send'; server: string }
  | { at: number; seq: number; kind: 'confirm-arrive'; server: string; sentLocal: number }
  | { at: number; seq: number; kind: 'reply-arrive'; server: string; sentLocal: number; primary: boolean; remainingMs: number; version: number; leaseId: number }
  | { at: number; seq: number; kind: 'partition'; server: string }
  | { at: number; seq: number; kind: 'heal'; server: string }
  | { at: number; seq: number; kind: 'restart' }
  | { at: number; seq: number; kind: 'adopt' };

type DistOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type EvBody = DistOmit<Ev, 'at' | 'seq'>;

function simulate(seed: number) {
  const rnd = rng(seed);
  const drift = 0.01;
  const servers = ['s1', 's2', 's3', 's4'];
  const clock = new Map(servers.map((s) => [s, { rate: 1 + (rnd() * 2 - 1) * drift, offset: rnd() * 1e6 }]));
  const local = (s: string, t: number) => clock.get(s)!.offset + clock.get(s)!.rate * t;
  const toReal = (s: string, l: number) => (l - clock.get(s)!.offset) / clock.get(s)!.rate;
  const partitioned = new Set<string>();

  let version = 1;
  let current: Lease | undefined;
  let currentId = -1;
  let grantsAllowedAtMs = 0;
  const granted: Granted[] = [];
  const beliefs: Belief[] = [];
  const open = new Map<string, Belief>();
  const stats = { grants: 0, regrants: 0, waits: 0, current: 0, restarts: 0, extensions: 0, refusals: 0 };

  const queue: Ev[] = [];
  let seq = 0;
  /** Keeps the queue ordered by time, then by insertion. */
  const push = (at: number, e: EvBody) => {
    let lo = 0;
    let hi = queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (queue[mid]!.at <= at) lo = mid + 1;
      else hi = mid;
    }
    queue.splice(lo, 0, { ...e, at, seq: seq++ } as Ev);
  };
  const horizon = 30_000;
  for (let i = 0; i < 400; i++) {
    const at = rnd() * horizon;
    const k = rnd();
    const server = servers[Math.floor(rnd() * servers.length)]!;
    if (k < 0.4) push(at, { kind: 'request' });
    else if (k < 0.75) push(at, { kind: 'confirm-send', server });
    else if (k < 0.84) push(at, { kind: 'partition', server });
    else if (k < 0.95) push(at, { kind: 'heal', server });
    else if (k < 0.975) push(at, { kind: 'restart' });
    else push(at, { kind: 'adopt' });
  }
  const delay = () => (rnd() < 0.8 ? rnd() * 50 : rnd() * 1500);

  while (queue.length > 0) {
    const e = queue.shift()!;
    const now = e.at;
    switch (e.kind) {
      case 'request': {
        // live replicas at the master's version, in a random order
        const upToDate = servers.filter((s) => !partitioned.has(s)).sort(() => rnd() - 0.5);
        const d = decideLease({ nowMs: now, lease: current, upToDate, grantsAllowedAtMs, version });
        if (d.kind === 'regrant') {
          // only ever the holder of the valid lease, which is up to date
          assert.ok(current && current.expiresAtMs > now && current.primary === d.primary && upToDate.includes(d.primary));
          stats.regrants++;
        }
        if (d.kind === 'grant' || d.kind === 'regrant') {
          version++;
          current = { primary: d.primary, secondaries: upToDate.filter((s) => s !== d.primary), version, expiresAtMs: now + leaseMs };
          currentId = granted.length;
          granted.push({ id: currentId, primary: d.primary, version, grantedAtMs: now, expiresAtMs: current.expiresAtMs });
          stats.grants++;
          // the new primary soon asks to confirm its lease
          push(now + delay(), { kind: 'confirm-send', server: d.primary });
        } else if (d.kind === 'wait') {
          assert.ok(d.untilMs > now);
          stats.waits++;
        } else if (d.kind === 'current') stats.current++;
        break;
      }
      case 'confirm-send': {
        if (partitioned.has(e.server)) break;
        push(now + delay(), { kind: 'confirm-arrive', server: e.server, sentLocal: local(e.server, now) });
        // a primary keeps its lease alive with further confirmations
        if (open.has(e.server) && rnd() < 0.7) push(now + rnd() * leaseMs * 0.8, { kind: 'confirm-send', server: e.server });
        break;
      }
      case 'confirm-arrive': {
        if (partitioned.has(e.server)) break; // lost on the way
        const ext = extendLease(current, e.server, now, leaseMs, version);
        if (ext) {
          current = ext;
          granted[currentId]!.expiresAtMs = ext.expiresAtMs;
          stats.extensions++;
          push(now + delay(), { kind: 'reply-arrive', server: e.server, sentLocal: e.sentLocal, primary: true, remainingMs: ext.expiresAtMs - now, version: ext.version, leaseId: currentId });
        } else {
          stats.refusals++;
          push(now + delay(), { kind: 'reply-arrive', server: e.server, sentLocal: e.sentLocal, primary: false, remainingMs: 0, version, leaseId: -1 });
        }
        break;
      }
      case 'reply-arrive': {
        if (partitioned.has(e.server)) break; // lost on the way
        const prev = open.get(e.server);
        if (prev) {
          prev.untilMs = Math.min(prev.untilMs, now);
          open.delete(e.server);
        }
        if (!e.primary) break;
        const untilMs = toReal(e.server, primaryExpiryMs(e.sentLocal, e.remainingMs, drift));
        // the primary's view ends before the master's record of the same lease, as recorded now
        if (!(untilMs < granted[e.leaseId]!.expiresAtMs)) assert.fail(`seed ${seed}: primary ${e.server} believes until ${untilMs}, master says ${granted[e.leaseId]!.expiresAtMs}`);
        if (untilMs > now) {
          const b = { server: e.server, fromMs: now, untilMs, leaseId: e.leaseId };
          beliefs.push(b);
          open.set(e.server, b);
        }
        break;
      }
      case 'partition':
        partitioned.add(e.server);
        break;
      case 'heal':
        partitioned.delete(e.server);
        break;
      case 'restart':
        // the lease table is in memory only; the version was logged
        current = undefined;
        currentId = -1;
        grantsAllowedAtMs = now + leaseMs;
        stats.restarts++;
        break;
      case 'adopt':
        // a replica reports a higher version: the master adopts it, revoking the lease by version
        version++;
        break;
    }
    // invariant at every step: by the master's records, all unexpired leases
    // have one primary (a regrant overlaps its predecessor, with the same primary)
    const live = granted.filter((g) => g.grantedAtMs <= now && g.expiresAtMs > now);
    if (new Set(live.map((g) => g.primary)).size > 1) assert.fail(`seed ${seed} t=${now}: two primaries ${JSON.stringify(live)}`);
  }

  // whole-history checks: leases of different primaries are pairwise disjoint,
  // by the master's records and by the primaries' own clocks
  for (let i = 0; i < granted.length; i++)
    for (let j = i + 1; j < granted.length; j++) {
      const a = granted[i]!;
      const b = granted[j]!;
      if (a.primary === b.primary) {
        // a later lease of the same primary never ends before an earlier one (nothing is left dangling)
        if (b.expiresAtMs < a.expiresAtMs && b.grantedAtMs < a.expiresAtMs) assert.fail(`seed ${seed}: regrant shortened a lease ${JSON.stringify([a, b])}`);
        continue;
      }
      if (!(a.expiresAtMs <= b.grantedAtMs || b.expiresAtMs <= a.grantedAtMs)) assert.fail(`seed ${seed}: leases overlap ${JSON.stringify([a, b])}`);
    }
  for (let i = 0; i < beliefs.length; i++)
    for (let j = i + 1; j < beliefs.length; j++) {
      const a = beliefs[i]!;
      const b = beliefs[j]!;
      if (a.server === b.server) continue;
      if (!(a.untilMs <= b.fromMs || b.untilMs <= a.fromMs)) assert.fail(`seed ${seed}: ${a.server} and ${b.server} both act as primary ${JSON.stringify([a, b])}`);
    }
  for (const b of beliefs) {
    const g = granted[b.leaseId]!;
    assert.equal(g.primary, b.server);
    assert.ok(b.fromMs >= g.grantedAtMs && b.untilMs <= g.expiresAtMs);
  }
  return stats;
}

test('simulation: never two primaries by the master records or by their own clocks', () => {
  const total = { grants: 0, regrants: 0, waits: 0, current: 0, restarts: 0, extensions: 0, refusals: 0 };
  for (let seed = 1; seed <= 120; seed++) {
    const s = simulate(seed);
    for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += s[k];
  }
  // the schedule exercised every path
  for (const [k, v] of Object.entries(total)) assert.ok(v > 20, `${k} happened only ${v} times`);
});
