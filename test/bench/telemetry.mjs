/**
 * Row 7, telemetry cost: what one device sends on its topics (topic + payload
 * bytes, as a subscriber to `stb/<device>/#` receives them) at steady state,
 * scaled to a minute at the default 10 s telemetry interval, and per health
 * level change (a continuity gap injected into the simulated stream: the
 * stream goes degraded, then ok again; each change sends telemetry at once
 * and its events). The agent runs in this process so that, at every message,
 * the baseline can be taken from the same facts: the agent's raw health
 * objects (AgentHealth and each stream's status and StreamHealth) as plain
 * JSON, which is what a publisher without the compact payload would send.
 */
import { connectAsync } from 'mqtt';
import pino from 'pino';
import { loadConfig } from '../../dist/agent/config/load.js';
import { Controller } from '../../dist/agent/controller.js';
import {
  agentConfig,
  benchStream,
  ES_PID,
  LIVENESS_MS,
  sleep,
  startBroker,
  tempDir,
  waitFor,
  writeJsonFile,
} from './lib/env.mjs';
import { median, metric } from './lib/harness.mjs';

const DEFAULT_TELEMETRY_MS = 10_000;

/** An agent in this process, and every byte its device topics carry to a subscriber. */
async function startDevice(brokerUrl, dir, name, telemetryIntervalMs) {
  const deviceId = `bench-tele-${name}-${process.pid}`;
  const file = writeJsonFile(
    dir,
    `${name}.json`,
    agentConfig({ deviceId, streams: [benchStream('main')], mqtt: { url: brokerUrl, telemetryIntervalMs } }),
  );
  const config = loadConfig({ file, env: {} });
  const controller = new Controller({ config, logger: pino({ level: 'silent' }), env: {} });
  const rawJsonBytes = () =>
    Buffer.byteLength(
      JSON.stringify({
        agent: controller.health,
        streams: controller.streams().map((s) => ({ status: s.status(), health: s.health })),
      }),
    );
  const messages = [];
  const fleet = await connectAsync(brokerUrl, { protocolVersion: 5, clientId: `bench-fleet-${name}-${process.pid}` });
  fleet.on('message', (topic, payload, packet) => {
    if (packet.retain) return;
    const kind = topic.slice(`stb/${deviceId}/`.length);
    const json = JSON.parse(payload.toString());
    const topicBytes = Buffer.byteLength(topic);
    messages.push({
      kind,
      at: Date.now(),
      bytes: topicBytes + payload.length,
      // The baseline of a telemetry message: the raw health now, on the same topic.
      rawBytes: kind === 'telemetry' ? topicBytes + rawJsonBytes() : topicBytes + payload.length,
      level: kind === 'telemetry' ? json.streams?.main?.level : undefined,
    });
  });
  await fleet.subscribeAsync(`stb/${deviceId}/#`, { qos: 1 });
  controller.start();
  return {
    controller,
    messages,
    async stop() {
      await controller.stopGracefully();
      await fleet.endAsync(true);
    },
  };
}

const sum = (list, field) => list.reduce((total, m) => total + m[field], 0);

async function steadyState(brokerUrl, dir, windowMs) {
  const device = await startDevice(brokerUrl, dir, 'steady', 1000);
  try {
    // Steady: the stream is up and telemetry carries its health.
    await waitFor(
      () => device.messages.some((m) => m.kind === 'telemetry' && m.level === 'ok'),
      LIVENESS_MS,
      'telemetry with the stream healthy',
    );
    await sleep(1500);
    const from = device.messages.length;
    const started = Date.now();
    await sleep(windowMs);
    const elapsed = Date.now() - started;
    const window = device.messages.slice(from);
    const telemetry = window.filter((m) => m.kind === 'telemetry');
    const other = window.filter((m) => m.kind !== 'telemetry');
    const perMinute = (bytesPerTick, otherBytes) =>
      bytesPerTick * (60_000 / DEFAULT_TELEMETRY_MS) + (otherBytes * 60_000) / elapsed;
    const tickBytes = median(telemetry.map((m) => m.bytes));
    const tickRaw = median(telemetry.map((m) => m.rawBytes));
    return {
      ticks: telemetry.length,
      tickBytes,
      tickRaw,
      perMinute: perMinute(tickBytes, sum(other, 'bytes')),
      perMinuteRaw: perMinute(tickRaw, sum(other, 'rawBytes')),
    };
  } finally {
    await device.stop();
  }
}

async function healthChanges(brokerUrl, dir, injections) {
  // Periodic telemetry far apart: every telemetry message in the window is one sent for a change.
  const device = await startDevice(brokerUrl, dir, 'changes', 600_000);
  try {
    await waitFor(() => device.controller.streams()[0]?.health?.level === 'ok', LIVENESS_MS, 'the stream healthy');
    await sleep(1500);
    const from = device.messages.length;
    const changedTelemetry = () => device.messages.slice(from).filter((m) => m.kind === 'telemetry' && m.level);
    for (let i = 0; i < injections; i++) {
      const seen = changedTelemetry().length;
      device.controller.media.simulation.injectFault(0, { kind: 'cc-gap', pid: ES_PID, count: 1 });
      // Degraded, then ok again: two changes, each sent at once.
      await waitFor(() => changedTelemetry().length >= seen + 2, LIVENESS_MS, 'degraded and back to ok');
    }
    await sleep(500);
    const window = device.messages.slice(from);
    const changes = changedTelemetry().length;
    return {
      changes,
      bytes: sum(window, 'bytes') / changes,
      rawBytes: sum(window, 'rawBytes') / changes,
      kinds: [...new Set(window.map((m) => m.kind))],
    };
  } finally {
    await device.stop();
  }
}

export async function run({ smoke = false, rounds } = {}) {
  const injections = rounds ?? 3;
  const windowMs = smoke ? 2500 : 8000;
  const broker = await startBroker();
  const { dir, cleanup } = tempDir('telemetry');
  try {
    const steady = await steadyState(broker.url, dir, windowMs);
    const change = await healthChanges(broker.url, dir, injections);
    return {
      id: 7,
      title: 'Telemetry cost per device',
      rounds: injections,
      baseline: "the same facts as plain JSON of the agent's raw health objects, taken at each message",
      metrics: [
        metric('one telemetry message (1 stream)', 'B', steady.tickBytes, steady.tickRaw),
        metric(
          `steady state at the default ${DEFAULT_TELEMETRY_MS / 1000} s interval`,
          'B/min',
          steady.perMinute,
          steady.perMinuteRaw,
        ),
        metric('per health level change (telemetry + events)', 'B', change.bytes, change.rawBytes),
      ],
      reading:
        'Ratio = compact payload / raw health JSON: the share of the naive bytes the contract sends. Topic bytes are ' +
        'counted, MQTT framing is not.',
      notes: [
        `steady: ${steady.ticks} telemetry messages at 1 s over ${windowMs} ms, scaled to the default interval`,
        `changes: ${change.changes} (${injections} injected CC gaps), topics: ${change.kinds.join(', ')}`,
      ],
      samples: { steady, change },
    };
  } finally {
    cleanup();
    await broker.stop();
  }
}
