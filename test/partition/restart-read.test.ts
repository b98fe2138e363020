import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { GfsError } from '../../shared/errors.js';
import { closeRpc, rpcJson } from '../../shared/rpc.js';
import type { FileInfo } from '../../shared/wire.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';

// Found by the partition suite: right after a master SIGKILL + restart, before
// the chunkservers had reported, the master counted a file's written last chunk
// as empty, so a client read of acknowledged data came back short (0 bytes)
// instead of waiting for the reports. Reads during safe mode must return the
// acknowledged bytes.

describe('reads across a master restart', { timeout: 60_000 }, () => {
  let cluster: TestCluster | undefined;
  after(async () => {
    await cluster?.stop();
    await closeRpc();
  });

  it('a read right after a master SIGKILL + restart returns every acknowledged byte, never a short read', async () => {
    cluster = await startCluster({ chunkservers: 3, chunkSizeBytes: 256 * 1024, leaseMs: 2_000, heartbeatMs: 1_500, deadMs: 6_000, safeModeMs: 5_000 });
    const client = cluster.client();
    const data = randomBytes(300 * 1024); // a full chunk and part of a second: the last chunk is written
    await client.create('/rr');
    await client.write('/rr', 0, data);
    await cluster.restartMaster();
    // Until the chunkservers report, the master must say it does not know yet (SAFE_MODE, which clients wait out), never a shorter length.
    const answers: string[] = [];
    const until = Date.now() + 3_000;
    while (Date.now() < until) {
      try {
        const st = await rpcJson<FileInfo>(cluster.masterUrl, '/api/stat', undefined, { query: { path: '/rr' } });
        answers.push(String(st.sizeBytes));
        assert.equal(st.sizeBytes, data.length, `the restarted master reported ${st.sizeBytes} bytes for a file of ${data.length}`);
        break;
      } catch (e) {
        if (!(e instanceof GfsError) || e.code !== 'SAFE_MODE') throw e;
        answers.push(e.code);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log(`# stat after the restart: ${answers.join(' ')}`);
    const got = await client.read('/rr', 0, data.length);
    assert.equal(got.length, data.length, `short read after the master restart: ${got.length} of ${data.length} bytes`);
    assert.ok(got.equals(data));
  });
});
