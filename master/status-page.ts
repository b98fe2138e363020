import type { ChunkRow, EntryRow, StatusModel } from './status.js';
import { formatBytes as fmtBytes } from '../shared/config.js';

// The master's status page (GET /status), like the HDFS NameNode page: one
// server-rendered HTML document, no build step, no external resources. It
// works without JavaScript (every link is a plain page load); with it, a few
// lines of inline script re-fetch the page every few seconds and swap in the
// sections that changed, leaving alone a section that has keyboard focus, and
// a checkbox pauses the refresh. State is always spelled out in text (never
// only a colour); tables have captions and header cells.

const refreshMs = 2_000;

function esc(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}


function fmtMs(ms: number): string {
  if (ms < 1_000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 172_800_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

function pct(used: number, total: number): string {
  return total > 0 ? `${((100 * used) / total).toFixed(1)}%` : '-';
}

function browse(path: string, label = path): string {
  return `<a href="/status?path=${encodeURIComponent(path)}#namespace">${esc(label)}</a>`;
}

function table(id: string, caption: string, head: string[], rows: string[], empty: string): string {
  if (rows.length === 0) return `<p id="${id}-empty" class="empty">${esc(empty)}</p>`;
  return `<table id="${id}-table"><caption>${esc(caption)}</caption><thead><tr>${head.map((h) => `<th scope="col">${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function badge(ok: boolean, yes: string, no: string): string {
  return ok ? `<span class="ok">${esc(yes)}</span>` : `<span class="bad">${esc(no)}</span>`;
}

function summary(m: StatusModel): string {
  const s = m.summary;
  const item = (key: string, label: string, value: string, bad = false) => `<div><dt>${esc(label)}</dt><dd data-key="${key}"${bad ? ' class="bad"' : ''}>${value}</dd></div>`;
  return `<section id="summary" aria-labelledby="summary-h"><h2 id="summary-h">Cluster summary</h2><dl class="grid">
${item('role', 'Master', esc(`${m.master.role}, epoch ${m.master.epoch}${m.master.fencedByEpoch !== undefined ? `, FENCED by epoch ${m.master.fencedByEpoch}` : ''}`), m.master.fencedByEpoch !== undefined)}
${item('safeMode', 'Safe mode', m.master.safeMode ? 'ON (waiting for chunkserver reports)' : 'off', m.master.safeMode)}
${item('uptime', 'Up for', esc(fmtMs(m.master.uptimeMs)))}
${item('capacity', 'Capacity (live servers)', esc(fmtBytes(s.capacityBytes)))}
${item('used', 'Used', esc(`${fmtBytes(s.usedBytes)} (${pct(s.usedBytes, s.capacityBytes)})`))}
${item('free', 'Free', esc(fmtBytes(s.freeBytes)))}
${item('files', 'Files', String(s.files))}
${item('chunks', 'Chunks', String(s.chunks))}
${item('healthy', 'Healthy chunks', String(s.healthy))}
${item('underReplicated', 'Under-replicated chunks', String(s.underReplicated), s.underReplicated > 0)}
${item('missing', 'Missing chunks (no live replica)', String(s.missing), s.missing > 0)}
${item('corrupt', 'Corrupt chunks', String(s.corrupt), s.corrupt > 0)}
${item('overReplicated', 'Over-replicated chunks', String(s.overReplicated))}
${item('cloning', 'Being cloned', String(s.cloning))}
${item('rereplicationQueue', 'Re-replication queue', String(s.rereplicationQueue))}
${item('chunkserversAlive', 'Chunkservers alive', String(s.chunkserversAlive))}
${item('chunkserversDead', 'Chunkservers dead', String(s.chunkserversDead), s.chunkserversDead > 0)}
${item('leases', 'Current leases', String(s.leases))}
</dl></section>`;
}

function chunkservers(m: StatusModel): string {
  const rows = m.chunkservers.map(
    (c) =>
      `<tr data-id="${esc(c.id)}" data-state="${c.alive ? 'alive' : 'dead'}"><th scope="row">${esc(c.id)}</th><td>${esc(c.url)}</td><td>${esc(c.rack)}</td><td>${badge(c.alive, 'alive', 'DEAD')}</td><td>${esc(fmtMs(c.lastHeartbeatAgoMs))} ago</td><td class="num">${c.chunks}</td><td class="num">${esc(fmtBytes(c.usedBytes))}</td><td class="num">${esc(pct(c.capacityBytes - c.freeBytes, c.capacityBytes))} of ${esc(fmtBytes(c.capacityBytes))}</td><td class="num">${c.load}</td></tr>`,
  );
  return `<section id="chunkservers" aria-labelledby="chunkservers-h"><h2 id="chunkservers-h">Chunkservers</h2>${table('chunkservers', `${m.summary.chunkserversAlive} alive, ${m.summary.chunkserversDead} dead`, ['Id', 'Address', 'Rack', 'State', 'Last heartbeat', 'Chunks', 'Replica bytes', 'Disk use', 'Load (requests)'], rows, 'No chunkserver has registered yet.')}</section>`;
}

function attention(m: StatusModel): string {
  const a = m.attention;
  const more = (shown: number, total: number) => (total > shown ? `<p>${total - shown} more not shown.</p>` : '');
  const under = a.underReplicated.map((c) => `<tr data-handle="${esc(c.handle)}"><td><code>${esc(c.handle)}</code></td><td>${browse(c.path)}</td><td class="num">${c.live.length} of ${c.goal}</td><td>${esc(c.live.join(', '))}</td></tr>`);
  const missing = a.missing.map((c) => `<tr data-handle="${esc(c.handle)}"><td><code>${esc(c.handle)}</code></td><td>${browse(c.path)}</td><td class="num">${c.goal}</td></tr>`);
  const corrupt = a.corrupt.map((c) => `<tr data-handle="${esc(c.handle)}"><td><code>${esc(c.handle)}</code></td><td>${esc(c.servers.join(', '))}</td></tr>`);
  const cloning = a.cloning.map((c) => `<tr data-handle="${esc(c.handle)}"><td><code>${esc(c.handle)}</code></td><td>${esc(c.source)}</td><td>${esc(c.target)}</td></tr>`);
  return `<section id="attention" aria-labelledby="attention-h"><h2 id="attention-h">Chunks needing attention</h2>
<h3>Under-replicated (${a.counts.underReplicated})</h3>${table('under', 'Chunks with fewer live replicas than their goal', ['Handle', 'File', 'Live replicas', 'On'], under, 'None.')}${more(a.underReplicated.length, a.counts.underReplicated)}
<h3>Missing (${a.counts.missing})</h3>${table('missing', 'Chunks with no live replica', ['Handle', 'File', 'Goal'], missing, 'None.')}${more(a.missing.length, a.counts.missing)}
<h3>Corrupt (${a.counts.corrupt})</h3>${table('corrupt', 'Replicas reported corrupt', ['Handle', 'On'], corrupt, 'None.')}
<h3>Being cloned (${a.counts.cloning})</h3>${table('cloning', 'Clones under way', ['Handle', 'From', 'To'], cloning, 'None.')}
</section>`;
}

function leases(m: StatusModel): string {
  const rows = m.leases.map((l) => `<tr><td><code>${esc(l.handle)}</code></td><td>${esc(l.primary)}</td><td>${esc(l.secondaries.join(', ') || '-')}</td><td class="num">${l.version}</td><td>${esc(fmtMs(l.remainingMs))}</td></tr>`);
  return `<section id="leases" aria-labelledby="leases-h"><h2 id="leases-h">Current leases</h2>${table('leases', `${m.summary.leases} lease(s), ${fmtMs(m.master.leaseMs)} each; soonest to expire first`, ['Chunk', 'Primary', 'Secondaries', 'Version', 'Expires in'], rows, 'No chunk is leased right now.')}</section>`;
}

function oplog(m: StatusModel): string {
  const o = m.oplog;
  const replicas = o.logReplicas?.length
    ? table('logreplicas', 'Log replicas (shadow masters)', ['URL', 'State', 'Index', 'Last error'], o.logReplicas.map((r) => `<tr><td>${esc(r.url)}</td><td>${badge(r.synced, 'in sync', 'BEHIND')}</td><td class="num">${r.lastIndex}</td><td>${esc(r.lastError ?? '')}</td></tr>`), '')
    : '';
  return `<section id="oplog" aria-labelledby="oplog-h"><h2 id="oplog-h">Operation log</h2><dl class="grid">
<div><dt>Current log file</dt><dd data-key="logBytes">oplog.${o.logSeq}.log, ${esc(fmtBytes(o.logBytes))}</dd></div>
<div><dt>Log index</dt><dd>${m.master.appliedIndex}</dd></div>
<div><dt>Records / batches (this run)</dt><dd>${o.records} / ${o.batches}</dd></div>
<div><dt>fsyncs (this run)</dt><dd>${o.fsyncs}</dd></div>
<div><dt>Last checkpoint</dt><dd data-key="lastCheckpoint">${o.lastCheckpointAtMs ? `${esc(new Date(o.lastCheckpointAtMs).toISOString())} (before log ${o.lastCheckpointSeq})` : 'none yet'}</dd></div>
</dl>${replicas}</section>`;
}

function replicaList(c: ChunkRow): string {
  const parts = [...c.live.map((id) => esc(id)), ...c.dead.map((id) => `${esc(id)} (dead)`), ...c.corrupt.map((id) => `${esc(id)} (corrupt)`)];
  return parts.length ? parts.join(', ') : '<span class="bad">none</span>';
}

function chunkTable(e: EntryRow, caption: string): string {
  const rows = (e.chunks ?? []).map((c) => `<tr data-handle="${esc(c.handle)}"><td class="num">${c.index}</td><td><code>${esc(c.handle)}</code></td><td class="num">${c.version}</td><td class="num">${c.live.length < e.replication ? `<span class="bad">${c.live.length} of ${e.replication}</span>` : `${c.live.length} of ${e.replication}`}</td><td>${replicaList(c)}</td></tr>`);
  return table(`chunks-${e.path.replace(/[^A-Za-z0-9]/g, '_')}`, caption, ['#', 'Handle', 'Version', 'Live', 'Replicas'], rows, 'No chunks yet.');
}

function namespace(m: StatusModel): string {
  const n = m.namespace;
  const crumbs = ['<a href="/status?path=%2F#namespace">/</a>'];
  if (n.path !== '/') {
    const segs = n.path.split('/').filter(Boolean);
    segs.forEach((s, i) => crumbs.push(browse('/' + segs.slice(0, i + 1).join('/'), s)));
  }
  let body: string;
  if (n.type === 'missing') body = `<p class="bad">${esc(n.error ?? 'not found')}</p>`;
  else if (n.type === 'file') {
    const f = n.entries[0]!;
    body = `<p>File, ${esc(fmtBytes(f.sizeBytes))}, replication ${f.replication}, ${f.chunkCount} chunk(s), modified ${esc(new Date(f.mtimeMs).toISOString())}.</p>${chunkTable(f, `Chunks of ${f.path} and their replicas`)}${n.truncated ? `<p>Only the first ${f.chunks?.length} chunks are shown.</p>` : ''}`;
  } else if (n.type !== 'dir') {
    const e = n.entries[0]!;
    body = `<p>${e.type === 'symlink' ? 'Symbolic link' : 'Special file'} (${esc(e.type)}), modified ${esc(new Date(e.mtimeMs).toISOString())}.</p>`;
  } else {
    const rows = n.entries.map((e) => {
      const chunks = e.type === 'file' ? (e.chunks ?? []).map((c) => `<code>${esc(c.handle)}</code> v${c.version} on ${replicaList(c)}`).join('<br>') + (e.chunkCount > (e.chunks?.length ?? 0) ? `<br>${browse(e.path, `all ${e.chunkCount} chunks`)}` : '') : '';
      return `<tr data-path="${esc(e.path)}"><th scope="row">${browse(e.path, e.name + (e.type === 'dir' ? '/' : ''))}</th><td>${e.type === 'dir' ? 'directory' : esc(e.type)}</td><td class="num">${e.type === 'file' ? esc(fmtBytes(e.sizeBytes)) : ''}</td><td class="num">${e.type === 'file' ? e.replication : ''}</td><td>${esc(new Date(e.mtimeMs).toISOString())}</td><td class="chunks">${chunks}</td></tr>`;
    });
    body = table('entries', `Contents of ${n.path}`, ['Name', 'Type', 'Size', 'Replication', 'Modified', 'Chunks (handle, version, replicas)'], rows, 'Empty directory.') + (n.truncated ? `<p>Only the first ${n.entries.length} entries are shown.</p>` : '');
  }
  return `<section id="namespace" aria-labelledby="namespace-h"><h2 id="namespace-h">Namespace</h2><nav aria-label="Path"><p class="crumbs">${crumbs.join(' / ')}${n.parent !== undefined ? ` &nbsp; ${browse(n.parent, '(up)')}` : ''}</p></nav>${body}</section>`;
}

const css = `
:root{color-scheme:light dark;--bad:#b00020;--ok:#1b6e20;--line:#8884}
@media (prefers-color-scheme:dark){:root{--bad:#ff8a80;--ok:#81c784}}
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:80rem;padding:0 1rem 3rem}
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:baseline;justify-content:space-between;border-bottom:1px solid var(--line)}
h1{font-size:1.4rem;margin:.8rem 0}h2{font-size:1.15rem;margin:1.6rem 0 .4rem}h3{font-size:1rem;margin:1rem 0 .3rem}
nav.sections a{margin-right:.8rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0}caption{text-align:left;font-style:italic;padding:.2rem 0}
th,td{border-bottom:1px solid var(--line);padding:.25rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.chunks{font-size:.85em}
dl.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:.4rem 1.2rem;margin:0}
dl.grid div{border-left:3px solid var(--line);padding-left:.5rem}dt{font-size:.85em;opacity:.8}dd{margin:0;font-weight:600}
.bad{color:var(--bad);font-weight:700}.ok{color:var(--ok)}.empty{opacity:.8}
a:focus-visible,input:focus-visible{outline:3px solid Highlight;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:Canvas;padding:.3rem}
`;

// Re-fetches this very URL and replaces each section whose HTML changed, unless it holds focus.
const script = `
(function(){
  var box=document.getElementById('auto'),st=document.getElementById('updated'),timer;
  function tick(){
    fetch(location.pathname+location.search,{headers:{accept:'text/html'},cache:'no-store',credentials:'same-origin'}).then(function(r){
      if(!r.ok)throw new Error('HTTP '+r.status);return r.text();
    }).then(function(html){
      var doc=new DOMParser().parseFromString(html,'text/html');
      document.querySelectorAll('main > section[id]').forEach(function(old){
        var fresh=doc.getElementById(old.id);
        if(!fresh||fresh.innerHTML===old.innerHTML)return;
        if(old.contains(document.activeElement))return;
        old.innerHTML=fresh.innerHTML;
      });
      var g=doc.getElementById('generated');if(g)document.getElementById('generated').textContent=g.textContent;
      st.textContent='';
    }).catch(function(e){st.textContent='Could not reach the master ('+e.message+'); retrying.';})
    .then(function(){if(box.checked)timer=setTimeout(tick,${refreshMs});});
  }
  box.addEventListener('change',function(){clearTimeout(timer);if(box.checked)tick();});
  if(box.checked)timer=setTimeout(tick,${refreshMs});
})();`;

export function renderStatusPage(m: StatusModel): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>gfs master ${esc(m.master.url)}</title><style>${css}</style></head>
<body><a class="skip" href="#main">Skip to content</a>
<header><h1>gfs master <small>${esc(m.master.url)}</small></h1>
<p><label><input type="checkbox" id="auto" checked> refresh every ${refreshMs / 1000} s</label> · <span id="generated">as of ${esc(new Date(m.generatedAtMs).toISOString())}</span> <span id="updated" role="status" aria-live="polite"></span></p></header>
<nav class="sections" aria-label="Sections"><a href="#summary">Summary</a><a href="#chunkservers">Chunkservers</a><a href="#attention">Attention</a><a href="#leases">Leases</a><a href="#oplog">Operation log</a><a href="#namespace">Namespace</a><a href="/status/data${m.namespace.path !== '/' ? `?path=${encodeURIComponent(m.namespace.path)}` : ''}">JSON</a><a href="/metrics">Metrics</a></nav>
<main id="main">
${summary(m)}
${chunkservers(m)}
${attention(m)}
${leases(m)}
${oplog(m)}
${namespace(m)}
</main>
<script>${script}</script>
</body></html>`;
}
