// The development default: mqtt.url 'embedded' runs an in-process broker
// that stock clients can watch over TCP or WebSocket (MQTT 3.1.1), and the
// agent talks to it like to any broker.
import { connectAsync, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { type AgentHarness, loadSimConfig, startAgent, streamJson } from '../support/agent-env.js';
import { waitFor } from '../support/media-env.js';
import { freePort } from '../support/mosquitto.js';

let agent: AgentHarness | null = null;
const clients: MqttClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.endAsync();
  await agent?.controller.stopGracefully();
  agent = null;
});

describe('the embedded development broker', () => {
  it('serves the agent to clients over TCP and WebSocket, and answers commands on the fallback topic', async () => {
    const port = await freePort();
    const wsPort = await freePort();
    agent = startAgent(
      loadSimConfig([streamJson()], {
        deviceId: 'dev-box',
        mqtt: {
          enabled: true,
          url: 'embedded',
          embedded: { port, wsPort },
          reconnect: { baseMs: 100, capMs: 1000, stableMs: 1000 },
        },
      }),
    );
    const watch = async (
      url: string,
    ): Promise<{ c: MqttClient; seen: Array<{ topic: string; json: Record<string, unknown> }> }> => {
      // The broker starts beside the agent: retry until it listens (a liveness bound, not a timing).
      let c: MqttClient | null = null;
      const deadline = Date.now() + 15_000;
      while (!c) {
        c = await connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0 }).catch(() => null);
        if (!c && Date.now() > deadline) throw new Error(`no connection to ${url}`);
        if (!c) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      clients.push(c);
      const seen: Array<{ topic: string; json: Record<string, unknown> }> = [];
      c.on('message', (topic, payload) => {
        if (!topic.includes('/cmd/')) seen.push({ topic, json: JSON.parse(payload.toString()) });
      });
      await c.subscribeAsync('stb/dev-box/#', { qos: 1 });
      return { c, seen };
    };
    const tcp = await watch(`mqtt://127.0.0.1:${port}`);
    const ws = await watch(`ws://127.0.0.1:${wsPort}`);
    for (const { seen } of [tcp, ws]) {
      await waitFor(
        () => seen.find((m) => m.topic === 'stb/dev-box/status' && m.json.state === 'online'),
        15_000,
        'the online status',
      );
    }
    await tcp.c.publishAsync('stb/dev-box/cmd/streams', JSON.stringify({ id: 'e1' }), { qos: 1 });
    const answer = await waitFor(
      () => tcp.seen.find((m) => m.topic === 'stb/dev-box/response/streams'),
      15_000,
      'the answer on response/streams',
    );
    expect(answer.json).toMatchObject({ id: 'e1', status: 'ok', data: [{ stream: 'main' }] });
  });
});
