import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

// A misbehaving local process for admission tests (test/integration/admission.test.ts), run as a
// child so the test can kill it whatever happens. Its sockets leave from --from (e.g. 127.0.0.2),
// so the daemon sees it as a separate address from the well-behaved test process.
//
//   --mode flood   keeps --count connections open, each with half a request line and no
//                  credentials; a connection the server closes is reopened after a short pause.
//                  Prints `opened N` once N connection attempts were made.
//   --mode unauth  sends --count complete requests without credentials, one connection each,
//                  one after another; prints one line per answer: its HTTP status or `closed`.

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    from: { type: 'string', default: '127.0.0.2' },
    count: { type: 'string', default: '300' },
    mode: { type: 'string', default: 'flood' },
  },
});
const port = Number(values.port);
const count = Number(values.count);
if (!(port > 0) || !(count > 0)) throw new Error('conn-flood: --port and --count are required');

function flood(): void {
  let attempts = 0;
  const open = (): void => {
    attempts++;
    if (attempts === count) process.stdout.write(`opened ${count}\n`);
    const s: Socket = connect({ port, host: values.host, localAddress: values.from });
    s.on('connect', () => s.write('GET /api/status HT'));
    s.on('error', () => undefined);
    // Bounded churn: one reopen per closed socket, after a pause.
    s.on('close', () => setTimeout(open, 100));
  };
  for (let i = 0; i < count; i++) open();
}

function oneUnauthenticated(): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ port, host: values.host, localAddress: values.from });
    let text = '';
    const done = () => {
      s.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve(m ? m[1]! : 'closed');
    };
    s.setTimeout(5_000, done);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('error', done);
    s.on('close', done);
    s.write(`GET /api/status HTTP/1.1\r\nhost: ${values.host}:${port}\r\nx-gfs-from: intruder\r\nconnection: close\r\n\r\n`);
  });
}

async function unauth(): Promise<void> {
  for (let i = 0; i < count; i++) process.stdout.write(`${await oneUnauthenticated()}\n`);
}

if (values.mode === 'flood') flood();
else await unauth();
