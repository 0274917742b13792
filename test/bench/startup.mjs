/**
 * Row 5, start-up: from spawning `dmx-agent run` (one simulated stream) to a
 * subscriber receiving its retained online status, against spawning a bare
 * Node script that imports MQTT.js, connects to the same broker and publishes
 * a retained online status. The same subscriber times both.
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
import { alternate, median, metric } from './lib/harness.mjs';

const BARE_PUBLISH = `
import { connectAsync } from 'mqtt';
const [url, topic] = process.argv.slice(1);
const client = await connectAsync(url, { protocolVersion: 5, clientId: 'bench-bare-' + process.pid });
await client.publishAsync(topic, JSON.stringify({ state: 'online' }), { qos: 1, retain: true });
process.on('SIGTERM', async () => { await client.endAsync(); process.exit(0); });
setInterval(() => {}, 1 << 30);
`;

export async function run({ smoke = false, rounds } = {}) {
  const roundCount = rounds ?? (smoke ? 1 : 5);
  const broker = await startBroker();
  const { dir, cleanup } = tempDir('startup');
  const fleet = await connectAsync(broker.url, { protocolVersion: 5, clientId: `bench-fleet-${process.pid}` });
  const onlineAt = new Map();
  fleet.on('message', (topic, payload) => {
    try {
      if (JSON.parse(payload.toString()).state === 'online' && !onlineAt.has(topic)) {
        onlineAt.set(topic, performance.now());
      }
    } catch {
      // not a status
    }
  });
  await fleet.subscribeAsync('stb/+/status', { qos: 1 });
  let sequence = 0;

  const agentRound = async () => {
    const deviceId = `bench-start-${process.pid}-${sequence++}`;
    const topic = `stb/${deviceId}/status`;
    const configFile = writeJsonFile(
      dir,
      `${deviceId}.json`,
      agentConfig({ deviceId, streams: [benchStream('main')], mqtt: { url: broker.url } }),
    );
    const started = performance.now();
    const agent = spawnAgent(configFile);
    try {
      await waitFor(() => onlineAt.has(topic) || agent.child.exitCode !== null, LIVENESS_MS, 'the online status');
      if (!onlineAt.has(topic)) throw new Error(`the agent exited: ${agent.stderr()}`);
      return { ms: onlineAt.get(topic) - started };
    } finally {
      await agent.stop();
    }
  };

  const bareRound = async () => {
    const topic = `stb/bench-bare-${process.pid}-${sequence++}/status`;
    const started = performance.now();
    const bare = spawnNode(BARE_PUBLISH, [broker.url, topic]);
    try {
      await waitFor(() => onlineAt.has(topic) || bare.child.exitCode !== null, LIVENESS_MS, 'the bare online status');
      if (!onlineAt.has(topic)) throw new Error(`the bare process exited: ${bare.stderr()}`);
      return { ms: onlineAt.get(topic) - started };
    } finally {
      await bare.stop();
    }
  };

  try {
    const samples = await alternate({ agent: agentRound, bare: bareRound }, roundCount);
    const ms = (name) => median(samples[name].map((s) => s.ms));
    return {
      id: 5,
      title: 'Start-up to retained online status',
      rounds: roundCount,
      baseline:
        'a bare Node script: import MQTT.js, connect, publish a retained status to the same broker; alternating',
      metrics: [
        metric('process start to online received', 'ms', ms('agent'), ms('bare')),
        metric('agent start-up beyond a bare MQTT client', 'ms', ms('agent') - ms('bare')),
      ],
      reading:
        'Ratio = agent / bare MQTT.js client: how many times as long the agent takes to say it is online as the least ' +
        'a Node process needs to do the same (node start, module load and connect are in both).',
      notes: ['one simulated stream configured'],
      samples,
    };
  } finally {
    await fleet.endAsync(true);
    cleanup();
    await broker.stop();
  }
}
