/**
 * A development convenience only: with `mqtt.url` set to `embedded`, the
 * agent runs an in-process MQTT 3.1.1 broker (aedes) on 127.0.0.1, with a
 * WebSocket listener beside the TCP one, so `npm start` needs nothing
 * installed and any stock client (mosquitto_sub, MQTT Explorer, a browser)
 * can watch it. A receiver in the field talks to the fleet's broker.
 */

import { existsSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createRequire } from 'node:module';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { staticFiles } from './static-files.js';

export interface EmbeddedBroker {
  /** mqtt://127.0.0.1:<port> */
  readonly url: string;
  /** ws://127.0.0.1:<wsPort> */
  readonly wsUrl: string;
  /** http://127.0.0.1:<wsPort>/ when the fleet dashboard is served there, else null. */
  readonly dashboardUrl: string | null;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';

function listen(server: Server | HttpServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

function closeServer(server: Server | HttpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** No Origin (a program, not a browser), or a page served by this very listener. */
function isLocalPage(origin: string | undefined, server: HttpServer): boolean {
  if (origin === undefined || origin === '') return true;
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : -1;
  try {
    const url = new URL(origin);
    return (url.hostname === HOST || url.hostname === 'localhost') && Number(url.port) === port;
  } catch {
    return false;
  }
}

/**
 * The built fleet dashboard (`npm run build:dashboard`: deploy/dashboard/dist/),
 * from dist/agent/mqtt/ or from the sources, or null when it is not built.
 */
export function dashboardDirectory(): string | null {
  for (const relative of ['../../../deploy/dashboard/dist/', '../../deploy/dashboard/dist/']) {
    const path = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(`${path}index.html`) && existsSync(`${path}app.js`)) return path;
  }
  return null;
}

/**
 * Starts the broker; rejects (naming the port) when a port is taken. With
 * `dashboard`, the WebSocket port also serves that directory over HTTP: the
 * page and its MQTT connection share one origin.
 */
export async function startEmbeddedBroker(options: {
  port: number;
  wsPort: number;
  dashboard?: string | null;
}): Promise<EmbeddedBroker> {
  // aedes 0.51 (the last line that runs on Node 18) is CommonJS without ESM named exports;
  // loaded only here, so a receiver that never runs it never loads it.
  const { createBroker } = createRequire(import.meta.url)('aedes') as typeof import('aedes');
  const aedes = createBroker();
  const tcp = createServer((socket) => aedes.handle(socket));
  const dashboard = options.dashboard ?? null;
  const http = createHttpServer(dashboard === null ? undefined : staticFiles(dashboard));
  // A web page the developer has open elsewhere could otherwise command the agent through the
  // browser: only clients that send no Origin (not browsers) and pages served here are let in.
  const ws = new WebSocketServer({
    server: http,
    verifyClient: (info: { origin: string }) => isLocalPage(info.origin, http),
  });
  ws.on('connection', (socket, request) => aedes.handle(createWebSocketStream(socket), request));
  let port: number;
  let wsPort: number;
  try {
    port = await listen(tcp, options.port);
    wsPort = await listen(http, options.wsPort);
  } catch (err) {
    await Promise.all([closeServer(tcp), closeServer(http)]);
    aedes.close();
    const detail = err instanceof Error ? err.message : String(err);
    throw new Error(`the embedded MQTT broker cannot listen on ${HOST}:${options.port}/${options.wsPort}: ${detail}`);
  }
  return {
    url: `mqtt://${HOST}:${port}`,
    wsUrl: `ws://${HOST}:${wsPort}`,
    dashboardUrl: dashboard === null ? null : `http://${HOST}:${wsPort}/`,
    async close() {
      for (const client of ws.clients) client.terminate();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await Promise.all([
        closeServer(tcp),
        new Promise<void>((resolve) => ws.close(() => resolve())),
        closeServer(http),
      ]);
    },
  };
}
