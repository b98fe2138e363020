import { request } from 'undici';
import { webToken } from '../../shared/webauth.js';

// Reading a daemon's /metrics the way Prometheus does: with the web token as a bearer credential.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (enough of it for our own output: no escapes in label values). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

export class Scrape {
  constructor(readonly samples: Sample[]) {}

  /** Sum of every series of `name` whose labels include `where`. */
  sum(name: string, where: Record<string, string> = {}): number {
    return this.series(name, where).reduce((a, s) => a + s.value, 0);
  }

  series(name: string, where: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v));
  }

  has(name: string): boolean {
    return this.samples.some((s) => s.name === name);
  }
}

export async function scrape(baseUrl: string, token = webToken()): Promise<Scrape> {
  const res = await request(`${baseUrl}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {}, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET ${baseUrl}/metrics: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
  if (!String(res.headers['content-type']).startsWith('text/plain')) throw new Error(`GET ${baseUrl}/metrics: content-type ${res.headers['content-type']}`);
  return new Scrape(parseMetrics(text));
}
