// Fault layer: the one place where faults between nodes are injected.
//
// Every inter-node request (client -> master, client -> chunkserver,
// master -> chunkserver, chunkserver -> chunkserver, chunkserver -> master)
// goes through shared/rpc.ts, which consults this table before sending, and
// every server consults it on arrival using the sender's name from the
// `x-gfs-from` header. A rule therefore takes effect whichever side holds it.
//
// A rule names a sender and a receiver (node names such as "master", a
// chunkserver id, or "*" for any) and either drops the traffic or delays it:
//   { from: "cs-a", to: "master", drop: true }      // cs-a cannot reach the master
//   { from: "*", to: "cs-b", delayMs: 200 }         // everything to cs-b is slow
// A partition both ways is two rules. Rules are replaced as a whole, at run
// time, with POST /admin/faults {rules: [...]} on a live process, or at start
// from the GFS_FAULTS environment variable (a JSON array). A dropped request
// fails like a lost connection: the sender sees UNAVAILABLE, the receiver
// destroys the socket without answering. A JSON request delayed by its
// sender longer than its timeout times out there but still goes out late
// (shared/rpc.ts), as over a slow link.
//
// With no rules (production) each check is one array-length test.
import { z } from 'zod';

export const faultRuleSchema = z.object({
  from: z.string().min(1).max(200),
  to: z.string().min(1).max(200),
  drop: z.boolean().optional(),
  delayMs: z.number().int().min(0).max(600_000).optional(),
});
export type FaultRule = z.infer<typeof faultRuleSchema>;
export const faultRulesSchema = z.object({ rules: z.array(faultRuleSchema.strict()).max(1000) }).strict();

let rules: FaultRule[] = [];

export function setFaultRules(next: FaultRule[]): void {
  rules = next.slice();
}

export function getFaultRules(): FaultRule[] {
  return rules.slice();
}

export interface FaultVerdict {
  drop: boolean;
  delayMs: number;
}

const none: FaultVerdict = { drop: false, delayMs: 0 };

/** What happens to traffic from `from` to any of the names `to` is known by. */
export function faultFor(from: string, to: readonly string[]): FaultVerdict {
  if (rules.length === 0) return none;
  let drop = false;
  let delayMs = 0;
  for (const r of rules) {
    if (r.from !== '*' && r.from !== from) continue;
    if (r.to !== '*' && !to.includes(r.to)) continue;
    if (r.drop) drop = true;
    if (r.delayMs && r.delayMs > delayMs) delayMs = r.delayMs;
  }
  return drop || delayMs ? { drop, delayMs } : none;
}

export function loadFaultsFromEnv(): void {
  const raw = process.env.GFS_FAULTS;
  if (!raw) return;
  setFaultRules(z.array(faultRuleSchema).parse(JSON.parse(raw)));
}
