/**
 * A TCP relay between an MQTT client and its broker, so a test decides when
 * the client can reach the broker (`refuse`), cuts its connection (`cut`), or
 * swallows what either side sends while the client still believes it is
 * connected (`swallow`). The broker itself keeps running behind it, so other
 * clients can queue messages for an agent that cannot get through.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class TcpGate {
  refuse = false;
  swallow = false;
  connections = 0;
  private readonly pairs = new Set<[Socket, Socket]>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** mqtt://127.0.0.1:<the gate's port> */
  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** A gate on a free loopback port in front of 127.0.0.1:<targetPort>. The caller closes it. */
  static async start(targetPort: number): Promise<TcpGate> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('gate has no port');
    const gate = new TcpGate(server, address.port);
    server.on('connection', (client) => gate.relay(client, targetPort));
    return gate;
  }

  /** Drops every relayed connection at once, both ways. */
  cut(): void {
    for (const [client, upstream] of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private relay(client: Socket, targetPort: number): void {
    this.connections += 1;
    if (this.refuse) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('data', (chunk) => {
      if (!this.swallow) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!this.swallow) client.write(chunk);
    });
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }
}
