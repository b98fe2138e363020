import { AsyncLocalStorage } from 'node:async_hooks';
import { pino, type DestinationStream, type Logger } from 'pino';
import { prettyStream } from './log-format.js';

// Structured logs: one JSON object per line on stderr. Every line carries the
// node id (`node`); a line written while a client call is served carries its
// request id (`rid`, from x-gfs-request-id, set by shared/http.ts); lines about
// a chunk carry its `handle` (callers pass it). On a terminal the lines are
// printed human-readable instead (shared/log-format.ts); GFS_LOG_FORMAT=json
// or =pretty overrides that. GFS_LOG_LEVEL selects the level (default info;
// tests set warn).

/**
 * The client call being served: its request id, and how many mutations it has logged so far (the
 * master's retry cache, master/master.ts). Only set for requests that carry an id: an
 * AsyncLocalStorage costs something on every promise it follows, so the data path does without.
 */
export const requestContext = new AsyncLocalStorage<{ rid: string; mutations: number }>();

export type LogFormat = 'json' | 'pretty';

export function logFormat(isTty = process.stderr.isTTY === true): LogFormat {
  const f = process.env.GFS_LOG_FORMAT;
  if (f === 'json' || f === 'pretty') return f;
  if (f) throw new Error(`GFS_LOG_FORMAT must be json or pretty, got ${f}`);
  return isTty ? 'pretty' : 'json';
}

export function makeLogger(node: string, o: { format?: LogFormat; destination?: DestinationStream } = {}): Logger {
  const format = o.format ?? logFormat();
  const destination = o.destination ?? (format === 'pretty' ? prettyStream(process.stderr, process.stderr.isTTY === true) : pino.destination({ fd: 2, sync: false }));
  return pino(
    {
      name: 'gfs',
      level: process.env.GFS_LOG_LEVEL ?? 'info',
      base: { node },
      // Fields the call passes win over these (pino's default merge order).
      mixin() {
        const ctx = requestContext.getStore();
        return ctx ? { rid: ctx.rid } : {};
      },
    },
    destination,
  );
}

export type { Logger };
