// The agent on the simulated receiver connected to a real mosquitto: the
// retained status and capabilities, telemetry and events that match the
// contract's schemas, a diagnosed EINVAL delivered as an errno event, and
// commands answered (MQTT 5 response topic with correlation data, or the
// fallback topic), refusals included.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, type IPublishPacket, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../agent/config/load.js';
import { MqttLink } from '../../agent/mqtt/link.js';
import { compilePayloadValidators, describeValidationErrors } from '../../agent/mqtt/payloads.js';
import { type AgentHarness, loadSimConfig, simConfigJson, startAgent, streamJson } from '../support/agent-env.js';
import { waitFor } from '../support/media-env.js';
import { type Broker, startMosquitto } from '../support/mosquitto.js';
import { TcpGate } from '../support/tcp-gate.js';

const validators = compilePayloadValidators();
const LIVENESS_MS = 15_000;

let broker: Broker;
beforeAll(async () => {
  broker = await startMosquitto();
});
afterAll(async () => {
  await broker?.stop();
});

interface Received {
  topic: string;
  json: Record<string, unknown>;
  packet: IPublishPacket;
}

let agent: AgentHarness | null = null;
let client: MqttClient | null = null;
afterEach(async () => {
  agent?.controller.stop();
  agent = null;
  await client?.endAsync();
  client = null;
});

let devices = 0;
async function start(
  streamOverrides: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Promise<{ deviceId: string; base: string; messages: Received[]; client: MqttClient }> {
  devices += 1;
  const deviceId = `stb-${process.pid}-${devices}`;
  const base = `stb/${deviceId}`;
  // The fleet's view first: subscribe before the agent is born, so nothing is missed.
  client = await connectAsync(broker.url, { protocolVersion: 5, clientId: `dashboard-${deviceId}` });
  const messages: Received[] = [];
  client.on('message', (topic, payload, packet) => {
    // The dashboard also hears its own commands (some deliberately not JSON): only the agent's output counts.
    if (topic.startsWith(`${base}/cmd/`)) return;
    messages.push({ topic, json: JSON.parse(payload.toString()) as Record<string, unknown>, packet });
  });
  await client.subscribeAsync(`${base}/#`, { qos: 1 });
  const config = loadSimConfig([streamJson(streamOverrides)], {
    deviceId,
    mqtt: {
      enabled: true,
      url: broker.url,
      telemetryIntervalMs: 1000,
      reconnect: { baseMs: 100, capMs: 1000, stableMs: 1000 },
    },
    ...extra,
  });
  agent = startAgent(config);
  return { deviceId, base, messages, client };
}

function find(messages: Received[], topic: string, where: (json: Record<string, unknown>) => boolean = () => true) {
  return messages.find((m) => m.topic === topic && where(m.json));
}

function valid(name: keyof typeof validators, json: unknown): void {
  const validate = validators[name];
  expect(validate(json), describeValidationErrors(validate.errors)).toBe(true);
}

async function command(
  c: MqttClient,
  base: string,
  name: string,
  body: unknown,
  messages: Received[],
): Promise<Record<string, unknown>> {
  const responseTopic = `${base}/response/${name}`;
  const id = (body as { id?: string }).id;
  await c.publishAsync(`${base}/cmd/${name}`, typeof body === 'string' ? body : JSON.stringify(body), { qos: 1 });
  const answer = await waitFor(
    () => messages.find((m) => m.topic === responseTopic && (id === undefined || m.json.id === id)),
    LIVENESS_MS,
    `the answer to ${name}`,
  );
  messages.splice(messages.indexOf(answer), 1);
  valid('response', answer.json);
  return answer.json;
}

describe('the agent on MQTT', () => {
  it('is born with a retained status and capabilities, then sends telemetry and stream-state events', async () => {
    const { base, messages } = await start();
    const status = await waitFor(() => find(messages, `${base}/status`), LIVENESS_MS, 'the online status');
    expect(status.json).toMatchObject({ state: 'online' });
    valid('status', status.json);
    const capabilities = await waitFor(() => find(messages, `${base}/capabilities`), LIVENESS_MS, 'capabilities');
    valid('capabilities', capabilities.json);
    expect(capabilities.json).toMatchObject({ backend: 'sim', mediaPathUsable: true });
    await waitFor(
      () => find(messages, `${base}/events/stream-state`, (j) => j.to === 'streaming'),
      LIVENESS_MS,
      'the streaming event',
    );
    const telemetry = await waitFor(
      () =>
        find(messages, `${base}/telemetry`, (j) => {
          const s = (j.streams as Record<string, { bps?: number }> | undefined)?.main;
          return (s?.bps ?? 0) > 0;
        }),
      LIVENESS_MS,
      'telemetry with traffic',
    );
    valid('telemetry', telemetry.json);
    expect(telemetry.packet.qos).toBe(0);
    for (const m of messages.filter((x) => x.topic.startsWith(`${base}/events/`))) {
      const kind = m.topic.slice(`${base}/events/`.length);
      valid(kind as keyof typeof validators, m.json);
    }
  });

  it('delivers a diagnosed import EINVAL as an errno event with its cause and remedy', async () => {
    const { base, messages } = await start(
      { pool: { count: 4, size: 96 * 188 } },
      {
        supervision: {
          backoffInitialMs: 100,
          backoffMaxMs: 1000,
          deviceWaitMs: 100,
          decoderRetryMs: 100,
          preventKnownBad: false,
        },
      },
    );
    const event = await waitFor(() => find(messages, `${base}/events/errno`), LIVENESS_MS, 'the errno event');
    valid('errno', event.json);
    expect(event.json).toMatchObject({
      stream: 'main',
      ioctl: 'VIDIOC_QBUF',
      errno: 'EINVAL',
      cause: 'import-bytesused-above-sizeimage',
    });
    expect(String(event.json.remedy)).toMatch(/12220/);
    expect(event.packet.qos).toBe(1);
  });

  it('answers every command, on the fallback topic or the MQTT 5 response topic with correlation data', async () => {
    const { base, messages, client: c } = await start();
    await waitFor(() => find(messages, `${base}/status`), LIVENESS_MS, 'the online status');
    await waitFor(() => agent?.controller.stream('main')?.state === 'streaming', LIVENESS_MS, 'streaming');
    await waitFor(() => agent?.controller.health, LIVENESS_MS, 'a health sample');

    const status = await command(c, base, 'status', { id: 's1' }, messages);
    expect(status).toMatchObject({ id: 's1', status: 'ok', data: { streams: [{ stream: 'main' }] } });
    expect(await command(c, base, 'streams', { id: 's2' }, messages)).toMatchObject({ status: 'ok' });
    const resized = await command(c, base, 'pool.resize', { id: 'r1', args: { stream: 'main', count: 8 } }, messages);
    expect(resized).toMatchObject({ status: 'ok', data: { outcome: 'applied', to: { count: 8 } } });
    expect(
      await command(c, base, 'pool.resize', { id: 'r2', args: { stream: 'nope', count: 8 } }, messages),
    ).toMatchObject({
      status: 'error',
      error: { code: 'unknown-stream' },
    });
    expect(await command(c, base, 'stream.stop', { id: 't1', args: { stream: 'main' } }, messages)).toMatchObject({
      status: 'ok',
      data: { state: 'closed' },
    });
    expect(await command(c, base, 'stream.start', { id: 't2', args: { stream: 'main' } }, messages)).toMatchObject({
      status: 'ok',
    });
    await waitFor(() => agent?.controller.stream('main')?.state === 'streaming', LIVENESS_MS, 'streaming again');
    expect(await command(c, base, 'stream.restart', { id: 't3', args: { stream: 'main' } }, messages)).toMatchObject({
      status: 'ok',
    });
    expect(
      await command(c, base, 'config.get', { id: 'c1', args: { key: 'mqtt.topicPrefix' } }, messages),
    ).toMatchObject({
      status: 'ok',
      data: { value: 'stb' },
    });
    expect(await command(c, base, 'probe', { id: 'p1' }, messages)).toMatchObject({
      status: 'ok',
      data: { mediaPathUsable: true },
    });
    const dump = await command(c, base, 'diag.dump', { id: 'd1', args: { stream: 'main' } }, messages);
    expect(dump).toMatchObject({ status: 'ok', data: { streams: [{ status: { stream: 'main' } }] } });
    expect(await command(c, base, 'log.level', { id: 'l1', args: { level: 'warn' } }, messages)).toMatchObject({
      status: 'ok',
      data: { level: 'warn' },
    });
    expect(await command(c, base, 'telemetry.interval', { id: 'i1', args: { ms: 2000 } }, messages)).toMatchObject({
      status: 'ok',
    });

    // MQTT 5: the answer goes where the request says, with its correlation data.
    const replyTo = `dashboard/replies/${randomUUID()}`;
    await c.subscribeAsync(replyTo, { qos: 1 });
    await c.publishAsync(`${base}/cmd/status`, JSON.stringify({ id: 'm5' }), {
      qos: 1,
      properties: { responseTopic: replyTo, correlationData: Buffer.from('corr-42') },
    });
    const reply = await waitFor(() => messages.find((m) => m.topic === replyTo), LIVENESS_MS, 'the MQTT 5 reply');
    expect(reply.json).toMatchObject({ id: 'm5', status: 'ok' });
    expect(reply.packet.properties?.correlationData?.toString()).toBe('corr-42');
  });

  it('refuses malformed, unknown, mistyped and smuggled commands with an answer and a command-rejected event', async () => {
    const { base, messages, client: c } = await start();
    await waitFor(() => find(messages, `${base}/status`), LIVENESS_MS, 'the online status');
    expect(await command(c, base, 'status', '{ not json', messages)).toMatchObject({
      id: null,
      status: 'error',
      error: { code: 'malformed-json' },
    });
    expect(await command(c, base, 'reboot', { id: 'u1' }, messages)).toMatchObject({
      status: 'error',
      error: { code: 'unknown-command' },
    });
    expect(
      await command(c, base, 'pool.resize', { id: 'w1', args: { stream: 'main', count: 'many' } }, messages),
    ).toMatchObject({ status: 'error', error: { code: 'invalid-args' } });
    expect(
      await command(c, base, 'stream.stop', { id: 'x1', args: { stream: '/dev/dvb/adapter0/demux0' } }, messages),
    ).toMatchObject({ status: 'error', error: { code: 'invalid-args' } });
    expect(await command(c, base, 'status', { id: 'e1', exp: Date.now() - 60_000 }, messages)).toMatchObject({
      id: 'e1',
      status: 'error',
      error: { code: 'expired' },
    });
    await c.publishAsync(`${base}/cmd/status`, Buffer.alloc(64 * 1024, 0x20), { qos: 1 });
    await waitFor(
      () =>
        find(messages, `${base}/response/status`, (j) => (j.error as { code?: string })?.code === 'payload-too-large'),
      LIVENESS_MS,
      'the payload-too-large answer',
    );
    const rejected = await waitFor(
      () => (messages.filter((m) => m.topic === `${base}/events/command-rejected`).length >= 6 ? true : null),
      LIVENESS_MS,
      'six command-rejected events',
    );
    expect(rejected).toBe(true);
    for (const m of messages.filter((x) => x.topic === `${base}/events/command-rejected`))
      valid('command-rejected', m.json);
    // Still alive and answering.
    expect(await command(c, base, 'status', { id: 'ok1' }, messages)).toMatchObject({ status: 'ok' });
  });

  it('config.set validates the whole configuration, writes the override file atomically and applies it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmx-agent-config-set-'));
    try {
      devices += 1;
      const deviceId = `stb-${process.pid}-${devices}`;
      const base = `stb/${deviceId}`;
      const overrideFile = join(dir, 'state', 'override.json');
      const configFile = join(dir, 'agent.json');
      writeFileSync(
        configFile,
        JSON.stringify(
          simConfigJson([streamJson()], {
            deviceId,
            overrideFile,
            mqtt: { enabled: true, url: broker.url, reconnect: { baseMs: 100, capMs: 1000, stableMs: 1000 } },
          }),
        ),
      );
      client = await connectAsync(broker.url, { protocolVersion: 5, clientId: `dashboard-${deviceId}` });
      const messages: Received[] = [];
      client.on('message', (topic, payload, packet) => {
        if (!topic.startsWith(`${base}/cmd/`)) messages.push({ topic, json: JSON.parse(payload.toString()), packet });
      });
      await client.subscribeAsync(`${base}/#`, { qos: 1 });
      agent = startAgent(loadConfig({ file: configFile, env: {} }), { configFile });
      await waitFor(() => find(messages, `${base}/status`), LIVENESS_MS, 'the online status');
      await waitFor(() => agent?.controller.stream('main')?.state === 'streaming', LIVENESS_MS, 'streaming');
      const c = client;

      const set = await command(
        c,
        base,
        'config.set',
        { id: 'cs1', args: { values: { 'health.intervalMs': 500 } } },
        messages,
      );
      expect(set).toMatchObject({
        status: 'ok',
        data: { applied: ['health.intervalMs 200 -> 500'], needsRestart: [] },
      });
      expect(JSON.parse(readFileSync(overrideFile, 'utf8'))).toEqual({ health: { intervalMs: 500 } });

      const pool = await command(
        c,
        base,
        'config.set',
        { id: 'cs2', args: { values: { 'streams.main.pool.count': 8 } } },
        messages,
      );
      expect(pool).toMatchObject({ status: 'ok', data: { applied: ['stream main resized'] } });
      expect(agent?.controller.stream('main')?.status().pool).toMatchObject({ count: 8 });

      const before = readFileSync(overrideFile, 'utf8');
      const bad = await command(
        c,
        base,
        'config.set',
        { id: 'cs3', args: { values: { 'health.intervalMs': 5 } } },
        messages,
      );
      expect(bad).toMatchObject({ status: 'error', error: { code: 'invalid-config' } });
      expect((bad.error as { message: string }).message).toMatch(/health\.intervalMs/);
      expect(readFileSync(overrideFile, 'utf8')).toBe(before);

      const restart = await command(
        c,
        base,
        'config.set',
        { id: 'cs4', args: { values: { 'mqtt.keepaliveSec': 45 } } },
        messages,
      );
      expect(restart).toMatchObject({ status: 'ok', data: { needsRestart: ['mqtt'] } });
      // What the next start loads: the file with the override over it.
      expect(loadConfig({ file: configFile, env: {} })).toMatchObject({
        health: { intervalMs: 500 },
        mqtt: { keepaliveSec: 45 },
        streams: [{ id: 'main', pool: { count: 8 } }],
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses config.set when no override file is configured', async () => {
    const { base, messages, client: c } = await start();
    await waitFor(() => find(messages, `${base}/status`), LIVENESS_MS, 'the online status');
    expect(
      await command(c, base, 'config.set', { id: 'n1', args: { values: { 'log.level': 'debug' } } }, messages),
    ).toMatchObject({
      status: 'error',
      error: { code: 'config-set-disabled' },
    });
  });

  it('runs a repeated command id once and answers it again', async () => {
    const { base, messages, client: c } = await start();
    // Born means subscribed: a first-ever session has nothing kept for commands sent before that.
    await waitFor(() => find(messages, `${base}/status`), LIVENESS_MS, 'the online status');
    await waitFor(() => agent?.controller.stream('main')?.state === 'streaming', LIVENESS_MS, 'streaming');
    const first = await command(c, base, 'stream.restart', { id: 'dup-1', args: { stream: 'main' } }, messages);
    const restartsAfterFirst = agent?.states.filter((s) => s.to === 'draining').length;
    const second = await command(c, base, 'stream.restart', { id: 'dup-1', args: { stream: 'main' } }, messages);
    expect(second).toEqual(first);
    expect(agent?.states.filter((s) => s.to === 'draining').length).toBe(restartsAfterFirst);
  });

  it('publishes a retained offline status when it stops', async () => {
    const { base, messages } = await start();
    await waitFor(() => find(messages, `${base}/status`), LIVENESS_MS, 'the online status');
    const bridge = agent?.controller.mqtt;
    expect(bridge).not.toBeNull();
    await agent?.controller.stopGracefully();
    agent = null;
    await waitFor(
      () => find(messages, `${base}/status`, (j) => j.state === 'offline'),
      LIVENESS_MS,
      'the offline status',
    );
  });
});

describe('the agent across a broker restart', () => {
  let persistent: Broker | null = null;
  let gate: TcpGate | null = null;
  afterEach(async () => {
    agent?.controller.stop();
    agent = null;
    await gate?.close();
    gate = null;
    await persistent?.stop();
    persistent = null;
    vi.restoreAllMocks();
  });

  it('runs the QoS 1 commands sent while it was away once, and sends the newest offline events after an overflow report', async () => {
    persistent = await startMosquitto({ persistence: true });
    // The agent reaches the broker through the gate only, so the test decides when it is away while the
    // broker itself is up and queues for its persistent session.
    gate = await TcpGate.start(persistent.port);
    devices += 1;
    const deviceId = `stb-${process.pid}-${devices}`;
    const base = `stb/${deviceId}`;
    const maxEvents = 2;
    const config = loadSimConfig([streamJson()], {
      deviceId,
      mqtt: {
        enabled: true,
        url: gate.url,
        telemetryIntervalMs: 1000,
        reconnect: { baseMs: 100, capMs: 1000, stableMs: 1000 },
        offlineQueue: { maxEvents, maxBytes: 1_000_000 },
      },
    });
    // What the agent publishes while it has no connection, after its first one: what the offline queue saw.
    const offlineEvents: Array<{ kind: string; payload: unknown }> = [];
    let afterFirstConnection = false;
    const publishEvent = MqttLink.prototype.publishEvent;
    vi.spyOn(MqttLink.prototype, 'publishEvent').mockImplementation(function (this: MqttLink, kind, payload) {
      if (afterFirstConnection && !this.connected)
        offlineEvents.push({ kind, payload: JSON.parse(JSON.stringify(payload)) });
      publishEvent.call(this, kind, payload);
    });
    agent = startAgent(config);
    const harness = agent;
    await waitFor(() => harness.controller.mqtt?.connected, LIVENESS_MS, 'the first connection');
    afterFirstConnection = true;
    await waitFor(() => harness.controller.stream('main')?.state === 'streaming', LIVENESS_MS, 'streaming');
    const outageFromMs = Date.now();

    gate.refuse = true;
    await persistent.restart();
    await waitFor(() => harness.controller.mqtt?.connected === false, LIVENESS_MS, 'the agent to see the broker go');

    // While the agent is away: the fleet commands it (the broker queues for the restored session) ...
    const fleet = await connectAsync(persistent.url, { protocolVersion: 5, clientId: `fleet-${deviceId}` });
    client = fleet;
    const messages: Received[] = [];
    fleet.on('message', (topic, payload, packet) => {
      if (topic.startsWith(`${base}/cmd/`)) return;
      messages.push({ topic, json: JSON.parse(payload.toString()) as Record<string, unknown>, packet });
    });
    await fleet.subscribeAsync([`${base}/events/#`, `${base}/response/#`], { qos: 1 });
    await fleet.publishAsync(`${base}/cmd/stream.restart`, JSON.stringify({ id: 'away-1', args: { stream: 'main' } }), {
      qos: 1,
    });
    await fleet.publishAsync(`${base}/cmd/status`, JSON.stringify({ id: 'away-2' }), { qos: 1 });
    // ... and the agent goes on producing events: a local restart makes more stream-state changes than the queue keeps.
    const statesBefore = harness.states.length;
    const stream = harness.controller.stream('main')!;
    stream.stop('test restart while offline');
    stream.start();
    await waitFor(() => stream.state === 'streaming', LIVENESS_MS, 'streaming again while offline');
    expect(harness.states.length - statesBefore).toBeGreaterThan(maxEvents);
    expect(harness.controller.mqtt?.connected).toBe(false);
    const drainsBeforeReturn = harness.states.filter((s) => s.to === 'draining').length;

    gate.refuse = false;
    const restarted = await waitFor(
      () => messages.find((m) => m.topic === `${base}/response/stream.restart`),
      LIVENESS_MS,
      'the answer to the command sent while away',
    );
    expect(restarted.json).toMatchObject({ id: 'away-1', status: 'ok', data: { stream: 'main' } });
    const status = await waitFor(
      () => messages.find((m) => m.topic === `${base}/response/status`),
      LIVENESS_MS,
      'the second queued command',
    );
    expect(status.json).toMatchObject({ id: 'away-2', status: 'ok' });

    // Subscribed after the reconnect: a new command is answered too, and the restart ran exactly once.
    const after = await command(fleet, base, 'streams', { id: 'after-1' }, messages);
    expect(after).toMatchObject({ id: 'after-1', status: 'ok' });
    expect(harness.states.filter((s) => s.to === 'draining').length).toBe(drainsBeforeReturn + 1);

    // The offline bound: the overflow report, then the newest maxEvents of the events the agent published
    // while it had no connection, in order, then the live ones.
    expect(offlineEvents.length).toBeGreaterThan(maxEvents);
    const events = messages.filter((m) => m.topic.startsWith(`${base}/events/`));
    // QoS 1 messages in flight when the broker went away are resent too: the report is the one about the outage.
    const overflowAt = events.findIndex(
      (m) => m.topic === `${base}/events/queue-overflow` && (m.json.since as number) >= outageFromMs,
    );
    expect(overflowAt).toBeGreaterThanOrEqual(0);
    expect(events[overflowAt]?.json).toMatchObject({ dropped: offlineEvents.length - maxEvents });
    const flushed = events.slice(overflowAt + 1, overflowAt + 1 + maxEvents);
    expect(flushed.map((m) => ({ kind: m.topic.slice(`${base}/events/`.length), payload: m.json }))).toEqual(
      offlineEvents.slice(-maxEvents),
    );
  });
  it('never sees a command whose MQTT 5 message expiry passed while it was away', async () => {
    persistent = await startMosquitto();
    gate = await TcpGate.start(persistent.port);
    devices += 1;
    const deviceId = `stb-${process.pid}-${devices}`;
    const base = `stb/${deviceId}`;
    agent = startAgent(
      loadSimConfig([streamJson()], {
        deviceId,
        mqtt: { enabled: true, url: gate.url, reconnect: { baseMs: 100, capMs: 1000, stableMs: 1000 } },
      }),
    );
    const harness = agent;
    await waitFor(() => harness.controller.mqtt?.connected, LIVENESS_MS, 'the first connection');
    gate.refuse = true;
    gate.cut();
    await waitFor(() => harness.controller.mqtt?.connected === false, LIVENESS_MS, 'the agent away');

    const fleet = await connectAsync(persistent.url, { protocolVersion: 5, clientId: `fleet-${deviceId}` });
    client = fleet;
    const answers: Array<Record<string, unknown>> = [];
    fleet.on('message', (_topic, payload) => answers.push(JSON.parse(payload.toString()) as Record<string, unknown>));
    await fleet.subscribeAsync(`${base}/response/#`, { qos: 1 });
    await fleet.publishAsync(`${base}/cmd/stream.restart`, JSON.stringify({ id: 'stale', args: { stream: 'main' } }), {
      qos: 1,
      properties: { messageExpiryInterval: 1 },
    });
    await fleet.publishAsync(`${base}/cmd/status`, JSON.stringify({ id: 'fresh' }), { qos: 1 });
    // Not a timing assertion: the broker must hold the stale command past its one-second expiry.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const drains = harness.states.filter((s) => s.to === 'draining').length;

    gate.refuse = false;
    await waitFor(() => answers.find((a) => a.id === 'fresh'), LIVENESS_MS, 'the answer to the fresh command');
    // Both were queued in order; the fresh one is answered, so the stale one would have been seen first.
    expect(answers.map((a) => a.id)).toEqual(['fresh']);
    expect(harness.states.filter((s) => s.to === 'draining').length).toBe(drains);
  });
});
