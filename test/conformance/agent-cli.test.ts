// `dmx-agent run` as systemd runs it, on both backends: READY=1 once the
// stream is up, JSON logs on stdout, SIGHUP applies a new pool by resizing,
// SIGTERM sends STOPPING=1 and exits 0 with every fd it opened closed.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { simConfigJson, streamJson } from '../support/agent-env.js';
import { waitFor } from '../support/media-env.js';
import { startNotifySocket } from '../support/notify-socket.js';

const cli = fileURLToPath(new URL('../../dist/agent/cli.js', import.meta.url));

interface Running {
  child: ChildProcess;
  logs: Array<Record<string, unknown>>;
  exit: Promise<number | null>;
}

function runAgent(configFile: string, env: Record<string, string>): Running {
  const child = spawn(process.execPath, [cli, 'run', '--config', configFile], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let buffered = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  // 'close', not 'exit': every line the agent wrote has been read by then.
  const exit = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      if (code !== 0 && stderr) process.stderr.write(stderr);
      resolve(code);
    }),
  );
  return { child, logs, exit };
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('dmx-agent run', () => {
  it('tells systemd it is ready, resizes on SIGHUP and exits 0 on SIGTERM with its fds closed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmx-agent-cli-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const configFile = join(dir, 'agent.json');
    const config = (count: number, level: string) =>
      simConfigJson([streamJson({ pool: { count } })], { log: { level, pretty: 'never' } });
    writeFileSync(configFile, JSON.stringify(config(6, 'info')));
    const notify = await startNotifySocket(join(dir, 'notify.sock'));
    cleanups.push(() => notify.close());

    const agent = runAgent(configFile, { NOTIFY_SOCKET: join(dir, 'notify.sock'), WATCHDOG_USEC: '2000000' });
    cleanups.push(() => agent.child.kill('SIGKILL'));
    await waitFor(() => notify.messages.some((m) => m.includes('READY=1')), 30_000, 'READY=1');
    expect(notify.messages.find((m) => m.includes('READY=1'))).toMatch(/STATUS=1 of 1 streams up/);
    await waitFor(() => notify.messages.includes('WATCHDOG=1'), 10_000, 'a watchdog ping');
    // The datagram and the log line travel separately: either may be read first.
    await waitFor(
      () => agent.logs.find((l) => l.stream === 'main' && l.to === 'streaming'),
      10_000,
      'the streaming log line',
    );

    expect(agent.logs.some((l) => l.level === 20)).toBe(false);

    // SIGHUP with a new pool count and log level: the pool is resized by draining and reopening,
    // the level changes at run time.
    writeFileSync(configFile, JSON.stringify(config(8, 'debug')));
    agent.child.kill('SIGHUP');
    const resized = await waitFor(
      () => agent.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('pool resized')),
      20_000,
      'the resize log line',
    );
    expect(resized).toMatchObject({ stream: 'main', to: { count: 8 } });
    // Logged after the resize it reports: it may still be in the pipe.
    const reloaded = await waitFor(
      () => agent.logs.find((l) => l.msg === 'configuration reloaded'),
      10_000,
      'the reload summary',
    );
    expect(reloaded.applied).toEqual(expect.arrayContaining(['log.level info -> debug', 'stream main resized']));
    const health = await waitFor(
      () => agent.logs.find((l) => l.msg === 'stream health' && l.level === 20),
      10_000,
      'a debug health line after the level change',
    );
    expect(health).toMatchObject({ stream: 'main', health: { pool: { count: 8 } } });

    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
    await waitFor(() => notify.messages.includes('STOPPING=1'), 5_000, 'STOPPING=1');
    const started = agent.logs.find((l) => l.msg === 'starting');
    const stopped = agent.logs.find((l) => l.msg === 'stopped');
    expect(stopped).toBeDefined();
    // Every fd opened for the streams (nodes, dmabufs, sockets) closed again.
    expect(stopped?.openFds).toBe(started?.openFds);
  });
});
