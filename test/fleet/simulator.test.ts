// The fleet simulator against a real mosquitto, seen from a back-office client:
// every simulated box comes online (retained status), sends telemetry and a
// diagnosed EINVAL that match the contract's schemas, comes back after a broker
// restart, and answers a command sent to the whole fleet. Liveness deadlines
// only; no figure here depends on the machine's speed.
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compilePayloadValidators, describeValidationErrors } from '../../agent/mqtt/payloads.js';
import { type Broker, startMosquitto } from '../support/mosquitto.js';
import { deviceIds, FleetSimulator } from './simulator.js';

const DEVICES = 50;
const PREFIX = 'simfleet';
const LIVENESS_MS = 30_000;
const validators = compilePayloadValidators();

async function waitUntil(condition: () => boolean, what: () => string): Promise<void> {
  const deadline = Date.now() + LIVENESS_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Heard {
  topic: string;
  json: Record<string, unknown>;
  correlation?: string;
}

let broker: Broker;
let fleet: FleetSimulator;
let office: MqttClient;
const heard: Heard[] = [];
const ids = deviceIds(DEVICES);

function deviceOf(topic: string): string {
  return topic.split('/')[1] ?? '';
}

/** The latest retained-or-live status per device, as the back office sees it. */
function statusByDevice(): Map<string, string> {
  const latest = new Map<string, string>();
  for (const message of heard) {
    if (message.topic.endsWith('/status')) latest.set(deviceOf(message.topic), String(message.json.state));
  }
  return latest;
}

beforeAll(async () => {
  broker = await startMosquitto({ persistence: true });
  office = await connectAsync(broker.url, { protocolVersion: 5, clientId: 'fleet-backoffice', reconnectPeriod: 200 });
  office.on('message', (topic, payload, packet) => {
    const correlation = packet.properties?.correlationData?.toString();
    heard.push({
      topic,
      json: JSON.parse(payload.toString()) as Record<string, unknown>,
      ...(correlation ? { correlation } : {}),
    });
  });
  await office.subscribeAsync(
    [`${PREFIX}/+/status`, `${PREFIX}/+/telemetry`, `${PREFIX}/+/events/#`, 'backoffice/answers'],
    { qos: 1 },
  );
  fleet = new FleetSimulator({
    url: broker.url,
    devices: DEVICES,
    topicPrefix: PREFIX,
    keepaliveSec: 30,
    sessionExpirySec: 3600,
    // Short backoff so the restart case ends soon; the cap still bounds each device's wait.
    reconnect: { baseMs: 200, capMs: 2000, stableMs: 60_000 },
    offlineQueue: { maxEvents: 100, maxBytes: 1 << 20 },
    telemetryIntervalMs: 500,
    startPerSecond: 500,
    einvalPerTick: 0,
  });
  await fleet.start();
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await office?.endAsync();
  await broker?.stop();
});

describe('the fleet simulator on a real mosquitto', () => {
  it('brings every device online with its own id, retained status and session', async () => {
    await waitUntil(
      () => [...statusByDevice().values()].filter((state) => state === 'online').length === DEVICES,
      () => `${DEVICES} online statuses (have ${statusByDevice().size})`,
    );
    expect([...statusByDevice().keys()].sort()).toEqual(ids);
    expect(fleet.onlineCount()).toBe(DEVICES);
    for (const message of heard.filter((m) => m.topic.endsWith('/status'))) {
      expect(validators.status(message.json), describeValidationErrors(validators.status.errors)).toBe(true);
      expect(message.json.deviceId).toBe(deviceOf(message.topic));
    }
    // The retained status is there for a client arriving late, too.
    const late = await connectAsync(broker.url, { protocolVersion: 5, clientId: 'late-dashboard' });
    const retained = new Set<string>();
    late.on('message', (topic, payload, packet) => {
      if (packet.retain && JSON.parse(payload.toString()).state === 'online') retained.add(deviceOf(topic));
    });
    await late.subscribeAsync(`${PREFIX}/+/status`, { qos: 1 });
    await waitUntil(
      () => retained.size === DEVICES,
      () => `retained online statuses (${retained.size})`,
    );
    await late.endAsync();
  });

  it('sends telemetry from every device that matches the telemetry schema', async () => {
    const telemetryFrom = () =>
      new Set(heard.filter((m) => m.topic.endsWith('/telemetry')).map((m) => deviceOf(m.topic)));
    await waitUntil(
      () => telemetryFrom().size === DEVICES,
      () => `telemetry from every device (${telemetryFrom().size})`,
    );
    for (const message of heard.filter((m) => m.topic.endsWith('/telemetry'))) {
      expect(validators.telemetry(message.json), describeValidationErrors(validators.telemetry.errors)).toBe(true);
      expect(Object.keys(message.json.streams as object).sort()).toEqual(['main', 'pip']);
    }
  });

  it('reports an EINVAL as an errno event diagnosed by the agent, valid against its schema', async () => {
    const device = fleet.devices[7]!;
    const injected = device.injectEinval();
    const topic = device.topics.event('errno');
    await waitUntil(
      () => heard.some((m) => m.topic === topic),
      () => `the errno event on ${topic}`,
    );
    const event = heard.find((m) => m.topic === topic)!.json;
    expect(validators.errno(event), describeValidationErrors(validators.errno.errors)).toBe(true);
    expect(event).toMatchObject({ errno: 'EINVAL', errnoNumber: -22, cause: injected.cause, stream: injected.stream });
    // diagnose() found a specific cause, not its fallbacks.
    expect(['unexplained', 'invalid-argument']).not.toContain(event.cause);
  });

  it('brings every device back after a broker restart, each within its backoff', async () => {
    const connectsBefore = fleet.devices.map((d) => d.connectTimes.length);
    const heardBefore = heard.length;
    await broker.restart();
    await waitUntil(
      () => fleet.devices.every((d, i) => d.connectTimes.length > connectsBefore[i]! && d.link.connected),
      () =>
        `every device reconnected (${fleet.devices.filter((d, i) => d.connectTimes.length > connectsBefore[i]!).length})`,
    );
    // Each device announced itself again after the restart.
    await waitUntil(
      () =>
        new Set(
          heard
            .slice(heardBefore)
            .filter((m) => m.topic.endsWith('/status') && m.json.state === 'online')
            .map((m) => deviceOf(m.topic)),
        ).size === DEVICES,
      () => 'a fresh online status from every device',
    );
    expect(fleet.onlineCount()).toBe(DEVICES);
  });

  it('answers a command fanned out to every device', async () => {
    const before = heard.length;
    for (const id of ids) {
      office.publish(`${PREFIX}/${id}/cmd/status`, JSON.stringify({ id: `fanout-${id}` }), {
        qos: 1,
        properties: { responseTopic: 'backoffice/answers', correlationData: Buffer.from(id) },
      });
    }
    const answers = () => heard.slice(before).filter((m) => m.topic === 'backoffice/answers');
    await waitUntil(
      () => answers().length >= DEVICES,
      () => `${DEVICES} answers (${answers().length})`,
    );
    expect(
      answers()
        .map((m) => m.correlation)
        .sort(),
    ).toEqual(ids);
    for (const answer of answers()) {
      expect(validators.response(answer.json), describeValidationErrors(validators.response.errors)).toBe(true);
      expect(answer.json).toMatchObject({ id: `fanout-${answer.correlation}`, status: 'ok' });
      expect((answer.json.data as { deviceId: string }).deviceId).toBe(answer.correlation);
    }
  });
});
