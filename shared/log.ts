import { pino, type Logger } from 'pino';

// Structured logs: one JSON object per line on stderr, carrying the node id.
// GFS_LOG_LEVEL selects the level (default info; tests set warn).
export function makeLogger(node: string): Logger {
  return pino(
    { name: 'gfs', level: process.env.GFS_LOG_LEVEL ?? 'info', base: { node } },
    pino.destination({ fd: 2, sync: false }),
  );
}

export type { Logger };
