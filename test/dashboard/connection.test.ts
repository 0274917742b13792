// The page's connection code (deploy/dashboard/src/connection.ts) run under
// Node against real brokers over WebSocket: MQTT 5 to mosquitto, 3.1.1 to the
// development broker (which also serves the page), an unreachable broker
// reported as such, and a broker restart healed with subscriptions restored.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startEmbeddedBroker } from '../../agent/mqtt/embedded-broker.js';
import { BrokerConnection, type ConnectionState } from '../../deploy/dashboard/src/connection.js';
import { waitFor } from '../support/media-env.js';
import { freePort, startMosquitto } from '../support/mosquitto.js';

const LIVENESS_MS = 20_000;
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function watch(url: string) {
  const messages: Array<{ topic: string; text: string }> = [];
  const states: ConnectionState[] = [];
  const connection = new BrokerConnection(
    { url, reconnectMs: 200, connectTimeoutMs: 5000 },
    (topic, payload) => messages.push({ topic, text: new TextDecoder().decode(payload) }),
    (state) => states.push(state),
  );
  cleanups.push(() => connection.close());
  return { connection, messages, states };
}

function get(url: string, method = 'GET'): Promise<{ status: number; body: string; type: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: res.headers['content-type'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the dashboard connection', () => {
  it('speaks MQTT 5 to mosquitto, and heals a broker restart with its subscriptions', async () => {
    const broker = await startMosquitto({ websockets: true });
    cleanups.push(() => broker.stop());
    const { connection, messages, states } = watch(`${broker.listeners[1]!.url}/mqtt`);
    await connection.subscribe('stb/+/status', 0);
    connection.start();
    await waitFor(() => connection.state.phase === 'connected' || null, LIVENESS_MS, 'connected');
    expect(connection.protocolVersion).toBe(5);

    const box = await connectAsync(broker.url, { protocolVersion: 5 });
    cleanups.push(() => box.endAsync(true));
    await box.publishAsync('stb/a/status', '{"state":"online"}', { qos: 1 });
    await waitFor(() => messages.find((m) => m.topic === 'stb/a/status'), LIVENESS_MS, 'the first status');

    await broker.restart(async () => {
      await waitFor(() => connection.state.phase === 'unreachable' || null, LIVENESS_MS, 'unreachable');
    });
    expect(states.some((s) => s.phase === 'unreachable' && s.lastError === 'the connection was lost')).toBe(true);
    await waitFor(() => connection.state.phase === 'connected' || null, LIVENESS_MS, 'connected again');
    // Subscribed again on its own: a status published after the restart arrives.
    const again = await connectAsync(broker.url, { protocolVersion: 5 });
    cleanups.push(() => again.endAsync(true));
    await again.publishAsync('stb/b/status', '{"state":"online"}', { qos: 1 });
    await waitFor(() => messages.find((m) => m.topic === 'stb/b/status'), LIVENESS_MS, 'the status after the restart');
  });

  it('falls back to MQTT 3.1.1 with the development broker, which serves the page on the same port', async () => {
    const site = mkdtempSync(join(tmpdir(), 'dmx-dashboard-site-'));
    cleanups.push(() => rmSync(site, { recursive: true, force: true }));
    writeFileSync(join(site, 'index.html'), '<!doctype html><title>fleet</title>');
    writeFileSync(join(site, 'app.js'), 'export {};');
    writeFileSync(join(tmpdir(), 'dmx-dashboard-outside.txt'), 'outside');
    cleanups.push(() => rmSync(join(tmpdir(), 'dmx-dashboard-outside.txt'), { force: true }));
    const broker = await startEmbeddedBroker({ port: await freePort(), wsPort: await freePort(), dashboard: site });
    cleanups.push(() => broker.close());
    const http = broker.dashboardUrl!;
    expect(http).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);

    expect(await get(http)).toMatchObject({
      status: 200,
      body: '<!doctype html><title>fleet</title>',
      type: 'text/html; charset=utf-8',
    });
    expect(await get(`${http}app.js`)).toMatchObject({ status: 200, type: 'text/javascript; charset=utf-8' });
    expect((await get(`${http}app.js`, 'HEAD')).body).toBe('');
    expect((await get(`${http}app.js`, 'POST')).status).toBe(405);
    expect((await get(`${http}nothing.js`)).status).toBe(404);
    // Nothing outside the directory, however the path is spelt.
    for (const path of [
      '../dmx-dashboard-outside.txt',
      '%2e%2e/dmx-dashboard-outside.txt',
      '..%2fdmx-dashboard-outside.txt',
    ]) {
      expect((await get(`${http}${path}`)).status).toBe(404);
    }
    expect((await get(`${http}%zz`)).status).toBe(400);

    // A page from another origin (any site the developer has open) is refused; the dashboard's own origin is not.
    const handshake = (origin: string) =>
      new Promise<number>((resolve) => {
        const socket = new WebSocket(`${broker.wsUrl}/mqtt`, 'mqtt', { origin });
        socket.on('open', () => {
          socket.close();
          resolve(101);
        });
        socket.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        socket.on('error', () => {});
      });
    expect(await handshake('http://evil.example')).toBe(401);
    expect(await handshake(http.replace(/\/$/, ''))).toBe(101);

    const { connection, messages } = watch(`${broker.wsUrl}/mqtt`);
    await connection.subscribe('stb/+/telemetry', 0);
    connection.start();
    await waitFor(() => connection.state.phase === 'connected' || null, LIVENESS_MS, 'connected');
    expect(connection.protocolVersion).toBe(4);
    const box = await connectAsync(broker.url, { protocolVersion: 4 });
    cleanups.push(() => box.endAsync(true));
    await box.publishAsync('stb/a/telemetry', '{}', { qos: 0 });
    await waitFor(() => messages.find((m) => m.topic === 'stb/a/telemetry'), LIVENESS_MS, 'telemetry over 3.1.1');
  });

  it('reports a broker nobody answers for as unreachable, counting attempts, and refuses to publish', async () => {
    const port = await freePort();
    const { connection, states } = watch(`ws://127.0.0.1:${port}/mqtt`);
    connection.start();
    await waitFor(() => (connection.state.failures >= 2 ? true : null), LIVENESS_MS, 'two failed attempts');
    expect(connection.state).toMatchObject({
      phase: 'unreachable',
      url: `ws://127.0.0.1:${port}/mqtt`,
      protocolVersion: null,
    });
    expect(states.some((s) => s.phase === 'connected')).toBe(false);
    await expect(connection.publish('stb/a/cmd/status', '{}', {})).rejects.toThrow(
      `not connected to the broker at ws://127.0.0.1:${port}/mqtt`,
    );
  });
});
