// The agent's watchdog pings as systemd receives them, with a pump stuck inside
// the driver: the simulated adapter's `hang` fault blocks its demux ioctls, as a
// blocking DMX_DQBUF holding the kernel's adapter-wide mutex would. While the
// pump cannot move, no WATCHDOG=1 may reach systemd (so it restarts the agent);
// once it moves again, the pings resume. Markers sent by the test through the
// same socket split the datagram stream into windows: datagrams on one unix
// socket are received in the order they were sent.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Controller } from '../../agent/controller.js';
import { sdNotify } from '../../agent/native/index.js';
import { loadSimConfig, streamJson } from '../support/agent-env.js';
import { sleep, waitFor } from '../support/media-env.js';
import { startNotifySocket } from '../support/notify-socket.js';

const LIVENESS_MS = 20_000;
/** WATCHDOG_USEC of 1 s: a ping every 500 ms while alive. */
const WATCHDOG_USEC = 1_000_000;
/** Each window lasts several ping periods, so a ping that should come has every chance to. */
const WINDOW_MS = 2_000;

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** The datagrams strictly between two markers. */
function between(messages: string[], from: string, to: string): string[] {
  const start = messages.indexOf(from);
  const end = messages.indexOf(to);
  expect(start, `marker ${from}`).toBeGreaterThanOrEqual(0);
  expect(end, `marker ${to}`).toBeGreaterThan(start);
  return messages.slice(start + 1, end);
}

describe('the watchdog of a running agent', () => {
  it('stops pinging while a pump is stuck in the driver, and pings again once it moves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmx-watchdog-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const socketPath = join(dir, 'notify.sock');
    const socket = await startNotifySocket(socketPath);
    cleanups.push(() => socket.close());
    const mark = async (name: string) => {
      expect(sdNotify(name, socketPath)).toBe(true);
      await waitFor(() => socket.messages.includes(name), LIVENESS_MS, `marker ${name}`);
    };

    const logs: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
    const controller = new Controller({
      config: loadSimConfig([streamJson()]),
      logger,
      env: { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: String(WATCHDOG_USEC) },
    });
    cleanups.push(() => controller.stop());
    controller.start();
    await waitFor(() => socket.messages.some((m) => m.startsWith('READY=1')), LIVENESS_MS, 'READY=1');
    const pumpPolls = () => controller.stream('main')?.diagnostics().stats?.polls ?? -1;

    // Control: a healthy agent pings within a window.
    await mark('X_MARK=healthy-from');
    await sleep(WINDOW_MS);
    await mark('X_MARK=healthy-to');
    expect(between(socket.messages, 'X_MARK=healthy-from', 'X_MARK=healthy-to')).toContain('WATCHDOG=1');

    // The pump gets stuck in a demux ioctl for far longer than the windows below.
    controller.media.simulation?.injectFault(0, { kind: 'hang', durationMs: 4 * WINDOW_MS });
    await waitFor(
      () => logs.find((l) => String(l.msg).startsWith('skipping watchdog pings')),
      LIVENESS_MS,
      'the agent to notice the stuck pump',
    );
    const pollsStuck = pumpPolls();
    await mark('X_MARK=stuck-from');
    await sleep(WINDOW_MS);
    await mark('X_MARK=stuck-to');
    // The pump really did not move in the whole window, and systemd heard no ping.
    expect(pumpPolls()).toBe(pollsStuck);
    expect(between(socket.messages, 'X_MARK=stuck-from', 'X_MARK=stuck-to')).not.toContain('WATCHDOG=1');
    const skip = logs.find((l) => String(l.msg).startsWith('skipping watchdog pings'));
    expect(String(skip?.why)).toMatch(/stream main: the pump has not polled/);

    // The hang ends: the pump moves and the pings come back, with the stream still streaming.
    await waitFor(() => pumpPolls() > pollsStuck, LIVENESS_MS, 'the pump to move again');
    await mark('X_MARK=moving');
    await waitFor(
      () => socket.messages.slice(socket.messages.indexOf('X_MARK=moving')).includes('WATCHDOG=1'),
      LIVENESS_MS,
      'a ping after the hang',
    );
    expect(controller.stream('main')?.up).toBe(true);
  });
});
