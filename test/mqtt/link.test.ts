import { spawn } from 'node:child_process';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { connectAsync, type IClientOptions } from 'mqtt';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  MqttLink,
  type MqttLinkOptions,
  OfflineQueue,
  type QueuedMessage,
  ReconnectBackoff,
  reconnectDelayMs,
} from '../../agent/mqtt/link.js';
import { MAX_TOPIC_LEVEL_LENGTH, Topics, validateDeviceId, validateTopicPrefix } from '../../agent/mqtt/topics.js';
import { type Broker, startMosquitto } from '../support/mosquitto.js';
import { collectCommands, MessageRecorder, waitUntil } from '../support/mqtt-recorder.js';
import { TcpGate } from '../support/tcp-gate.js';

const CHILD = fileURLToPath(new URL('./fixtures/link-child.mjs', import.meta.url));

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function broker(options?: Parameters<typeof startMosquitto>[0]): Promise<Broker> {
  const started = await startMosquitto(options);
  cleanups.push(() => started.stop());
  return started;
}

let deviceCounter = 0;
function uniqueDevice(): string {
  deviceCounter += 1;
  return `box-${process.pid}-${deviceCounter}`;
}

function linkOptions(url: string, overrides: Partial<MqttLinkOptions> = {}): MqttLinkOptions {
  const deviceId = uniqueDevice();
  return {
    url,
    clientId: `dmx-agent-${deviceId}`,
    protocolVersion: 5,
    keepaliveSec: 10,
    sessionExpirySec: 3600,
    reconnect: { baseMs: 20, capMs: 200, stableMs: 1000 },
    offlineQueue: { maxEvents: 100, maxBytes: 1_000_000 },
    topics: new Topics('stb', deviceId),
    birth: () => ({ version: '0.1.0-test', bootTime: '2024-01-01T00:00:00.000Z', configDigest: 'abc123' }),
    logger: pino({ level: process.env.DMX_TEST_MQTT_LOG ?? 'silent' }),
    ...overrides,
  };
}

/** A TcpGate in front of the broker, closed after the test. */
async function openGate(targetPort: number): Promise<TcpGate> {
  const gate = await TcpGate.start(targetPort);
  cleanups.push(() => gate.close());
  return gate;
}

function startLink(options: MqttLinkOptions): MqttLink {
  const link = new MqttLink(options);
  cleanups.push(() => link.stop());
  void link.start();
  return link;
}

/** A plain MQTT.js client subscribed to `filters`, recording what it receives; closed after the test. */
class Observer extends MessageRecorder {
  static async connect(url: string, filters: string[], options: IClientOptions = {}): Promise<Observer> {
    const client = await connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, ...options });
    const observer = new Observer(client);
    cleanups.push(() => observer.close());
    if (filters.length > 0) await client.subscribeAsync(filters, { qos: 1 });
    return observer;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

/**
 * The retained message on `topic`, as a new subscriber sees it. Retain As Published: when the link
 * publishes only after this subscription (a reconnect still under way), the flag still shows it retained.
 */
async function retained(url: string, topic: string): Promise<unknown> {
  const client = await connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 });
  const observer = new Observer(client);
  cleanups.push(() => observer.close());
  await client.subscribeAsync(topic, { qos: 1, rap: true });
  const message = await observer.waitFor((m) => m.topic === topic && m.retain, `retained ${topic}`);
  await observer.close();
  return JSON.parse(message.text) as unknown;
}

async function sendCommand(url: string, topic: string, body: object, options: IClientOptions = {}): Promise<void> {
  const client = await connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, ...options });
  // Resolves on PUBACK: the broker has the command (for a disconnected persistent session: queued).
  await client.publishAsync(topic, JSON.stringify(body), {
    qos: 1,
    properties: options.protocolVersion === 4 ? undefined : { correlationData: Buffer.from('corr-1') },
  });
  await client.endAsync();
}

describe('Topics', () => {
  it('builds the device tree under <prefix>/<deviceId>/', () => {
    const topics = new Topics('stb', 'box-1');
    expect(topics.status).toBe('stb/box-1/status');
    expect(topics.capabilities).toBe('stb/box-1/capabilities');
    expect(topics.telemetry).toBe('stb/box-1/telemetry');
    expect(topics.event('errno')).toBe('stb/box-1/events/errno');
    expect(topics.command('pool.resize')).toBe('stb/box-1/cmd/pool.resize');
    expect(topics.commandFilter).toBe('stb/box-1/cmd/+');
    expect(topics.response('status')).toBe('stb/box-1/response/status');
    expect(new Topics('fleet/eu', 'b').status).toBe('fleet/eu/b/status');
  });

  it('reads the command name back from a topic, and nothing from other topics', () => {
    const topics = new Topics('stb', 'box-1');
    expect(topics.commandName('stb/box-1/cmd/pool.resize')).toBe('pool.resize');
    expect(topics.commandName('stb/box-2/cmd/status')).toBeNull();
    expect(topics.commandName('stb/box-1/cmd/')).toBeNull();
    expect(topics.commandName('stb/box-1/cmd/a/b')).toBeNull();
    expect(topics.commandName('stb/box-1/status')).toBeNull();
  });

  it.each([
    ['a/b', /must not contain '\/'/],
    ['box+', /wildcards/],
    ['#', /wildcards/],
    ['box\u0000', /control characters/],
    ['box\n1', /control characters/],
    ['box\u007f', /control characters/],
    ['box\u0085', /control characters/],
    ['', /must not be empty/],
    ['x'.repeat(MAX_TOPIC_LEVEL_LENGTH + 1), /65 characters long; at most 64/],
  ])('refuses the device id %j', (id, message) => {
    expect(() => validateDeviceId(id)).toThrow(message);
    expect(() => new Topics('stb', id)).toThrow(message);
  });

  it('accepts a 64-character id and ordinary names', () => {
    expect(() => validateDeviceId('x'.repeat(MAX_TOPIC_LEVEL_LENGTH))).not.toThrow();
    expect(() => validateDeviceId('STB-00:1a:2b_é')).not.toThrow();
  });

  it('checks every level of the prefix by the same rule', () => {
    expect(() => validateTopicPrefix('fleet/eu/stb')).not.toThrow();
    expect(() => validateTopicPrefix('fleet//stb')).toThrow(/level 2 "" must not be empty/);
    expect(() => validateTopicPrefix('stb/')).toThrow(/level 2 "" must not be empty/);
    expect(() => validateTopicPrefix('fleet/+/stb')).toThrow(/level 2 "\+" must not contain the MQTT wildcards/);
    expect(() => validateTopicPrefix('st\tb')).toThrow(/control characters/);
    expect(() => validateTopicPrefix(`a/${'y'.repeat(65)}`)).toThrow(/at most 64/);
    expect(() => validateTopicPrefix('$SYS')).toThrow(/reserved for the broker/);
    expect(() => new Topics('', 'box')).toThrow(/must not be empty/);
  });

  it('refuses event kinds and command names that are not one level', () => {
    const topics = new Topics('stb', 'box-1');
    expect(() => topics.event('a/b')).toThrow(/event kind/);
    expect(() => topics.command('#')).toThrow(/command name/);
  });
});

describe('reconnect schedule', () => {
  const policy = { baseMs: 100, capMs: 1000, stableMs: 5000 };

  it('draws each delay uniformly below min(cap, base * 2^attempt), the first below base', () => {
    const half = () => 0.5;
    expect([0, 1, 2, 3, 4, 5, 6].map((attempt) => reconnectDelayMs(attempt, policy, half))).toEqual([
      50, 100, 200, 400, 500, 500, 500,
    ]);
    const almostOne = () => 0.999;
    expect(reconnectDelayMs(0, policy, almostOne)).toBeLessThan(policy.baseMs);
    expect(reconnectDelayMs(40, policy, almostOne)).toBeLessThan(policy.capMs);
    expect(reconnectDelayMs(3, policy, () => 0)).toBe(0);
    // A large attempt count saturates at the cap instead of overflowing.
    expect(reconnectDelayMs(5000, policy, () => 0.25)).toBe(250);
  });

  it('counts attempts, and only a connection that lasted stableMs resets them', () => {
    let now = 0;
    const draws: number[] = [];
    const random = () => {
      draws.push(draws.length);
      return 1;
    };
    const backoff = new ReconnectBackoff(policy, random, () => now);
    expect([backoff.nextDelayMs(), backoff.nextDelayMs(), backoff.nextDelayMs()]).toEqual([100, 200, 400]);
    expect(draws).toHaveLength(3);

    // Up for less than stableMs: the broker accepts and drops; the backoff keeps climbing.
    backoff.connected();
    now += policy.stableMs - 1;
    backoff.disconnected();
    expect(backoff.attempt).toBe(3);
    expect(backoff.nextDelayMs()).toBe(800);

    // Up for stableMs: the next outage starts again from the random first delay below base.
    backoff.connected();
    now += policy.stableMs;
    backoff.disconnected();
    expect(backoff.attempt).toBe(0);
    expect(backoff.nextDelayMs()).toBe(100);
    // A failed attempt (no connection at all) does not reset either.
    backoff.disconnected();
    expect(backoff.attempt).toBe(1);
  });
});

describe('OfflineQueue', () => {
  const message = (n: number, size = 10): QueuedMessage => ({
    topic: 't',
    payload: Buffer.alloc(size, n),
    options: { qos: 1 },
  });

  it('keeps the newest maxEvents messages in order and reports the dropped ones once', () => {
    let clock = Date.parse('2024-05-01T10:00:00.000Z');
    const queue = new OfflineQueue({ maxEvents: 3, maxBytes: 10_000 }, () => clock);
    expect(queue.takeOverflow()).toBeNull();
    for (let n = 0; n < 5; n += 1) {
      queue.push(message(n));
      clock += 1000;
    }
    expect(queue.size).toBe(3);
    expect(queue.bytes).toBe(33);
    expect(queue.takeOverflow()).toEqual({
      dropped: 2,
      droppedBytes: 22,
      since: Date.parse('2024-05-01T10:00:03.000Z'),
    });
    expect(queue.takeOverflow()).toBeNull();
    expect(queue.drain().map((m) => m.payload[0])).toEqual([2, 3, 4]);
    expect(queue.size).toBe(0);
    expect(queue.bytes).toBe(0);
    expect(queue.droppedTotal).toBe(2);
  });

  it('bounds the bytes, dropping as many old messages as needed, and never keeps one larger than the budget', () => {
    const queue = new OfflineQueue({ maxEvents: 100, maxBytes: 50 });
    queue.push(message(0, 19));
    queue.push(message(1, 19));
    queue.push(message(2, 30)); // 20 + 20 + 31 and 20 + 31 are both over 50: both older ones go
    expect(queue.drain().map((m) => m.payload[0])).toEqual([2]);
    queue.push(message(3, 10));
    queue.push(message(4, 60)); // alone over the budget: dropped, the queue kept
    expect(queue.drain().map((m) => m.payload[0])).toEqual([3]);
    expect(queue.takeOverflow()).toMatchObject({ dropped: 3, droppedBytes: 20 + 20 + 61 });
  });
});

describe('MqttLink against mosquitto', () => {
  it('publishes the retained online status on connect, seen by a client subscribing later', async () => {
    const { url } = await broker();
    const options = linkOptions(url);
    const link = new MqttLink(options);
    cleanups.push(() => link.stop());
    await link.start();
    expect(link.connected).toBe(true);

    const status = await retained(url, options.topics.status);
    expect(status).toEqual({
      state: 'online',
      version: '0.1.0-test',
      bootTime: '2024-01-01T00:00:00.000Z',
      configDigest: 'abc123',
    });
    expect(link.stats()).toMatchObject({ connects: 1, disconnects: 0, queued: 0, dropped: 0 });
  });

  it.each([5, 4] as const)(
    'leaves the Last Will (retained offline) when its process is SIGKILLed (MQTT %s)',
    async (protocolVersion) => {
      const { url } = await broker();
      const deviceId = uniqueDevice();
      const topics = new Topics('stb', deviceId);
      const child = spawn(
        process.execPath,
        [CHILD, JSON.stringify({ url, clientId: `dmx-agent-${deviceId}`, prefix: 'stb', deviceId, protocolVersion })],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      cleanups.push(() => {
        child.kill('SIGKILL');
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      await waitUntil(() => stdout.includes('connected') || child.exitCode !== null, 'the child link to connect');
      expect(stderr).toBe('');
      expect(stdout).toBe('connected\n');

      const observer = await Observer.connect(url, [topics.status]);
      const online = await observer.waitFor((m) => m.retain, 'the retained online status');
      expect(JSON.parse(online.text)).toMatchObject({ state: 'online', version: 'child', pid: child.pid });

      child.kill('SIGKILL');
      const offline = await observer.waitFor((m) => JSON.parse(m.text).state === 'offline', 'the Last Will');
      expect(JSON.parse(offline.text)).toEqual({ state: 'offline' });
      expect(await retained(url, topics.status)).toEqual({ state: 'offline' });
    },
  );

  it("turns Nagle's algorithm off on its connection, so an answer never waits for a delayed ACK", async () => {
    const mosquitto = await broker();
    const noDelay = vi.spyOn(Socket.prototype, 'setNoDelay');
    cleanups.push(() => noDelay.mockRestore());
    const link = startLink(linkOptions(mosquitto.url));
    await waitUntil(() => link.connected, 'the connection');
    // The link's own socket: the one MQTT.js connected to the broker's port.
    const calls = noDelay.mock.contexts.map((socket, i) => ({ socket: socket as Socket, args: noDelay.mock.calls[i] }));
    expect(calls.filter((c) => c.socket.remotePort === mosquitto.port && c.args?.[0] === true)).toHaveLength(1);
  });

  it('publishes the retained offline status itself on a clean stop, and stop() is safe twice', async () => {
    const { url } = await broker();
    const options = linkOptions(url);
    const link = new MqttLink(options);
    await link.start();
    const observer = await Observer.connect(url, [options.topics.status]);
    await observer.waitFor((m) => m.retain && JSON.parse(m.text).state === 'online', 'online');

    await link.stop();
    await link.stop();
    expect(link.connected).toBe(false);
    await observer.waitFor((m) => JSON.parse(m.text).state === 'offline', 'offline');
    expect(await retained(url, options.topics.status)).toEqual({ state: 'offline' });
    // Nothing after stop: not sent, not queued.
    link.publishEvent('late', { n: 1 });
    expect(link.stats()).toMatchObject({ connects: 1, disconnects: 1, queued: 0 });
  });

  it('survives a broker restart: reconnects by itself and gets the QoS 1 command sent while it was away', async () => {
    const mosquitto = await broker({ persistence: true });
    const gate = await openGate(mosquitto.port);
    const options = linkOptions(gate.url);
    const { topics } = options;
    const link = startLink(options);
    const commands = collectCommands(link);
    await waitUntil(() => link.connected, 'the first connection');
    // The subscription is in place once a command round-trips.
    await sendCommand(mosquitto.url, topics.command('status'), { id: 'before' });
    await waitUntil(() => commands.length === 1, 'the first command');

    gate.refuse = true;
    await mosquitto.restart();
    await waitUntil(() => !link.connected, 'the link to notice the restart');
    // The broker restored the session from its database and queues this for the absent agent.
    await sendCommand(mosquitto.url, topics.command('stream.restart'), { id: 'while-away', args: { stream: 'hd' } });
    expect(link.connected).toBe(false);

    gate.refuse = false;
    await waitUntil(() => commands.length === 2, 'the command sent while the agent was away');
    expect(commands[1]).toMatchObject({ name: 'stream.restart', body: { id: 'while-away', args: { stream: 'hd' } } });
    expect(commands[1]?.packet.properties?.correlationData?.toString()).toBe('corr-1');
    expect(link.stats()).toMatchObject({ connects: 2, disconnects: 1 });

    // Subscribed again after the reconnect, and the answer carries the request's correlation data.
    const observer = await Observer.connect(mosquitto.url, [topics.response('status')]);
    await sendCommand(mosquitto.url, topics.command('status'), { id: 'after' });
    await waitUntil(() => commands.length === 3, 'a command after the reconnect');
    const request = commands[2]!;
    link.publishResponse(
      topics.response('status'),
      { id: 'after', status: 'ok', data: {} },
      request.packet.properties?.correlationData,
    );
    const answer = await observer.waitFor((m) => m.topic === topics.response('status'), 'the answer');
    expect(JSON.parse(answer.text)).toEqual({ id: 'after', status: 'ok', data: {} });
    expect(answer.packet.properties?.correlationData?.toString()).toBe('corr-1');
    expect(await retained(mosquitto.url, topics.status)).toMatchObject({ state: 'online' });
  });

  it('subscribes again when the broker lost the session (restart without persistence)', async () => {
    const mosquitto = await broker({ persistence: false });
    const options = linkOptions(mosquitto.url);
    const link = startLink(options);
    const commands = collectCommands(link);
    await waitUntil(() => link.connected, 'the first connection');

    await mosquitto.restart();
    // Without persistence the broker forgot the retained status and the subscription: the status is back once
    // the link has subscribed again (it subscribes before it announces itself on the same connection).
    expect(await retained(mosquitto.url, options.topics.status)).toMatchObject({ state: 'online' });
    expect(link.stats().connects).toBe(2);
    await sendCommand(mosquitto.url, options.topics.command('probe'), { id: 'p1' });
    await waitUntil(() => commands.length > 0, 'a command after resubscription');
    expect(commands[0]).toMatchObject({ name: 'probe', body: { id: 'p1' } });
  });

  it('resends a QoS 1 event that was in flight when the connection dropped', async () => {
    const mosquitto = await broker();
    const gate = await openGate(mosquitto.port);
    const options = linkOptions(gate.url);
    const link = startLink(options);
    await waitUntil(() => link.connected, 'the first connection');
    const observer = await Observer.connect(mosquitto.url, [`${options.topics.base}/events/#`]);

    // The link believes it is connected; the event goes to MQTT.js and into the void.
    gate.swallow = true;
    link.publishEvent('errno', { seq: 1 });
    gate.refuse = true;
    gate.cut();
    await waitUntil(() => !link.connected, 'the link to notice the cut');
    expect(link.stats().queued).toBe(0);
    gate.swallow = false;
    gate.refuse = false;

    const event = await observer.waitFor((m) => m.topic === options.topics.event('errno'), 'the resent event');
    expect(JSON.parse(event.text)).toEqual({ seq: 1 });
  });

  it('bounds the offline queue: after the outage, the overflow report first, then the newest events in order', async () => {
    const mosquitto = await broker();
    const gate = await openGate(mosquitto.port);
    const options = linkOptions(gate.url, { offlineQueue: { maxEvents: 3, maxBytes: 10_000 } });
    const { topics } = options;
    const link = startLink(options);
    await waitUntil(() => link.connected, 'the first connection');

    gate.refuse = true;
    await mosquitto.restart(async () => {
      await waitUntil(() => !link.connected, 'the link to see the broker go');
      for (let seq = 0; seq < 5; seq += 1) link.publishEvent('stream-state', { seq });
      for (let seq = 0; seq < 3; seq += 1) link.publishTelemetry({ seq });
      link.publishRetained(topics.capabilities, { adapters: 1 });
      expect(link.stats()).toMatchObject({ queued: 3, dropped: 2 });
    });
    const observer = await Observer.connect(mosquitto.url, [`${topics.base}/events/#`, topics.telemetry]);
    gate.refuse = false;

    await observer.waitFor((m) => m.topic === topics.telemetry, 'the latest telemetry');
    // Everything from the flush is in; a marker sent afterwards proves nothing else was on its way.
    link.publishEvent('marker', {});
    await observer.waitFor((m) => m.topic === topics.event('marker'), 'the marker');

    const events = observer.messages.filter((m) => m.topic.includes('/events/') && !m.topic.endsWith('/marker'));
    expect(events.map((m) => m.topic.slice(topics.base.length + 1))).toEqual([
      'events/queue-overflow',
      'events/stream-state',
      'events/stream-state',
      'events/stream-state',
    ]);
    const [overflow, ...kept] = events.map((m) => JSON.parse(m.text) as Record<string, unknown>);
    expect(overflow).toMatchObject({ dropped: 2, droppedBytes: expect.any(Number) });
    expect(Number.isInteger(overflow?.since)).toBe(true);
    expect(kept).toEqual([{ seq: 2 }, { seq: 3 }, { seq: 4 }]);
    // Telemetry is never queued: only the latest snapshot went out.
    expect(observer.json(topics.telemetry)).toEqual([{ seq: 2 }]);
    expect(await retained(mosquitto.url, topics.capabilities)).toEqual({ adapters: 1 });
    expect(link.stats()).toMatchObject({ queued: 0, dropped: 2, connects: 2 });
  });

  it('keeps retrying without a broker, and start() resolves once one is there', async () => {
    const mosquitto = await broker();
    const gate = await openGate(mosquitto.port);
    gate.refuse = true;
    const link = new MqttLink(linkOptions(gate.url));
    cleanups.push(() => link.stop());
    let started = false;
    void link.start().then(() => {
      started = true;
    });
    await waitUntil(() => gate.connections >= 4, 'several connection attempts');
    expect(started).toBe(false);
    gate.refuse = false;
    await waitUntil(() => started, 'start() to resolve');
    expect(link.connected).toBe(true);
  });

  it('stops cleanly while it has never reached a broker, and never tries again afterwards', async () => {
    const mosquitto = await broker();
    const gate = await openGate(mosquitto.port);
    gate.refuse = true;
    // The link's reconnect timer is fake: the test decides when an attempt happens.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    cleanups.push(() => {
      vi.useRealTimers();
    });
    // Every scheduled reconnect draws its delay once: the draws count the schedulings.
    let draws = 0;
    const random = () => {
      draws += 1;
      return 0.5;
    };
    const link = new MqttLink(linkOptions(gate.url, { random }));
    const start = link.start();
    await waitUntil(() => draws === 1, 'the first attempt refused and a reconnect scheduled');
    vi.advanceTimersToNextTimer();
    await waitUntil(() => draws === 2, 'the second attempt refused');
    expect(gate.connections).toBe(2);

    // Now waiting on its timer, with no attempt in flight.
    await link.stop();
    await start; // resolved by stop()
    await link.stop();
    vi.runAllTimers();
    gate.refuse = false;
    // Any attempt the link made would reach the gate before this client (it connected first).
    const probe = await Observer.connect(gate.url, []);
    await probe.close();
    expect(gate.connections).toBe(3);
    expect(draws).toBe(2);
    expect(link.connected).toBe(false);
    expect(link.stats()).toMatchObject({ connects: 0, disconnects: 0 });
  });

  it('works in MQTT 3.1.1 mode: birth, commands, answers on the response topic, offline on stop', async () => {
    const { url } = await broker();
    const options = linkOptions(url, { protocolVersion: 4 });
    const { topics } = options;
    const link = new MqttLink(options);
    cleanups.push(() => link.stop());
    const commands = collectCommands(link);
    await link.start();
    expect(await retained(url, topics.status)).toMatchObject({ state: 'online', version: '0.1.0-test' });

    const observer = await Observer.connect(url, [topics.response('streams')], { protocolVersion: 4 });
    await sendCommand(url, topics.command('streams'), { id: 'q1' }, { protocolVersion: 4 });
    await waitUntil(() => commands.length === 1, 'the command');
    expect(commands[0]).toMatchObject({ name: 'streams', body: { id: 'q1' } });
    expect(commands[0]?.packet.properties).toBeUndefined();
    link.publishResponse(topics.response('streams'), { id: 'q1', status: 'ok', data: [] }, Buffer.from('ignored'));
    const answer = await observer.waitFor((m) => m.topic === topics.response('streams'), 'the answer');
    expect(JSON.parse(answer.text)).toEqual({ id: 'q1', status: 'ok', data: [] });

    await link.stop();
    expect(await retained(url, topics.status)).toEqual({ state: 'offline' });
  });

  it('refuses to start with an unreadable TLS file, naming it', async () => {
    const { url } = await broker();
    const missing = fileURLToPath(new URL('./fixtures/no-such-ca.pem', import.meta.url));
    const link = new MqttLink(linkOptions(url.replace('mqtt:', 'mqtts:'), { tls: { ca: missing } }));
    await expect(link.start()).rejects.toThrow(`cannot read the MQTT TLS CA file ${missing}`);
    await link.stop();
  });

  it('logs a throwing command handler and keeps going', async () => {
    const { url } = await broker();
    const options = linkOptions(url);
    const link = startLink(options);
    let calls = 0;
    link.onCommand(() => {
      calls += 1;
      throw new Error('handler bug');
    });
    // Subscribed: the link announces itself only after subscribing.
    await retained(url, options.topics.status);
    await sendCommand(url, options.topics.command('x'), { id: '1' });
    await sendCommand(url, options.topics.command('x'), { id: '2' });
    await waitUntil(() => calls === 2, 'both commands');
    expect(link.connected).toBe(true);
  });
});
