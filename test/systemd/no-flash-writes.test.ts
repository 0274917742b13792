// A receiver's flash wears out and its root filesystem is read-only: in steady
// state the agent must write nothing to storage. `dmx-agent run` (simulated
// receiver, real mosquitto) runs under strace, which records every path the
// agent opens for writing, creates, renames or removes; /proc/<pid>/io's
// write_bytes says what reached the storage layer. The only file the agent may
// write is its config override, when the fleet sends config.set.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { simConfigJson, streamJson } from '../support/agent-env.js';
import { waitFor } from '../support/media-env.js';
import { type Broker, startMosquitto } from '../support/mosquitto.js';

const cli = fileURLToPath(new URL('../../dist/agent/cli.js', import.meta.url));
const LIVENESS_MS = 30_000;
/** Telemetry periods of steady state to watch (each a full health sample, telemetry and pump cycle). */
const STEADY_PERIODS = 3;

/** Syscalls that change what is stored under a path. */
const TRACED = 'openat,open,creat,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,truncate,link,symlink';
const WRITE_FLAGS = /O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND/;

interface PathWrite {
  pid: number;
  syscall: string;
  path: string;
  line: string;
}

/** The successful calls in an strace -f log that write under a path (opens only with write flags). */
function pathWrites(log: string): PathWrite[] {
  const writes: PathWrite[] = [];
  for (const line of log.split('\n')) {
    const match = /^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)/.exec(line);
    if (match === null || Number(match[4]) < 0) continue;
    const [, pid, syscall, args] = match as unknown as [string, string, string, string];
    if ((syscall === 'open' || syscall === 'openat') && !WRITE_FLAGS.test(args)) continue;
    for (const path of args.matchAll(/"((?:[^"\\]|\\.)*)"/g)) {
      writes.push({ pid: Number(pid), syscall, path: path[1]!, line });
    }
  }
  return writes;
}

function writeBytes(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return Number(/^write_bytes: (\d+)$/m.exec(io)?.[1]);
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

describe('storage writes of a running agent', () => {
  it('writes nothing in steady state, and only its override file on config.set', async () => {
    const broker: Broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const dir = mkdtempSync(join(tmpdir(), 'dmx-flash-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const overrideFile = join(dir, 'state', 'override.json');
    mkdirSync(dirname(overrideFile), { mode: 0o700 });
    const configFile = join(dir, 'agent.json');
    const deviceId = `flash-${process.pid}`;
    const base = `stb/${deviceId}`;
    writeFileSync(
      configFile,
      JSON.stringify(
        simConfigJson([streamJson()], {
          deviceId,
          overrideFile,
          log: { level: 'info', pretty: 'never' },
          mqtt: { enabled: true, url: broker.url, telemetryIntervalMs: 1000 },
        }),
      ),
    );

    const fleet: MqttClient = await connectAsync(broker.url, { protocolVersion: 5 });
    cleanups.push(() => fleet.endAsync(true));
    const telemetry: number[] = [];
    const answers: Array<Record<string, unknown>> = [];
    let online = false;
    fleet.on('message', (topic, payload) => {
      const json = JSON.parse(payload.toString()) as Record<string, unknown>;
      if (topic === `${base}/telemetry`) telemetry.push(Date.now());
      else if (topic === `${base}/status` && json.state === 'online') online = true;
      else if (topic.startsWith(`${base}/response/`)) answers.push(json);
    });
    await fleet.subscribeAsync([`${base}/status`, `${base}/telemetry`, `${base}/response/#`], { qos: 1 });

    const trace = join(dir, 'strace.log');
    const child: ChildProcess = spawn(
      'strace',
      ['-f', '-qq', '-e', `trace=${TRACED}`, '-o', trace, process.execPath, cli, 'run', '--config', configFile],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NOTIFY_SOCKET: '' } },
    );
    const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    cleanups.push(() => {
      child.kill('SIGKILL');
    });
    // pino puts the process id in every line: the agent is strace's child, not the spawned process.
    let agentPid = 0;
    child.stdout?.on('data', (chunk: Buffer) => {
      const pid = /"pid":(\d+)/.exec(chunk.toString());
      if (agentPid === 0 && pid) agentPid = Number(pid[1]);
    });

    await waitFor(() => online && agentPid !== 0, LIVENESS_MS, 'the agent online');
    // Steady state: streaming and reporting.
    const seen = telemetry.length;
    await waitFor(() => telemetry.length >= seen + 1, LIVENESS_MS, 'the first telemetry');
    const traceAtSteady = readFileSync(trace, 'utf8').length;
    const bytesAtSteady = writeBytes(agentPid);
    await waitFor(() => telemetry.length >= seen + 1 + STEADY_PERIODS, LIVENESS_MS, 'steady-state telemetry');
    const steadyLog = readFileSync(trace, 'utf8').slice(traceAtSteady);
    const bytesSteady = writeBytes(agentPid) - bytesAtSteady;

    // The fleet changes a setting: the override file is written (atomically: a temporary file, then rename).
    await fleet.publishAsync(
      `${base}/cmd/config.set`,
      JSON.stringify({ id: 'flash-1', args: { values: { 'health.intervalMs': 500 } } }),
      { qos: 1 },
    );
    await waitFor(() => answers.find((a) => a.id === 'flash-1'), LIVENESS_MS, 'the config.set answer');
    expect(answers.find((a) => a.id === 'flash-1')).toMatchObject({ status: 'ok' });
    const bytesAfterSet = writeBytes(agentPid) - bytesAtSteady;

    child.stdout?.removeAllListeners('data');
    process.kill(agentPid, 'SIGTERM');
    expect(await exit).toBe(0);
    const whole = pathWrites(readFileSync(trace, 'utf8'));
    console.log(
      `storage writes: steady state ${STEADY_PERIODS} telemetry periods: write_bytes ${bytesSteady}, ` +
        `${pathWrites(steadyLog).length} path writes; after config.set: write_bytes ${bytesAfterSet}; ` +
        `whole run: ${whole.length} path writes: ${[...new Set(whole.map((w) => `${w.syscall} ${w.path}`))].join(', ')}`,
    );

    expect(pathWrites(steadyLog)).toEqual([]);
    expect(bytesSteady).toBe(0);
    // Over the whole run, start and stop included: devices, and the override file's directory only.
    // (The simulation exports a buffer by re-opening its memfd through /proc/self/fd: memory, not storage.)
    const outside = whole.filter(
      (w) =>
        !w.path.startsWith('/dev/') &&
        !w.path.startsWith('/proc/self/fd/') &&
        dirname(w.path) !== dirname(overrideFile),
    );
    expect(outside).toEqual([]);
    // The control: the override write is seen by the same trace, so the check above can fail.
    expect(whole.some((w) => w.syscall.startsWith('rename') && w.path === overrideFile)).toBe(true);
    expect(JSON.parse(readFileSync(overrideFile, 'utf8'))).toEqual({ health: { intervalMs: 500 } });
  });
});
