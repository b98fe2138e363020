import { createServer } from 'node:net';

/**
 * A port free right now on 127.0.0.1, for daemons that must know each other's address before
 * they start (a master and its log replicas). Used by the bench, the partition suite and the tests.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}
