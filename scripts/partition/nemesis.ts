import type { FaultRule } from '../../shared/fault.js';
import { randInt, rng, shuffle, type Rand } from '../../shared/rng.js';

// The nemesis: a seeded random schedule of faults, one at a time, each
// healed before the next. The schedule is a pure function of (seed,
// duration, enabled nemeses, cluster shape), so the same seed gives the
// same schedule; which server is "the primary of a hot chunk" is decided at
// run time from the master's lease record (GET /debug/leases), using the
// event's `pick` fraction, so the concrete target is printed as it happens.
//
// Nemeses:
//   partition  isolate the primary from the master (both ways, or one way),
//              isolate the primary from its secondaries, random halves (the
//              master, chunkservers and clients split in two), one-way drops
//              between two random nodes, and a slow primary: cut from the
//              master while every client's requests reach it 1.5 leases late
//              (so they arrive after its lease has run out)
//   kill       SIGKILL a chunkserver (the primary or a random one) or the
//              master, restart it after a while
//   pause      SIGSTOP the primary for 1.5-3 lease periods, then SIGCONT
//   bump       SIGKILL the master inside a version bump: between its
//              {op:'version', pendingFrom} record and the matching 'bumped'
//              (its /chunk/version calls to the chunkservers are delayed so
//              the window is long; the harness watches the master's op log),
//              restart it after a while
//   promote    the run has one log replica (a shadow master); once, about
//              half-way, SIGKILL the master and promote the shadow
//              (POST /api/promote {force:false}); the old master then either
//              stays dead or is restarted as it was and must be fenced off
//   clock      a per-node clock RATE skew within the drift bound (set at each
//              start through GFS_CLOCK_SKEW, see shared/clock.ts). Clock
//              OFFSETS are not injected: leases are measured only with
//              monotonic durations (master/leases.ts), so an offset between
//              nodes is absorbed by design; only the rate matters.

export const nemesisKinds = ['partition', 'kill', 'pause', 'clock', 'bump', 'promote'] as const;
export type NemesisKind = (typeof nemesisKinds)[number];

export type FaultAction =
  | { type: 'isolate-primary-master'; pick: number; way: 'both' | 'to-master' | 'from-master' }
  | { type: 'isolate-primary-secondaries'; pick: number }
  | { type: 'halves'; side: Record<string, 0 | 1> }
  | { type: 'one-way'; from: string; to: string }
  | { type: 'slow-primary'; pick: number; delayMs: number }
  | { type: 'kill-chunkserver'; pick: number; primary: boolean }
  | { type: 'kill-master' }
  | { type: 'pause-primary'; pick: number }
  | { type: 'kill-master-in-bump'; delayMs: number }
  | { type: 'promote-shadow'; restartOld: boolean };

export interface ScheduledFault {
  /** Start, ms after the workload started, and how long the fault lasts. */
  atMs: number;
  holdMs: number;
  action: FaultAction;
}

export interface Schedule {
  seed: number;
  faults: ScheduledFault[];
  /** GFS_CLOCK_SKEW per node (0 without the clock nemesis). */
  clockSkew: Record<string, number>;
}

export interface ScheduleInput {
  seed: number;
  durationMs: number;
  nemeses: NemesisKind[];
  chunkservers: string[];
  clients: string[];
  leaseMs: number;
  /** Bound on the clock rate difference between any two nodes (defaults.clockDriftFraction). */
  driftFraction: number;
}

export function makeSchedule(i: ScheduleInput): Schedule {
  const r: Rand = rng(i.seed);
  const servers = ['master', ...i.chunkservers];
  const clockSkew: Record<string, number> = {};
  for (const n of servers) {
    // Each node within +-drift/4 of true time: any two within drift/2 of each other, inside the bound with room to spare.
    clockSkew[n] = i.nemeses.includes('clock') ? Math.round((r() * 2 - 1) * (i.driftFraction / 4) * 1e6) / 1e6 : 0;
  }
  const menu: (() => { holdMs: number; action: FaultAction })[] = [];
  const L = i.leaseMs;
  if (i.nemeses.includes('partition')) {
    menu.push(() => ({ holdMs: randInt(r, L / 2, 3 * L), action: { type: 'isolate-primary-master', pick: r(), way: 'both' } }));
    menu.push(() => ({ holdMs: randInt(r, L / 2, 3 * L), action: { type: 'isolate-primary-master', pick: r(), way: r() < 0.5 ? 'to-master' : 'from-master' } }));
    menu.push(() => ({ holdMs: randInt(r, L / 2, 3 * L), action: { type: 'isolate-primary-secondaries', pick: r() } }));
    menu.push(() => {
      const nodes = [...servers, ...i.clients];
      const order = shuffle(r, nodes);
      const cut = randInt(r, 1, nodes.length - 1);
      const side: Record<string, 0 | 1> = {};
      order.forEach((n, k) => (side[n] = k < cut ? 0 : 1));
      return { holdMs: randInt(r, L / 2, 3 * L), action: { type: 'halves', side } };
    });
    menu.push(() => {
      const from = shuffle(r, [...servers, ...i.clients])[0]!;
      const to = shuffle(r, servers.filter((s) => s !== from))[0]!;
      return { holdMs: randInt(r, L / 2, 3 * L), action: { type: 'one-way', from, to } };
    });
    menu.push(() => ({ holdMs: randInt(r, Math.round(2.5 * L), Math.round(3.5 * L)), action: { type: 'slow-primary', pick: r(), delayMs: Math.round(1.5 * L) } }));
  }
  if (i.nemeses.includes('kill')) {
    menu.push(() => ({ holdMs: randInt(r, 300, 2 * L), action: { type: 'kill-chunkserver', pick: r(), primary: r() < 0.6 } }));
    menu.push(() => ({ holdMs: randInt(r, 200, L), action: { type: 'kill-master' } }));
  }
  if (i.nemeses.includes('pause')) {
    menu.push(() => ({ holdMs: randInt(r, Math.round(1.5 * L), 3 * L), action: { type: 'pause-primary', pick: r() } }));
  }
  if (i.nemeses.includes('bump')) {
    // Delayed well inside the master's 5 s /chunk/version timeout, so the replicas still take the bump.
    menu.push(() => ({ holdMs: randInt(r, 500, 2 * L), action: { type: 'kill-master-in-bump', delayMs: randInt(r, 1_500, 2_500) } }));
  }
  const faults: ScheduledFault[] = [];
  let promoted = !i.nemeses.includes('promote');
  if (menu.length > 0 || !promoted) {
    let t = randInt(r, 1_000, 2_500);
    for (let k = 0; k < 10_000; k++) {
      // The promotion comes once, the first slot past half the run (workload processes take a while to start) (the hold: until the old master is restarted, or the next fault).
      if (promoted && menu.length === 0) break;
      if (menu.length === 0) t = Math.max(t, Math.round(i.durationMs / 2));
      const promoteNow = !promoted && t >= i.durationMs / 2;
      const f = promoteNow ? { holdMs: randInt(r, L, 2 * L), action: { type: 'promote-shadow' as const, restartOld: r() < 0.5 } } : menu[Math.floor(r() * menu.length)]!();
      if (promoteNow) promoted = true;
      if (t + f.holdMs > i.durationMs - 1_000) break;
      faults.push({ atMs: t, ...f });
      t += f.holdMs + randInt(r, 300, 2_000);
    }
  }
  return { seed: i.seed, faults, clockSkew };
}

/** Fault rules cutting a from b, both ways. */
export function cut(a: string, b: string): FaultRule[] {
  return [
    { from: a, to: b, drop: true },
    { from: b, to: a, drop: true },
  ];
}

export function describeAction(a: FaultAction): string {
  switch (a.type) {
    case 'isolate-primary-master':
      return `isolate the primary (pick ${a.pick.toFixed(3)}) from the master${a.way === 'both' ? ', both ways' : a.way === 'to-master' ? ', primary->master only' : ', master->primary only'}`;
    case 'isolate-primary-secondaries':
      return `isolate the primary (pick ${a.pick.toFixed(3)}) from its secondaries, both ways`;
    case 'halves':
      return `halves: {${Object.keys(a.side).filter((n) => a.side[n] === 0).join(' ')}} | {${Object.keys(a.side).filter((n) => a.side[n] === 1).join(' ')}}`;
    case 'one-way':
      return `one way: ${a.from} -> ${a.to} dropped`;
    case 'slow-primary':
      return `slow primary (pick ${a.pick.toFixed(3)}): cut from the master, clients' requests to it delayed ${a.delayMs} ms`;
    case 'kill-chunkserver':
      return `SIGKILL ${a.primary ? 'the primary' : 'a chunkserver'} (pick ${a.pick.toFixed(3)}), restart after`;
    case 'kill-master':
      return 'SIGKILL the master, restart after';
    case 'pause-primary':
      return `SIGSTOP the primary (pick ${a.pick.toFixed(3)}), SIGCONT after`;
    case 'kill-master-in-bump':
      return `SIGKILL the master inside a version bump (its /chunk/version calls ${a.delayMs} ms late), restart after`;
    case 'promote-shadow':
      return `SIGKILL the master, promote the shadow${a.restartOld ? ', restart the old master as it was (must be fenced off)' : ', the old master stays dead'}`;
  }
}

export function formatSchedule(s: Schedule): string {
  const lines = [`schedule for seed ${s.seed}: ${s.faults.length} faults`];
  const skews = Object.entries(s.clockSkew).filter(([, v]) => v !== 0);
  if (skews.length) lines.push(`  clock rate skew: ${skews.map(([n, v]) => `${n} ${(v * 100).toFixed(3)}%`).join(', ')}`);
  for (const f of s.faults) lines.push(`  t+${(f.atMs / 1000).toFixed(1).padStart(5)}s for ${(f.holdMs / 1000).toFixed(1).padStart(4)}s  ${describeAction(f.action)}`);
  return lines.join('\n');
}
