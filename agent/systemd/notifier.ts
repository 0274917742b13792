/**
 * The sd_notify side of Type=notify with WatchdogSec (deploy/dmx-agent.service):
 * READY=1 once the configured streams are up, STATUS= lines, STOPPING=1 on
 * shutdown, and WATCHDOG=1 at half the interval systemd asks for, but only
 * while the event loop and every pump are alive. A skipped ping is the point:
 * systemd then restarts an agent that is stuck rather than merely running.
 * Without $NOTIFY_SOCKET (not started by systemd) every call does nothing.
 * A failed send is logged, never thrown: notification is not what the agent is for.
 */

import type { AgentLogger } from '../log/logger.js';
import { sdNotify } from '../native/index.js';

export interface Liveness {
  alive: boolean;
  /** Why not, in plain terms ('pump hd stopped posting stats 40 s ago'). */
  why?: string;
}

export interface SystemdNotifierOptions {
  /** Default process.env: NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID. */
  env?: NodeJS.ProcessEnv;
  /** Sends one notification; false when there is no socket. Default: the native sdNotify to $NOTIFY_SOCKET. */
  notify?: (state: string) => boolean;
  /** Asked before every watchdog ping. */
  isAlive: () => Liveness;
  logger?: Pick<AgentLogger, 'debug' | 'info' | 'warn'>;
  /** Compared with WATCHDOG_PID; default process.pid. */
  pid?: number;
}

/** STATUS= is one line of the datagram: newlines would start new assignments. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

export class SystemdNotifier {
  private readonly env: NodeJS.ProcessEnv;
  private readonly notify: (state: string) => boolean;
  private readonly isAlive: () => Liveness;
  private readonly logger: Pick<AgentLogger, 'debug' | 'info' | 'warn'> | undefined;
  private readonly pid: number;
  private readySent = false;
  private timer: NodeJS.Timeout | null = null;
  /** Inside an episode of failed liveness checks: logged once at its start. */
  private skipping = false;
  /** The last send failed: logged once until a send succeeds again. */
  private sendFailing = false;

  constructor(options: SystemdNotifierOptions) {
    this.env = options.env ?? process.env;
    this.isAlive = options.isAlive;
    this.logger = options.logger;
    this.pid = options.pid ?? process.pid;
    this.notify = options.notify ?? ((state) => this.sendToSocket(state));
  }

  /** True when systemd gave a notify socket. */
  get enabled(): boolean {
    return (this.env.NOTIFY_SOCKET ?? '') !== '';
  }

  /** Time between watchdog pings (half of WATCHDOG_USEC), or null when systemd asked for no watchdog for us. */
  get watchdogIntervalMs(): number | null {
    const plan = this.watchdogPlan();
    return 'intervalMs' in plan ? plan.intervalMs : null;
  }

  /** READY=1 (with STATUS= when given), sent once; later calls only send the status. */
  ready(status?: string): boolean {
    if (this.readySent) return status === undefined ? false : this.status(status);
    this.readySent = true;
    return this.send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${oneLine(status)}`);
  }

  status(text: string): boolean {
    return this.send(`STATUS=${oneLine(text)}`);
  }

  stopping(status?: string): boolean {
    return this.send(status === undefined ? 'STOPPING=1' : `STOPPING=1\nSTATUS=${oneLine(status)}`);
  }

  /** Starts the pings when systemd asked for them; true when it did. A second call does nothing. */
  startWatchdog(): boolean {
    if (this.timer !== null) return true;
    const plan = this.watchdogPlan();
    if (!('intervalMs' in plan)) {
      if (plan.none === 'invalid') {
        this.logger?.warn(
          { WATCHDOG_USEC: this.env.WATCHDOG_USEC },
          'WATCHDOG_USEC is not a positive integer: no pings',
        );
      } else if (plan.none === 'other-pid') {
        this.logger?.debug({ WATCHDOG_PID: this.env.WATCHDOG_PID }, 'the watchdog is for another process');
      }
      return false;
    }
    const interval = plan.intervalMs;
    this.logger?.debug({ intervalMs: interval }, 'watchdog pings started');
    this.tick();
    this.timer = setInterval(() => this.tick(), interval);
    this.timer.unref();
    return true;
  }

  /** Stops the pings. Safe twice. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private watchdogPlan(): { intervalMs: number } | { none: 'unset' | 'invalid' | 'other-pid' } {
    const raw = this.env.WATCHDOG_USEC;
    if (raw === undefined || raw === '') return { none: 'unset' };
    const usec = Number(raw);
    if (!Number.isInteger(usec) || usec <= 0) return { none: 'invalid' };
    const watchdogPid = this.env.WATCHDOG_PID;
    if (watchdogPid !== undefined && watchdogPid !== '' && Number(watchdogPid) !== this.pid)
      return { none: 'other-pid' };
    // Half the timeout, as sd_watchdog_enabled(3) recommends.
    return { intervalMs: Math.max(1, Math.floor(usec / 2000)) };
  }

  private tick(): void {
    let liveness: Liveness;
    try {
      liveness = this.isAlive();
    } catch (error) {
      liveness = { alive: false, why: `the liveness check threw: ${(error as Error).message}` };
    }
    if (!liveness.alive) {
      if (!this.skipping) {
        this.skipping = true;
        this.logger?.warn(
          { why: liveness.why ?? 'not alive' },
          'skipping watchdog pings: systemd will restart the agent',
        );
      }
      return;
    }
    if (this.skipping) {
      this.skipping = false;
      this.logger?.info('alive again: watchdog pings resumed');
    }
    this.send('WATCHDOG=1');
  }

  private send(state: string): boolean {
    try {
      const sent = this.notify(state);
      this.sendFailing = false;
      return sent;
    } catch (error) {
      if (!this.sendFailing) {
        this.sendFailing = true;
        this.logger?.warn({ err: error, state }, 'sd_notify failed');
      }
      return false;
    }
  }

  private sendToSocket(state: string): boolean {
    const socket = this.env.NOTIFY_SOCKET;
    if (socket === undefined || socket === '') return false;
    return sdNotify(state, socket);
  }
}
