import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { FaultRule } from '../../shared/fault.js';
import type { PartitionCluster } from './cluster.js';
import type { Network } from './run.js';

// The netns mode of the partition suite (Linux, root): every node (master,
// chunkservers), every workload process and the harness itself runs in its
// own network namespace, each with one veth whose peer is enslaved to a
// bridge that lives in a namespace of its own. No namespace has a default
// route, and the host's network namespace is never touched, so test traffic
// cannot leave the bridge. Addresses come from a private /24 picked at
// random (10.213.N.0/24). Before any traffic, `ip route get ADDR` inside
// every namespace must show each node address reached over its own veth on
// the bridge; the run aborts otherwise.
//
// Partitions are nftables rules: a rule "A cannot reach B" drops, in A's
// namespace, packets to B's address in the ORIGINAL direction of a
// connection, i.e. connections A opens to B (new ones and established
// keep-alive ones alike), while B's connections to A still get A's replies.
// That matches the fault layer's one-way semantics; both ways is two rules.
// Delays (the slow-primary nemesis) have no firewall rule here: they still go
// through the fault layer of the processes concerned.
//
// Everything is created by runInNetns() and removed in its finally (and on
// SIGINT/SIGTERM/exit): processes still inside the namespaces are killed by
// PID (`ip netns pids`), then the namespaces are deleted, which removes the
// veths, the bridge and the rules with them.

export interface NetnsLayout {
  prefix: string;
  subnet: string;
  /** Node, workload and harness names -> namespace and address. */
  nodes: Record<string, { netns: string; addr: string }>;
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Why netns mode cannot run here, or undefined if it can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root (network namespaces, veth, bridge, nftables); run as root or use --mode layer';
  if (!has('ip')) return 'needs the `ip` command (Debian package iproute2)';
  if (!has('nft')) return 'needs the `nft` command (Debian package nftables; .ci/run installs it)';
  const probe = `gfsp-probe-${process.pid}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.status !== 0) return `cannot create a network namespace: ${(r.stderr || '').trim()}`;
  spawnSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
  return undefined;
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function nft(netns: string, script: string): void {
  execFileSync('ip', ['netns', 'exec', netns, 'nft', '-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
}

export function makeLayout(chunkservers: number, workers: number): NetnsLayout {
  const prefix = `gfsp${process.pid % 100000}`;
  const subnet = `10.213.${randomInt(1, 255)}`;
  const names = ['ctl', 'master', ...Array.from({ length: chunkservers }, (_, i) => `cs${i}`), ...Array.from({ length: workers }, (_, i) => `w${i}`)];
  const nodes: NetnsLayout['nodes'] = {};
  names.forEach((n, i) => (nodes[n] = { netns: `${prefix}-${n}`, addr: `${subnet}.${i + 2}` }));
  return { prefix, subnet, nodes };
}

const bridgeNs = (l: NetnsLayout) => `${l.prefix}-br`;

/** Creates the bridge, the namespaces and their veths, and the (empty) nftables chains. */
export function setUp(l: NetnsLayout, log: (s: string) => void): void {
  const br = bridgeNs(l);
  ip(['netns', 'add', br]);
  ip(['-n', br, 'link', 'set', 'lo', 'up']);
  ip(['-n', br, 'link', 'add', 'br0', 'type', 'bridge']);
  ip(['-n', br, 'link', 'set', 'br0', 'up']);
  for (const [name, n] of Object.entries(l.nodes)) {
    ip(['netns', 'add', n.netns]);
    ip(['-n', n.netns, 'link', 'set', 'lo', 'up']);
    const peer = `v-${name}`;
    ip(['-n', br, 'link', 'add', peer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.netns]);
    ip(['-n', br, 'link', 'set', peer, 'master', 'br0']);
    ip(['-n', br, 'link', 'set', peer, 'up']);
    ip(['-n', n.netns, 'addr', 'add', `${n.addr}/24`, 'dev', 'eth0']);
    ip(['-n', n.netns, 'link', 'set', 'eth0', 'up']);
    nft(n.netns, 'table inet gfsp {\n chain output { type filter hook output priority 0; policy accept; }\n}\n');
  }
  log(`netns: bridge namespace ${br}, ${Object.keys(l.nodes).length} namespaces on ${l.subnet}.0/24`);
}

/** Every namespace must reach every node address over its own veth (eth0) on the bridge, never through a gateway. */
export function checkRoutes(l: NetnsLayout): void {
  for (const n of Object.values(l.nodes)) {
    for (const m of Object.values(l.nodes)) {
      const out = ip(['-n', n.netns, 'route', 'get', m.addr]).trim();
      const own = m.addr === n.addr;
      const ok = own ? /\bdev lo\b/.test(out) : /\bdev eth0\b/.test(out) && !/\bvia\b/.test(out);
      if (!ok) throw new Error(`netns: in ${n.netns}, the route to ${m.addr} is "${out}", not over the suite's bridge: aborting before any traffic`);
    }
    const routes = ip(['-n', n.netns, 'route', 'show']).trim();
    if (/\bdefault\b/.test(routes)) throw new Error(`netns: ${n.netns} has a default route (${routes}): aborting`);
  }
}

/** Kills every process left in the namespaces (by PID), then deletes them. Never throws. */
export function tearDown(l: NetnsLayout): void {
  const all = [...Object.values(l.nodes).map((n) => n.netns), bridgeNs(l)];
  for (const ns of all) {
    const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
    for (const pid of (r.stdout || '').split(/\s+/).filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  for (const ns of all) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
}

/**
 * Sets everything up, runs this same command inside the harness namespace
 * (with --netns-inner), and tears everything down whatever happens.
 */
export async function runInNetns(argv: string[], o: { chunkservers: number; workers: number; log: (l: string) => void }): Promise<number> {
  const layout = makeLayout(o.chunkservers, o.workers);
  let done = false;
  const cleanup = () => {
    if (done) return;
    done = true;
    tearDown(layout);
    o.log('netns: namespaces removed');
  };
  const onSignal = () => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', cleanup);
  try {
    setUp(layout, o.log);
    checkRoutes(layout);
    o.log(`netns: routes checked: every node address is reached over its namespace's own veth on the bridge (${layout.subnet}.0/24); no default routes`);
    const script = fileURLToPath(new URL('../partition.js', import.meta.url));
    const child = spawn('ip', ['netns', 'exec', layout.nodes.ctl!.netns, process.execPath, script, ...argv, '--netns-inner', JSON.stringify(layout)], { stdio: 'inherit' });
    return await new Promise<number>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? 2 : 1))));
  } finally {
    cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The Network of a run inside the harness namespace. */
export function innerNetwork(json: string): Network {
  const l = JSON.parse(json) as NetnsLayout;
  const node = (name: string) => {
    const n = l.nodes[name];
    if (!n) throw new Error(`netns: no namespace for ${name}`);
    return n;
  };
  return {
    mode: 'netns',
    host: (name) => node(name).addr,
    port: (name) => (name === 'master' ? 7070 : 7071),
    netns: (name) => node(name).netns,
    async setFaults(cluster: PartitionCluster, rules: FaultRule[]) {
      // Delays have no firewall equivalent here: they go through the fault layer (its admin endpoint), drops through nftables.
      await cluster.setFaults(rules.filter((r) => !r.drop && r.delayMs));
      // Replace every namespace's rules: flush, then drop what each source may not send.
      const bySource = new Map<string, string[]>();
      for (const name of Object.keys(l.nodes)) if (name !== 'ctl') bySource.set(name, []);
      for (const r of rules) {
        if (!r.drop) continue;
        const froms = r.from === '*' ? [...bySource.keys()] : [r.from];
        const tos = r.to === '*' ? [...bySource.keys()] : [r.to];
        for (const f of froms) for (const t of tos) if (f !== t && l.nodes[t] && bySource.has(f)) bySource.get(f)!.push(`add rule inet gfsp output ip daddr ${l.nodes[t]!.addr} ct direction original drop`);
      }
      for (const [name, lines] of bySource) nft(node(name).netns, ['flush chain inet gfsp output', ...lines].join('\n') + '\n');
    },
  };
}
