import type { Network } from './run.js';

export function netnsUnavailable(): string | undefined {
  return 'not implemented yet';
}

export async function runInNetns(_argv: string[], _o: { chunkservers: number; workers: number; log: (l: string) => void }): Promise<number> {
  return 0;
}

export function innerNetwork(_json: string): Network {
  throw new Error('not implemented');
}
