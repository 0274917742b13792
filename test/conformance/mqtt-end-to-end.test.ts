// The whole product on both backends: `dmx-agent run` as systemd starts it,
// connected to a real mosquitto on the same machine (inside the VM on the
// real-kernel run, where vidtv and vim2m are the devices). One box with two
// streams on vidtv's audio PID: `audio` into vim2m with a pool that fits its
// OUTPUT format, and `misfit` whose buffers are larger than vim2m's sizeimage,
// so every import is refused with EINVAL. The fleet must see the box online
// with its capabilities, telemetry with real traffic, the EINVAL diagnosed
// with its cause and remedy, a command answered, and the box go offline on
// SIGTERM.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAsync, type IPublishPacket, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { compilePayloadValidators, describeValidationErrors } from '../../agent/mqtt/payloads.js';
import {
  DECODER_FORMAT,
  MISFIT_SUPERVISION,
  misfitStreamJson,
  simConfigJson,
  streamJson,
} from '../support/agent-env.js';
import { backend, waitFor } from '../support/media-env.js';
import { type Broker, startMosquitto } from '../support/mosquitto.js';

const cli = fileURLToPath(new URL('../../dist/agent/cli.js', import.meta.url));
const validators = compilePayloadValidators();
/** Liveness only: TCG emulation in the VM is slow to start node and the broker. */
const LIVENESS_MS = 45_000;

interface Received {
  topic: string;
  json: Record<string, unknown>;
  packet: IPublishPacket;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function valid(name: keyof typeof validators, json: unknown): void {
  const validate = validators[name];
  expect(validate(json), describeValidationErrors(validate.errors)).toBe(true);
}

function runAgent(configFile: string): { child: ChildProcess; exit: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, [cli, 'run', '--config', configFile], {
    env: { ...process.env, NOTIFY_SOCKET: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, exit, stderr: () => stderr };
}

describe('the agent and the fleet over a real broker', () => {
  it('reports traffic and a diagnosed import EINVAL, answers a command, and goes offline on SIGTERM', async () => {
    const broker: Broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const dir = mkdtempSync(join(tmpdir(), 'dmx-agent-e2e-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));

    const deviceId = `e2e-${backend}-${process.pid}`;
    const base = `stb/${deviceId}`;
    const fleet: MqttClient = await connectAsync(broker.url, { protocolVersion: 5, clientId: `fleet-${deviceId}` });
    cleanups.push(() => fleet.endAsync(true));
    const messages: Received[] = [];
    fleet.on('message', (topic, payload, packet) => {
      if (topic.startsWith(`${base}/cmd/`)) return;
      messages.push({ topic, json: JSON.parse(payload.toString()) as Record<string, unknown>, packet });
    });
    // Retain As Published: live deliveries keep the retain flag, so the test sees what is retained.
    await fleet.subscribeAsync(`${base}/#`, { qos: 1, rap: true });
    const find = (topic: string, where: (json: Record<string, unknown>) => boolean = () => true) =>
      messages.find((m) => m.topic === topic && where(m.json));

    const configFile = join(dir, 'agent.json');
    const config = simConfigJson([streamJson({ id: 'audio' }), misfitStreamJson()], {
      deviceId,
      log: { level: 'info', pretty: 'never' },
      // The agent would refuse the misfit pool before any ioctl; this test wants the kernel's answer.
      supervision: MISFIT_SUPERVISION,
      mqtt: { enabled: true, url: broker.url, telemetryIntervalMs: 1000 },
    });
    writeFileSync(configFile, JSON.stringify(config));
    const agent = runAgent(configFile);
    cleanups.push(() => {
      agent.child.kill('SIGKILL');
    });

    const online = await waitFor(() => find(`${base}/status`, (j) => j.state === 'online'), LIVENESS_MS, 'online');
    valid('status', online.json);
    expect(online.packet.retain).toBe(true);
    const capabilities = await waitFor(() => find(`${base}/capabilities`), LIVENESS_MS, 'the capabilities');
    valid('capabilities', capabilities.json);
    expect(capabilities.json).toMatchObject({ backend, mediaPathUsable: true });

    // Real traffic: on the kernel this is vidtv's audio elementary stream through demux0 into vim2m.
    const telemetry = await waitFor(
      () =>
        find(`${base}/telemetry`, (j) => {
          const audio = (j.streams as Record<string, { bps?: number; buffers?: number }> | undefined)?.audio;
          return (audio?.bps ?? 0) > 0;
        }),
      LIVENESS_MS,
      'telemetry with traffic on the audio stream',
    );
    valid('telemetry', telemetry.json);
    expect(telemetry.packet.qos).toBe(0);

    const einval = await waitFor(
      () => find(`${base}/events/errno`, (j) => j.stream === 'misfit'),
      LIVENESS_MS,
      "the misfit stream's import EINVAL",
    );
    valid('errno', einval.json);
    expect(einval.packet.qos).toBe(1);
    expect(einval.json).toMatchObject({
      stream: 'misfit',
      ioctl: 'VIDIOC_QBUF',
      errno: 'EINVAL',
      cause: 'import-bytesused-above-sizeimage',
    });
    // The remedy carries the numbers: the decoder's sizeimage and a pool buffer that fits it.
    expect(String(einval.json.remedy)).toMatch(/12288/);
    expect(String(einval.json.remedy)).toMatch(/12220/);
    expect(DECODER_FORMAT).toMatchObject({ width: 64, height: 64 });

    // A command from the fleet, answered on the MQTT 5 response topic with the correlation data.
    await fleet.publishAsync(`${base}/cmd/streams`, JSON.stringify({ id: 'e2e-streams' }), {
      qos: 1,
      properties: { responseTopic: `${base}/response/e2e`, correlationData: Buffer.from('e2e-corr') },
    });
    const answer = await waitFor(() => find(`${base}/response/e2e`), LIVENESS_MS, 'the answer to streams');
    valid('response', answer.json);
    expect(answer.json).toMatchObject({ id: 'e2e-streams', status: 'ok' });
    expect(answer.packet.properties?.correlationData?.toString()).toBe('e2e-corr');
    const streams = answer.json.data as Array<{ stream: string; state: string }>;
    expect(streams.map((s) => s.stream).sort()).toEqual(['audio', 'misfit']);
    expect(streams.find((s) => s.stream === 'audio')?.state, JSON.stringify(streams)).toBe('streaming');

    agent.child.kill('SIGTERM');
    expect(await agent.exit, agent.stderr()).toBe(0);
    await waitFor(() => find(`${base}/status`, (j) => j.state === 'offline'), LIVENESS_MS, 'the offline status');
  });
});
