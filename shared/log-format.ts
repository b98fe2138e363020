// Human-readable log lines for a terminal: the JSON line pino writes becomes
//   12:04:05.120 WARN  cs1 [rid=abc] [handle=00000000000000a1] clone failed  source=cs2 err="..."
// Anything that is not a JSON object is printed as it came. No dependency
// (pino-pretty is not needed for this much).

const levels: Record<number, { name: string; color: string }> = {
  10: { name: 'TRACE', color: '90' },
  20: { name: 'DEBUG', color: '36' },
  30: { name: 'INFO ', color: '32' },
  40: { name: 'WARN ', color: '33' },
  50: { name: 'ERROR', color: '31' },
  60: { name: 'FATAL', color: '35' },
};

/** Fields printed in the line's head, or not at all. */
const headFields = new Set(['level', 'time', 'pid', 'hostname', 'name', 'node', 'msg', 'rid', 'handle']);

function clock(t: unknown): string {
  const d = typeof t === 'number' ? new Date(t) : new Date();
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function value(v: unknown): string {
  if (typeof v === 'string') return /^[\w./:@+-]*$/.test(v) && v !== '' ? v : JSON.stringify(v);
  if (v && typeof v === 'object' && 'message' in v && typeof (v as { message: unknown }).message === 'string') {
    const e = v as { message: string; stack?: string };
    return JSON.stringify(e.message);
  }
  return JSON.stringify(v);
}

export function formatLine(line: string, color = false): string {
  let o: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return line;
    o = parsed as Record<string, unknown>;
  } catch {
    return line;
  }
  const lv = levels[o.level as number] ?? { name: String(o.level ?? '?').toUpperCase().padEnd(5), color: '0' };
  const parts = [clock(o.time), color ? `\x1b[${lv.color}m${lv.name}\x1b[0m` : lv.name];
  if (o.node !== undefined) parts.push(String(o.node));
  if (o.rid !== undefined) parts.push(`[rid=${String(o.rid)}]`);
  if (o.handle !== undefined) parts.push(`[handle=${String(o.handle)}]`);
  if (o.msg !== undefined) parts.push(String(o.msg));
  const rest = Object.entries(o)
    .filter(([k]) => !headFields.has(k))
    .map(([k, v]) => `${k}=${value(v)}`);
  let out = parts.join(' ');
  if (rest.length) out += '  ' + rest.join(' ');
  const err = o.err as { stack?: unknown } | undefined;
  if (err && typeof err === 'object' && typeof err.stack === 'string' && (o.level as number) >= 50) out += '\n' + err.stack;
  return out;
}

/** A pino destination that writes formatted lines to `out` (synchronously on a terminal). */
export function prettyStream(out: NodeJS.WritableStream, color: boolean): { write(chunk: string): void } {
  let pending = '';
  return {
    write(chunk: string) {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        out.write(formatLine(line, color) + '\n');
      }
    },
  };
}
