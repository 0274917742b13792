/**
 * Row 6, commands: round-trip latency of `status` and `streams` over a real
 * mosquitto on loopback, from publishing the request (MQTT 5 response topic
 * and correlation data) to receiving the answer, while the agent streams and
 * sends telemetry every second. Baseline: the same request/response through
 * the same broker to a bare MQTT.js responder process that answers at once.
 * Requests go one at a time; batches of each kind alternate.
 */
import { performance } from 'node:perf_hooks';
import { connectAsync } from 'mqtt';
import {
  agentConfig,
  benchStream,
  LIVENESS_MS,
  spawnAgent,
  spawnNode,
  startBroker,
  tempDir,
  waitFor,
  writeJsonFile,
} from './lib/env.mjs';
import { alternate, metric, percentile } from './lib/harness.mjs';

const ECHO_RESPONDER = `
import { connectAsync } from 'mqtt';
const [url, filter] = process.argv.slice(1);
const client = await connectAsync(url, { protocolVersion: 5, clientId: 'bench-echo-' + process.pid });
client.on('message', (topic, payload, packet) => {
  const { id } = JSON.parse(payload.toString());
  const properties = packet.properties ?? {};
  client.publish(properties.responseTopic, JSON.stringify({ id, status: 'ok', data: {} }), {
    qos: 1,
    properties: properties.correlationData ? { correlationData: properties.correlationData } : {},
  });
});
await client.subscribeAsync(filter, { qos: 1 });
process.stdout.write('ready\\n');
process.on('SIGTERM', async () => { await client.endAsync(); process.exit(0); });
`;

export async function run({ smoke = false, rounds } = {}) {
  const roundCount = rounds ?? 5;
  const perBatch = smoke ? 3 : 40;
  const broker = await startBroker();
  const { dir, cleanup } = tempDir('commands');
  const deviceId = `bench-cmd-${process.pid}`;
  const configFile = writeJsonFile(
    dir,
    'agent.json',
    agentConfig({ deviceId, streams: [benchStream('main')], mqtt: { url: broker.url, telemetryIntervalMs: 1000 } }),
  );
  const agent = spawnAgent(configFile);
  const echoBase = `bench/echo-${process.pid}`;
  const echo = spawnNode(ECHO_RESPONDER, [broker.url, `${echoBase}/cmd/+`]);
  const fleet = await connectAsync(broker.url, { protocolVersion: 5, clientId: `bench-fleet-${process.pid}` });
  // The measuring client must not add Nagle delays of its own (MQTT.js leaves them on).
  fleet.stream.setNoDelay?.(true);
  const responseTopic = `bench/fleet-${process.pid}/response`;
  const pending = new Map();
  let telemetrySeen = 0;
  fleet.on('message', (topic, payload, packet) => {
    if (topic.endsWith('/telemetry')) {
      telemetrySeen++;
      return;
    }
    const key = packet.properties?.correlationData?.toString();
    const resolve = key === undefined ? undefined : pending.get(key);
    if (resolve) {
      pending.delete(key);
      resolve(JSON.parse(payload.toString()));
    }
  });
  await fleet.subscribeAsync([responseTopic, `stb/${deviceId}/telemetry`], { qos: 1 });
  let sequence = 0;

  const request = async (topic, name) => {
    const id = `${name}-${sequence++}`;
    const answered = new Promise((resolve) => pending.set(id, resolve));
    const started = performance.now();
    fleet.publish(topic, JSON.stringify({ id }), {
      qos: 1,
      properties: { responseTopic, correlationData: Buffer.from(id) },
    });
    const timeout = new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`no answer to ${name} within ${LIVENESS_MS} ms`)), LIVENESS_MS).unref(),
    );
    const answer = await Promise.race([answered, timeout]);
    const ms = performance.now() - started;
    if (answer.status !== 'ok') throw new Error(`${name} answered ${JSON.stringify(answer)}`);
    return ms;
  };
  const batch = (topic, name) => async () => {
    const times = [];
    for (let i = 0; i < perBatch; i++) times.push(await request(topic, name));
    return times;
  };

  try {
    await waitFor(() => agent.streaming() >= 1 || agent.child.exitCode !== null, LIVENESS_MS, 'the stream');
    if (agent.child.exitCode !== null) throw new Error(`the agent exited: ${agent.stderr()}`);
    await waitFor(() => echo.stdout().includes('ready') || echo.child.exitCode !== null, LIVENESS_MS, 'the echo');
    if (echo.child.exitCode !== null) throw new Error(`the echo responder exited: ${echo.stderr()}`);
    // Telemetry is running before anything is timed.
    await waitFor(() => telemetrySeen >= 1, LIVENESS_MS, 'telemetry');
    // One of each first, untimed: the agent's first answer compiles schemas and warms caches.
    await request(`stb/${deviceId}/cmd/status`, 'status');
    await request(`stb/${deviceId}/cmd/streams`, 'streams');
    await request(`${echoBase}/cmd/status`, 'echo');
    const batches = await alternate(
      {
        status: batch(`stb/${deviceId}/cmd/status`, 'status'),
        streams: batch(`stb/${deviceId}/cmd/streams`, 'streams'),
        echo: batch(`${echoBase}/cmd/status`, 'echo'),
      },
      roundCount,
    );
    const all = (name) => batches[name].flat();
    const p = (name, q) => percentile(all(name), q);
    return {
      id: 6,
      title: 'Command round trip on loopback (telemetry every 1 s)',
      rounds: roundCount,
      baseline: 'a bare MQTT.js responder process answering at once through the same broker; batches alternate',
      metrics: [
        metric('status p50', 'ms', p('status', 50), p('echo', 50)),
        metric('status p99', 'ms', p('status', 99), p('echo', 99)),
        metric('streams p50', 'ms', p('streams', 50), p('echo', 50)),
        metric('streams p99', 'ms', p('streams', 99), p('echo', 99)),
      ],
      reading:
        'Ratio = agent / bare responder at the same percentile: the broker and the two hops are in both, so what ' +
        'is above 1x is the agent (routing, validation, the answer) while it also streams.',
      notes: [`${roundCount} rounds of ${perBatch} sequential requests per kind; percentiles over all of them`],
      samples: batches,
    };
  } finally {
    await fleet.endAsync(true);
    await echo.stop();
    await agent.stop();
    cleanup();
    await broker.stop();
  }
}
