/**
 * What the benchmarks run against: a real mosquitto on a free loopback port,
 * the built agent (dist/) started as `dmx-agent run --config FILE` against the
 * simulated receiver, and /proc readings of a process. Plain JavaScript over
 * dist/, so `node test/bench/run.mjs` needs no TypeScript loader.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const AGENT_CLI = join(REPO_ROOT, 'dist', 'agent', 'cli.js');
/** Liveness bound for anything the benchmarks wait for; never a performance judgement. */
export const LIVENESS_MS = 30_000;

export const ES_PID = 0x111;
export const VIDEO_PID = 0x100;
export const TUNING = { deliverySystem: 'DVBT', frequency: 474_000_000 };

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitFor(check, deadlineMs, what) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), `dmx-bench-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** One synthetic adapter like vidtv (a video and an audio PID) at `bitrate` bits/s. */
export function simConfig(bitrate = 2_000_000) {
  return {
    adapters: [
      {
        adapter: 0,
        source: {
          kind: 'synthetic',
          bitrate,
          programs: [
            {
              number: 1,
              pmtPid: 0x101,
              streams: [
                { pid: VIDEO_PID, type: 'video', share: 0.5 },
                { pid: ES_PID, type: 'audio', share: 0.3 },
              ],
            },
          ],
        },
      },
    ],
    decoders: [{ name: 'vim2m', processingDelayMs: 2 }],
  };
}

/** A stream on the audio PID into the discard sink (no decoder: what is measured is the agent). */
export function benchStream(id) {
  return {
    id,
    adapter: 0,
    source: 'demux',
    filter: { pids: [ES_PID], output: 'tsdemux-tap' },
    tuning: TUNING,
    bitrate: 600_000,
    pool: { count: 6 },
    sink: { type: 'discard' },
  };
}

/** A full agent configuration on the simulation; `mqtt` merges into the MQTT section. */
export function agentConfig({ streams, deviceId, mqtt = null, health = {} }) {
  return {
    backend: 'sim',
    deviceId,
    log: { level: 'info', pretty: 'never' },
    health: { intervalMs: 1000, ...health },
    supervision: { backoffInitialMs: 100, backoffMaxMs: 1000, deviceWaitMs: 100, decoderRetryMs: 100 },
    statusLine: 'never',
    mqtt: mqtt === null ? { enabled: false } : { enabled: true, ...mqtt },
    sim: simConfig(),
    streams,
  };
}

export function writeJsonFile(dir, name, json) {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(json, null, 2));
  return file;
}

/**
 * `dmx-agent run --config FILE` as systemd starts it. `streaming()` counts
 * the streams whose log said they reached streaming.
 */
export function spawnAgent(configFile) {
  const child = spawn(process.execPath, [AGENT_CLI, 'run', '--config', configFile], {
    env: { ...process.env, NOTIFY_SOCKET: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const streaming = new Set();
  let buffered = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const entry = JSON.parse(line);
        if (entry.to === 'streaming' && typeof entry.stream === 'string') streaming.add(entry.stream);
      } catch {
        // not a log line
      }
    }
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk.toString();
  });
  const exit = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    exit,
    streaming: () => streaming.size,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** A node process running `source` as an ES module from the repository root (so it resolves mqtt). */
export function spawnNode(source, args = []) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', source, ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk.toString();
  });
  const exit = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    exit,
    stdout: () => stdout,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exit;
    },
  };
}

/** Resident set size of a process, in bytes (VmRSS). */
export function rssBytes(pid) {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

export function openFds(pid) {
  return readdirSync(`/proc/${pid}/fd`).length;
}

async function freePort() {
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function mosquittoPath() {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin']) {
    const candidate = join(dir, 'mosquitto');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error('mosquitto not found on the PATH nor in /usr/sbin (apt-get install mosquitto)');
}

/** A plain mosquitto on a free loopback port, anonymous, no persistence. */
export async function startBroker() {
  const { dir, cleanup } = tempDir('broker');
  const port = await freePort();
  const config = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    // Without it mosquitto's replies wait on Nagle and delayed ACKs (about 40 ms per hop on loopback),
    // which would hide everything the agent does in a command round trip.
    'set_tcp_nodelay true',
    `log_dest file ${join(dir, 'mosquitto.log')}`,
    // As root mosquitto would switch to its own user, which cannot write the temporary directory.
    ...(process.getuid?.() === 0 ? [`user ${userInfo().username}`] : []),
  ];
  writeFileSync(join(dir, 'mosquitto.conf'), `${config.join('\n')}\n`);
  const child = spawn(mosquittoPath(), ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
  const exit = new Promise((resolve) => child.on('close', resolve));
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  const end = Date.now() + LIVENESS_MS;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited at start (${child.exitCode})`);
    if (Date.now() > end) throw new Error(`mosquitto did not listen on ${port}`);
    await sleep(20);
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      process.off('exit', killOnExit);
      child.kill('SIGTERM');
      await exit;
      cleanup();
    },
  };
}
