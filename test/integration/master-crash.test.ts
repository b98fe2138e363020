import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { watch, type FSWatcher } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { GfsError } from '../../shared/errors.js';
import { rng } from '../../shared/rng.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { EntryType, FileInfo, ListEntry } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

// Invariant 3: every acknowledged metadata mutation survives a master SIGKILL,
// and nothing unacknowledged is half-applied.
//
// Many concurrent workers in this process create, mkdir, rename and delete
// over names each of them owns, straight against the master's HTTP API with
// no retries (so an op's outcome is what its single request saw):
//   acknowledged (2xx)   -> it must be there after any number of restarts,
//   4xx                  -> it was refused and must not be there,
//   anything else        -> unknown: all of it or none of it is there.
// Every name belongs to one "item", a short fixed sequence of steps, so the
// state of the item's names after k steps is known exactly; after a restart
// the observed state must be that after `acked` steps, or (only when the next
// step's outcome is unknown) after `acked + 1`. The whole listing must be
// explained by the items: nothing more, nothing less.
//
// The master is SIGKILLed at a different point in each round (before any
// checkpoint, while one is being taken, right after one finished, idle),
// restarted on the same port, and every round's items are checked again.

type Kind = EntryType;
type State = Map<string, Kind>;

interface Step {
  endpoint: string;
  body: Record<string, unknown>;
  apply(s: State): void;
}

interface Item {
  base: string;
  steps: Step[];
  /** states[k]: the item's names after k steps, canonical text. */
  states: string[];
  /** Steps acknowledged (or, after a restart, found applied). */
  acked: number;
  /** The step after the acknowledged ones was sent and its outcome is unknown. */
  inDoubt: boolean;
  /** The step after the acknowledged ones was refused with a 4xx. */
  refused: boolean;
}

const under = (p: string, root: string) => p === root || p.startsWith(root + '/');

const create = (path: string): Step => ({ endpoint: '/api/create', body: { path }, apply: (s) => void s.set(path, 'file') });
/** mkdir; with `parentsFrom` (an item's name prefix), every missing ancestor under it comes into being in the same record. */
const mkdir = (path: string, parentsFrom?: string): Step => ({
  endpoint: '/api/mkdir',
  body: { path, parents: parentsFrom !== undefined },
  apply: (s) => {
    const parts = path.split('/');
    for (let i = 2; i <= parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      if (p === path || (parentsFrom !== undefined && p.startsWith(parentsFrom) && !s.has(p))) s.set(p, 'dir');
    }
  },
});
const rename = (src: string, dst: string): Step => ({
  endpoint: '/api/rename',
  body: { src, dst },
  apply: (s) => {
    const moved = [...s].filter(([p]) => under(p, src));
    for (const [p] of moved) s.delete(p);
    for (const [p, k] of moved) s.set(dst + p.slice(src.length), k);
  },
});
const remove = (path: string, recursive = false): Step => ({
  endpoint: '/api/delete',
  body: { path, recursive },
  apply: (s) => {
    for (const p of [...s.keys()]) if (under(p, path)) s.delete(p);
  },
});

function canonical(entries: Iterable<[string, Kind]>): string {
  return [...entries]
    .map(([p, k]) => `${k} ${p}`)
    .sort()
    .join('\n');
}

/** An item's steps. Every name it touches starts with `${base}.`, which no other item's names do. */
function stepsFor(base: string, variant: number): Step[] {
  switch (variant % 6) {
    case 0:
      return [create(`${base}.a`), rename(`${base}.a`, `${base}.b`), remove(`${base}.b`)];
    case 1:
      return [create(`${base}.a`), rename(`${base}.a`, `${base}.b`)];
    case 2:
      // A directory rename moves a subtree in one record: never half of it.
      return [mkdir(`${base}.d`), create(`${base}.d/f`), rename(`${base}.d`, `${base}.m`), create(`${base}.m/g`)];
    case 3:
      return [mkdir(`${base}.d`), create(`${base}.d/f`), rename(`${base}.d/f`, `${base}.f`), remove(`${base}.d`)];
    case 4:
      return [create(`${base}.a`), remove(`${base}.a`), create(`${base}.a`)];
    default:
      // mkdir -p makes three directories in one record; a recursive delete drops a subtree in one.
      return [mkdir(`${base}.p/q/r`, `${base}.`), create(`${base}.p/q/r/f`), rename(`${base}.p`, `${base}.s`), remove(`${base}.s/q`, true)];
  }
}

function makeItem(base: string, variant: number): Item {
  const steps = stepsFor(base, variant);
  const s: State = new Map();
  const states = [canonical(s)];
  for (const st of steps) {
    st.apply(s);
    states.push(canonical(s));
  }
  return { base, steps, states, acked: 0, inDoubt: false, refused: false };
}

type KillPoint = 'before-checkpoint' | 'checkpoint-log-switch' | 'checkpoint-write' | 'checkpoint-random' | 'after-checkpoint' | 'idle';

/** Rejects with a clear message if p has not settled within ms. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const WORKERS = 24;
const ITEMS_PER_WORKER = 8;
const CHECKPOINT_BYTES = 20_000;

describe('master SIGKILL under concurrent namespace mutations', { timeout: 150_000 }, () => {
  let cluster: TestCluster | undefined;

  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  it('keeps every acknowledged mutation and half-applies none, at several kill points', async (t) => {
    const seed = Number(process.env.GFS_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
    t.diagnostic(`seed ${seed} (set GFS_TEST_SEED to replay)`);
    const rand = rng(seed);
    const between = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

    cluster = await startCluster({ chunkservers: 1, checkpointBytes: CHECKPOINT_BYTES });
    const c = cluster;
    const masterDir = join(c.dir, 'master');
    const port = c.master.port;

    const call = <T>(endpoint: string, body?: unknown, query?: Record<string, string>) =>
      rpcJson<T>(c.masterUrl, endpoint, body, { query, targetName: 'master', timeoutMs: 10_000 });
    const listAll = async (): Promise<ListEntry[]> => (await call<{ entries: ListEntry[] }>('/api/list', undefined, { path: '/', recursive: '1' })).entries;
    const files = async () => {
      const names = await readdir(masterDir);
      return { logs: names.filter((n) => /^oplog\.\d+\.log$/.test(n)).sort(), checkpoints: names.filter((n) => /^checkpoint\.\d+\.json$/.test(n)).sort() };
    };
    const maxSeq = (names: string[]) => Math.max(0, ...names.map((n) => Number(/\.(\d+)\./.exec(n)![1])));

    /** Names outside every item: the round directories and the final check's. */
    const fixed = new Map<string, Kind>();
    const items: Item[] = [];
    let checkpointsSeen = 0;

    /** After a restart: the listing must be exactly what the items' histories allow. */
    async function verify(label: string, lastRound: Item[]): Promise<{ applied: number; notApplied: number }> {
      const entries = await waitFor(`the master to list / after ${label}`, () => listAll(), 20_000);
      const observed = new Map<string, Kind>(entries.map((e) => [e.path, e.type]));
      assert.equal(observed.size, entries.length, 'list -R names every path once');
      const byItem = new Map<string, [string, Kind][]>();
      const expected = new Map<string, Kind>(fixed);
      // Item bases are /rN/wW-I; an item's names are base + '.' + suffix.
      for (const [p, k] of observed) {
        const m = /^(\/r\d+\/w\d+-\d+)\./.exec(p);
        if (!m) continue;
        let list = byItem.get(m[1]!);
        if (!list) byItem.set(m[1]!, (list = []));
        list.push([p, k]);
      }
      const problems: string[] = [];
      let applied = 0;
      let notApplied = 0;
      for (const it of items) {
        const got = canonical(byItem.get(it.base) ?? []);
        const allowed = it.inDoubt ? [it.acked, it.acked + 1] : [it.acked];
        const match = allowed.find((k) => it.states[k] === got);
        if (match === undefined) {
          const steps = it.steps.map((s, i) => `${i < it.acked ? 'ACK' : i === it.acked ? (it.inDoubt ? '???' : it.refused ? '4xx' : 'not sent') : 'not sent'} ${s.endpoint} ${JSON.stringify(s.body)}`);
          problems.push(`${it.base}: found [${got.replace(/\n/g, ', ')}], allowed ${allowed.map((k) => `[${it.states[k]!.replace(/\n/g, ', ')}]`).join(' or ')}; steps: ${steps.join('; ')}`);
          continue;
        }
        if (it.inDoubt) {
          if (match === it.acked + 1) applied++;
          else notApplied++;
          // Whatever recovery decided is now the truth, and must stay so.
          it.acked = match;
          it.inDoubt = false;
        }
        for (const line of got ? got.split('\n') : []) {
          const i = line.indexOf(' ');
          expected.set(line.slice(i + 1), line.slice(0, i) as Kind);
        }
      }
      assert.ok(problems.length === 0, `after ${label}: ${problems.length} item(s) not in an allowed state:\n${problems.slice(0, 15).join('\n')}`);
      const extra = [...observed].filter(([p, k]) => expected.get(p) !== k).map(([p, k]) => `${k} ${p}`);
      const missing = [...expected].filter(([p, k]) => observed.get(p) !== k).map(([p, k]) => `${k} ${p}`);
      assert.ok(
        extra.length === 0 && missing.length === 0,
        `after ${label}: the listing must hold exactly the items' names and the fixed ones; unexplained: ${extra.slice(0, 10).join(', ')}; missing: ${missing.slice(0, 10).join(', ')}`,
      );

      // stat agrees with the listing for the newest round's names.
      const paths = lastRound.flatMap((it) => (it.states[it.acked] ? it.states[it.acked]!.split('\n') : []));
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < paths.length) {
            const line = paths[next++]!;
            const i = line.indexOf(' ');
            const info = await call<FileInfo>('/api/stat', undefined, { path: line.slice(i + 1) });
            assert.equal(info.type, line.slice(0, i), `stat ${line.slice(i + 1)}`);
          }
        }),
      );
      return { applied, notApplied };
    }

    const plan: KillPoint[] = ['before-checkpoint', 'checkpoint-log-switch', 'after-checkpoint', 'checkpoint-write', 'checkpoint-random', 'checkpoint-log-switch', 'checkpoint-write', 'idle'];
    for (let round = 0; round < plan.length; round++) {
      const point = plan[round]!;
      const roundStart = Date.now();
      // The restarted master accepts mutations again: a new round directory, acknowledged.
      const dir = `/r${round}`;
      await waitFor(`mkdir ${dir}`, () => call('/api/mkdir', { path: dir }).then(() => true), 20_000);
      fixed.set(dir, 'dir');

      const roundItems: Item[] = [];
      const perWorker: Item[][] = [];
      for (let w = 0; w < WORKERS; w++) {
        const mine: Item[] = [];
        for (let i = 0; i < ITEMS_PER_WORKER; i++) mine.push(makeItem(`${dir}/w${w}-${i}`, between(0, 5)));
        perWorker.push(mine);
        roundItems.push(...mine);
      }
      items.push(...roundItems);

      // Acknowledgement counter with waiters, so kill points are reached by events, not sleeps.
      let ackCount = 0;
      let refusedCount = 0;
      let unknownCount = 0;
      const waiters: { n: number; resolve: () => void }[] = [];
      const whenAcked = (n: number) =>
        new Promise<void>((resolve) => {
          if (ackCount >= n) resolve();
          else waiters.push({ n, resolve });
        });
      const onAck = () => {
        ackCount++;
        for (let i = waiters.length - 1; i >= 0; i--) if (ackCount >= waiters[i]!.n) waiters.splice(i, 1)[0]!.resolve();
      };

      const worker = async (mine: Item[]) => {
        for (const it of mine) {
          for (let k = 0; k < it.steps.length; k++) {
            const st = it.steps[k]!;
            try {
              await call(st.endpoint, st.body);
            } catch (e) {
              if (e instanceof GfsError && e.status >= 400 && e.status < 500) {
                // Refused: not applied. The item's later steps would only be refused too.
                it.refused = true;
                refusedCount++;
                break;
              }
              // Connection refused or reset, timeout, 5xx: the master may or may not have logged it.
              it.inDoubt = true;
              unknownCount++;
              return;
            }
            it.acked = k + 1;
            onAck();
          }
        }
      };
      const done = Promise.all(perWorker.map(worker));
      const reach = (n: number) => Promise.race([whenAcked(n), done]);

      const before = await files();
      let note = '';
      let checkpointCall: Promise<unknown> | undefined;
      switch (point) {
        case 'before-checkpoint': {
          // Early in the first round: the log has not yet reached the checkpoint threshold.
          await reach(between(10, 80));
          break;
        }
        case 'checkpoint-log-switch':
        case 'checkpoint-write': {
          // Ask for a checkpoint and SIGKILL from inside the file-system event for
          // its first step: the new log file appearing (log switch not yet
          // complete, checkpoint not written), or the checkpoint's temporary file
          // appearing (new log in use, checkpoint half written).
          await reach(between(100, 400));
          const now = await files();
          // Only files newer than any there now: old ones being deleted also raise events.
          const [target, newerThan] = point === 'checkpoint-log-switch' ? [/^oplog\.(\d+)\.log$/, maxSeq(now.logs)] : [/^\.?checkpoint\.(\d+)\.json(\.tmp)?$/, maxSeq(now.checkpoints)];
          let seen = '';
          let watcher: FSWatcher | undefined;
          const hit = new Promise<void>((resolve) => {
            watcher = watch(masterDir, (_event, name) => {
              const m = name ? target.exec(name) : null;
              if (!m || Number(m[1]) <= newerThan || seen) return;
              seen = name!;
              c.master.proc.kill('SIGKILL');
              resolve();
            });
          });
          // A request made while an automatic checkpoint runs joins it, and that
          // one may be past the step watched for: ask again until the kill.
          checkpointCall = (async () => {
            for (let i = 0; i < 20 && !seen; i++) await call('/api/checkpoint', {}).catch(() => undefined);
          })();
          try {
            await within(hit, 10_000, `a new file matching ${target}`);
          } finally {
            watcher?.close();
          }
          note = `killed on seeing ${seen}`;
          break;
        }
        case 'checkpoint-random': {
          // Kill at a random moment shortly after asking for a checkpoint (the delay picks the kill point; nothing waits on it).
          await reach(between(100, 400));
          checkpointCall = call('/api/checkpoint', {}).catch(() => undefined);
          const delayMs = between(0, 12);
          note = `kill ${delayMs} ms after POST /api/checkpoint`;
          await new Promise((r) => setTimeout(r, delayMs));
          break;
        }
        case 'after-checkpoint': {
          await reach(between(60, 250));
          // A checkpoint requested while one runs joins it, so the one that
          // finishes covers at least the log that was current before the call.
          const logBefore = maxSeq((await files()).logs);
          await call('/api/checkpoint', {});
          const cps = await files();
          assert.ok(maxSeq(cps.checkpoints) >= logBefore, `a checkpoint covering log ${logBefore} after POST /api/checkpoint (have ${cps.checkpoints.join(', ')})`);
          await reach(ackCount + between(20, 100));
          break;
        }
        case 'idle': {
          await done;
          break;
        }
      }
      const ackedAtKill = ackCount;
      const killAtMs = Date.now() - roundStart;
      await c.kill(c.master, 'SIGKILL');
      await done;
      await checkpointCall;
      const atKill = await files();
      checkpointsSeen = Math.max(checkpointsSeen, atKill.checkpoints.length);
      if (point === 'before-checkpoint') {
        assert.deepEqual(atKill.checkpoints, [], 'no checkpoint was taken before this kill point');
        assert.deepEqual(atKill.logs, ['oplog.00000001.log'], 'still on the first log');
      }

      const restartStart = Date.now();
      await c.startMaster(port);
      const restartMs = Date.now() - restartStart;
      const r = await verify(`round ${round} (${point})`, roundItems);
      t.diagnostic(
        `round ${round} ${point}: acked ${ackedAtKill} before kill (${ackCount} in all), refused ${refusedCount}, unknown ${unknownCount} ` +
          `(found applied ${r.applied}, not applied ${r.notApplied}); files before [${before.logs.join(' ')} | ${before.checkpoints.join(' ')}], ` +
          `at kill [${atKill.logs.join(' ')} | ${atKill.checkpoints.join(' ')}]${note ? '; ' + note : ''}; ` +
          `killed after ${killAtMs} ms, restart ${restartMs} ms, round ${Date.now() - roundStart} ms`,
      );
      if (point === 'idle') assert.equal(unknownCount, 0, 'nothing was in flight when the idle master was killed');
      assert.equal(refusedCount, 0, 'no step on names a worker owns is refused');
    }
    assert.ok(checkpointsSeen > 0, 'checkpoints were taken during the run');

    // The master keeps accepting and keeping mutations after all those restarts.
    await call('/api/mkdir', { path: '/final/x', parents: true });
    await call('/api/create', { path: '/final/x/f' });
    await call('/api/rename', { src: '/final/x', dst: '/final/y' });
    fixed.set('/final', 'dir').set('/final/y', 'dir').set('/final/y/f', 'file');
    await c.kill(c.master, 'SIGKILL');
    await c.startMaster(port);
    const entries = await waitFor('list /final after the last restart', () => call<{ entries: ListEntry[] }>('/api/list', undefined, { path: '/final', recursive: '1' }), 20_000);
    assert.deepEqual(
      entries.entries.map((e) => `${e.type} ${e.path}`),
      ['dir /final/y', 'file /final/y/f'],
    );
    await verify('the final restart', []);
  });
});
