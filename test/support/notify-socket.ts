/**
 * A stand-in for systemd's notify socket: a python3 child bound to a unix
 * datagram socket at `path`, reporting every datagram it receives, in order.
 * A separate process, so a test that blocks or stresses Node still has an
 * honest receiver; python3 because Node has no unix datagram sockets.
 */
import { type ChildProcess, spawn } from 'node:child_process';

export interface NotifySocket {
  /** Every datagram received so far, in arrival order (newlines kept). */
  readonly messages: string[];
  /** The next datagram not yet taken by next(), waiting for it if needed. */
  next(): Promise<string>;
  /** Kills the receiver. Safe twice. */
  close(): void;
}

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('"bound"', flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;

/** Binds the socket; resolves once datagrams sent to `path` will be received. */
export async function startNotifySocket(path: string): Promise<NotifySocket> {
  const child: ChildProcess = spawn('python3', ['-c', RECEIVER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: string[] = [];
  let taken = 0;
  const waiting: Array<() => void> = [];
  let pending = '';
  let bound: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    bound = resolve;
  });
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`the notify socket receiver exited (${code})`))),
  );
  exited.catch(() => {});
  child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n')) {
      const line = JSON.parse(pending.slice(0, end)) as string;
      pending = pending.slice(end + 1);
      if (line === 'bound') bound();
      else {
        messages.push(line);
        for (const wake of waiting.splice(0)) wake();
      }
    }
  });
  await Promise.race([ready, exited]);
  return {
    messages,
    async next() {
      while (taken >= messages.length) await new Promise<void>((resolve) => waiting.push(resolve));
      return messages[taken++]!;
    },
    close() {
      child.kill('SIGKILL');
    },
  };
}
