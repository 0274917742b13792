/**
 * Row 4, footprint: resident memory and open fds of `dmx-agent run` with 1, 4
 * and 8 streams (simulated receiver, discard sinks, connected to a real
 * mosquitto), against a bare Node process that has loaded MQTT.js and
 * connected to the same broker; the growth per stream from the 1- and
 * 8-stream runs. Every process is read once its streams are up and it has
 * settled for a moment.
 */

import {
  agentConfig,
  benchStream,
  LIVENESS_MS,
  openFds,
  rssBytes,
  sleep,
  spawnAgent,
  spawnNode,
  startBroker,
  tempDir,
  waitFor,
  writeJsonFile,
} from './lib/env.mjs';
import { alternate, median, metric } from './lib/harness.mjs';

const STREAM_COUNTS = [1, 4, 8];
const MIB = 1024 * 1024;

const BARE_MQTT = `
import { connectAsync } from 'mqtt';
const client = await connectAsync(process.argv[1], { protocolVersion: 5, clientId: 'bench-bare-' + process.pid });
process.stdout.write('connected\\n');
process.on('SIGTERM', async () => { await client.endAsync(); process.exit(0); });
setInterval(() => {}, 1 << 30);
`;

async function agentRound(brokerUrl, dir, streams, settleMs) {
  const deviceId = `bench-footprint-${streams}-${process.pid}`;
  const configFile = writeJsonFile(
    dir,
    `agent-${streams}.json`,
    agentConfig({
      deviceId,
      streams: Array.from({ length: streams }, (_, i) => benchStream(`s${i}`)),
      mqtt: { url: brokerUrl },
    }),
  );
  const agent = spawnAgent(configFile);
  try {
    await waitFor(
      () => agent.streaming() >= streams || agent.child.exitCode !== null,
      LIVENESS_MS,
      `${streams} streams streaming`,
    );
    if (agent.child.exitCode !== null) throw new Error(`the agent exited: ${agent.stderr()}`);
    await sleep(settleMs);
    return { rss: rssBytes(agent.child.pid), fds: openFds(agent.child.pid) };
  } finally {
    await agent.stop();
  }
}

async function bareRound(brokerUrl, settleMs) {
  const bare = spawnNode(BARE_MQTT, [brokerUrl]);
  try {
    await waitFor(
      () => bare.stdout().includes('connected') || bare.child.exitCode !== null,
      LIVENESS_MS,
      'the bare MQTT.js process',
    );
    if (bare.child.exitCode !== null) throw new Error(`the bare process exited: ${bare.stderr()}`);
    await sleep(settleMs);
    return { rss: rssBytes(bare.child.pid), fds: openFds(bare.child.pid) };
  } finally {
    await bare.stop();
  }
}

export async function run({ smoke = false, rounds } = {}) {
  const roundCount = rounds ?? 3;
  const settleMs = smoke ? 200 : 1500;
  const broker = await startBroker();
  const { dir, cleanup } = tempDir('footprint');
  try {
    const variants = { bare: () => bareRound(broker.url, settleMs) };
    for (const n of STREAM_COUNTS) variants[`agent${n}`] = () => agentRound(broker.url, dir, n, settleMs);
    const samples = await alternate(variants, roundCount);
    const rss = (name) => median(samples[name].map((s) => s.rss)) / MIB;
    const fds = (name) => median(samples[name].map((s) => s.fds));
    const first = STREAM_COUNTS[0];
    const last = STREAM_COUNTS[STREAM_COUNTS.length - 1];
    const span = last - first;
    return {
      id: 4,
      title: 'Footprint (RSS, open fds)',
      rounds: roundCount,
      baseline: 'a bare Node process that has loaded MQTT.js and connected to the same broker, alternating',
      metrics: [
        ...STREAM_COUNTS.map((n) =>
          metric(`RSS, ${n} stream${n > 1 ? 's' : ''}`, 'MiB', rss(`agent${n}`), rss('bare')),
        ),
        metric('RSS growth per stream', 'MiB', (rss(`agent${last}`) - rss(`agent${first}`)) / span),
        ...STREAM_COUNTS.map((n) =>
          metric(`open fds, ${n} stream${n > 1 ? 's' : ''}`, '', fds(`agent${n}`), fds('bare')),
        ),
        metric('open fds per stream', '', (fds(`agent${last}`) - fds(`agent${first}`)) / span),
      ],
      reading:
        'Ratio = agent / bare MQTT.js process: how many times the memory (fds) of the least a Node MQTT client costs. ' +
        'The per-stream growth has no baseline: it is what each further stream adds.',
      notes: ['simulated receiver, discard sinks, 6-buffer pools', `medians of ${roundCount} rounds per variant`],
      samples,
    };
  } finally {
    cleanup();
    await broker.stop();
  }
}
