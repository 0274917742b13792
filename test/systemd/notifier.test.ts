import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../agent/log/logger.js';
import { type Liveness, SystemdNotifier } from '../../agent/systemd/notifier.js';
import { startNotifySocket } from '../support/notify-socket.js';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
  records(): Array<Record<string, unknown>> {
    return this.text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

/** A notifier whose datagrams are recorded instead of sent. */
function recorded(env: NodeJS.ProcessEnv, liveness: () => Liveness = () => ({ alive: true })) {
  const sent: string[] = [];
  const out = new Capture();
  const logger = createLogger({ level: 'debug', pretty: 'never', destination: out });
  const notifier = new SystemdNotifier({
    env,
    pid: 4242,
    isAlive: liveness,
    logger,
    notify: (state) => {
      sent.push(state);
      return true;
    },
  });
  return { sent, out, notifier };
}

describe('SystemdNotifier messages', () => {
  it('sends READY=1 with the status once; later calls only update the status', () => {
    const { sent, notifier } = recorded({ NOTIFY_SOCKET: '/run/notify' });
    expect(notifier.enabled).toBe(true);
    expect(notifier.ready('2 streams up')).toBe(true);
    expect(notifier.ready()).toBe(false);
    expect(notifier.ready('3 streams up')).toBe(true);
    expect(sent).toEqual(['READY=1\nSTATUS=2 streams up', 'STATUS=3 streams up']);
  });

  it('sends STATUS= and STOPPING=1, keeping a status on one line', () => {
    const { sent, notifier } = recorded({ NOTIFY_SOCKET: '/run/notify' });
    notifier.status('hd streaming\nsd degraded');
    notifier.stopping();
    notifier.stopping('draining 2 streams');
    expect(sent).toEqual(['STATUS=hd streaming sd degraded', 'STOPPING=1', 'STOPPING=1\nSTATUS=draining 2 streams']);
  });

  it('does nothing without a notify socket (not started by systemd)', () => {
    const notifier = new SystemdNotifier({ env: {}, isAlive: () => ({ alive: true }) });
    expect(notifier.enabled).toBe(false);
    expect(notifier.ready('up')).toBe(false);
    expect(notifier.status('x')).toBe(false);
    expect(notifier.stopping()).toBe(false);
  });

  it('logs a failing send once until a send succeeds again, and never throws', () => {
    const out = new Capture();
    let failing = true;
    const notifier = new SystemdNotifier({
      env: { NOTIFY_SOCKET: '/run/notify' },
      isAlive: () => ({ alive: true }),
      logger: createLogger({ level: 'info', pretty: 'never', destination: out }),
      notify: () => {
        if (failing) throw Object.assign(new Error('sendto failed: ECONNREFUSED'), { code: 'ECONNREFUSED' });
        return true;
      },
    });
    expect(notifier.ready()).toBe(false);
    expect(notifier.status('a')).toBe(false);
    failing = false;
    expect(notifier.status('b')).toBe(true);
    failing = true;
    expect(notifier.status('c')).toBe(false);
    const warnings = out.records().filter((record) => record.msg === 'sd_notify failed');
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatchObject({ state: 'READY=1', err: { code: 'ECONNREFUSED' } });
    expect(warnings[1]).toMatchObject({ state: 'STATUS=c' });
  });
});

describe('SystemdNotifier watchdog', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('pings at half of WATCHDOG_USEC, from the start', () => {
    const { sent, notifier } = recorded({ NOTIFY_SOCKET: '/run/notify', WATCHDOG_USEC: '10000000' });
    expect(notifier.watchdogIntervalMs).toBe(5000);
    expect(notifier.startWatchdog()).toBe(true);
    expect(sent).toEqual(['WATCHDOG=1']);
    vi.advanceTimersByTime(4999);
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sent).toHaveLength(2);
    vi.advanceTimersByTime(10_000);
    expect(sent).toEqual(['WATCHDOG=1', 'WATCHDOG=1', 'WATCHDOG=1', 'WATCHDOG=1']);
    notifier.stop();
  });

  it('skips pings while not alive, logs why once per episode, and resumes', () => {
    let liveness: Liveness = { alive: true };
    const { sent, out, notifier } = recorded(
      { NOTIFY_SOCKET: '/run/notify', WATCHDOG_USEC: '2000000' },
      () => liveness,
    );
    notifier.startWatchdog();
    expect(sent).toHaveLength(1);

    liveness = { alive: false, why: 'pump hd silent for 12 s' };
    vi.advanceTimersByTime(5000);
    liveness = { alive: false, why: 'pump sd silent too' };
    vi.advanceTimersByTime(5000);
    expect(sent).toHaveLength(1);

    liveness = { alive: true };
    vi.advanceTimersByTime(1000);
    expect(sent).toHaveLength(2);

    liveness = { alive: false };
    vi.advanceTimersByTime(1000);
    expect(sent).toHaveLength(2);
    notifier.stop();

    const messages = out.records().map((record) => [record.msg, record.why]);
    expect(messages).toEqual([
      ['watchdog pings started', undefined],
      ['skipping watchdog pings: systemd will restart the agent', 'pump hd silent for 12 s'],
      ['alive again: watchdog pings resumed', undefined],
      ['skipping watchdog pings: systemd will restart the agent', 'not alive'],
    ]);
  });

  it('treats a throwing liveness check as not alive', () => {
    const { sent, out, notifier } = recorded({ NOTIFY_SOCKET: '/run/notify', WATCHDOG_USEC: '2000000' }, () => {
      throw new Error('no stats yet');
    });
    notifier.startWatchdog();
    vi.advanceTimersByTime(3000);
    notifier.stop();
    expect(sent).toEqual([]);
    expect(out.records().find((record) => record.level === 40)?.why).toBe('the liveness check threw: no stats yet');
  });

  it('stop clears the timer, is safe twice, and the timer never holds the process open', () => {
    const { sent, notifier } = recorded({ NOTIFY_SOCKET: '/run/notify', WATCHDOG_USEC: '2000000' });
    const setIntervalSpy = vi.spyOn(globalThis, 'setInterval');
    notifier.startWatchdog();
    expect(notifier.startWatchdog()).toBe(true);
    expect(setIntervalSpy).toHaveBeenCalledTimes(1);
    const timer = setIntervalSpy.mock.results[0]?.value as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(false);
    notifier.stop();
    notifier.stop();
    vi.advanceTimersByTime(10_000);
    expect(sent).toEqual(['WATCHDOG=1']);
    setIntervalSpy.mockRestore();
  });

  it.each([
    ['unset', {}, null],
    ['for this process', { WATCHDOG_USEC: '3000000', WATCHDOG_PID: '4242' }, 1500],
    ['for another process', { WATCHDOG_USEC: '3000000', WATCHDOG_PID: '1' }, null],
    ['not a number', { WATCHDOG_USEC: 'soon' }, null],
    ['zero', { WATCHDOG_USEC: '0' }, null],
  ])('WATCHDOG_USEC %s', (_name, watchdogEnv, interval) => {
    const { sent, notifier } = recorded({ NOTIFY_SOCKET: '/run/notify', ...watchdogEnv });
    expect(notifier.watchdogIntervalMs).toBe(interval);
    expect(notifier.startWatchdog()).toBe(interval !== null);
    vi.advanceTimersByTime(10_000);
    expect(sent.length > 0).toBe(interval !== null);
    notifier.stop();
  });

  it('warns about an invalid WATCHDOG_USEC', () => {
    const { out, notifier } = recorded({ NOTIFY_SOCKET: '/run/notify', WATCHDOG_USEC: '-5' });
    notifier.startWatchdog();
    expect(out.records()).toEqual([
      expect.objectContaining({ level: 40, WATCHDOG_USEC: '-5', msg: expect.stringContaining('WATCHDOG_USEC') }),
    ]);
  });
});

describe('SystemdNotifier on a real notify socket', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dmx-notifier-'));
  });
  afterEach(() => {
    vi.useRealTimers();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends READY=1 and STATUS=, pings while alive, stops pinging when not, and sends STOPPING=1', async () => {
    const path = join(dir, 'notify.sock');
    const receiver = await startNotifySocket(path);
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    let liveness: Liveness = { alive: true };
    // The default notify: the native sdNotify to env.NOTIFY_SOCKET.
    const notifier = new SystemdNotifier({
      env: { NOTIFY_SOCKET: path, WATCHDOG_USEC: '2000000' },
      isAlive: () => liveness,
    });
    try {
      expect(notifier.ready('hd streaming, sd streaming')).toBe(true);
      expect(await receiver.next()).toBe('READY=1\nSTATUS=hd streaming, sd streaming');

      expect(notifier.startWatchdog()).toBe(true);
      expect(await receiver.next()).toBe('WATCHDOG=1');
      vi.advanceTimersByTime(1000);
      expect(await receiver.next()).toBe('WATCHDOG=1');

      // Datagrams on one unix socket arrive in order: had a ping been sent while
      // not alive, it would arrive before the marker.
      liveness = { alive: false, why: 'pump hd stalled' };
      vi.advanceTimersByTime(5000);
      notifier.status('marker 1');
      expect(await receiver.next()).toBe('STATUS=marker 1');

      liveness = { alive: true };
      vi.advanceTimersByTime(1000);
      expect(await receiver.next()).toBe('WATCHDOG=1');

      expect(notifier.stopping()).toBe(true);
      expect(await receiver.next()).toBe('STOPPING=1');

      notifier.stop();
      vi.advanceTimersByTime(5000);
      notifier.status('marker 2');
      expect(await receiver.next()).toBe('STATUS=marker 2');
    } finally {
      notifier.stop();
      receiver.close();
    }
  });
});
