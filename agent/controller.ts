/**
 * Builds the agent once and owns its lifetime: configuration, logger, event
 * bus, the media host (kernel or simulation), one supervisor per stream, the
 * health loop, errno coalescing, systemd notifications and the terminal
 * status. Start goes core first, then streams; stop goes the other way, and
 * each step's failure is logged without stopping the rest.
 */
import { readdirSync } from 'node:fs';
import type { Logger } from 'pino';
import type { AgentConfig } from './config/types.js';
import { ErrnoCoalescer } from './diagnosis/coalescer.js';
import type { ErrnoEvent } from './diagnosis/types.js';
import { EventBus } from './event-bus.js';
import { AgentHealthSampler } from './health/agent-health.js';
import type { AgentHealth } from './health/types.js';
import { childLogger, setLogLevel } from './log/logger.js';
import { MqttBridge } from './mqtt/bridge.js';
import { dashboardDirectory, type EmbeddedBroker, startEmbeddedBroker } from './mqtt/embedded-broker.js';
import { probe } from './probe.js';
import { type MediaHost, NativeMediaHost, Tuners } from './streams/media-host.js';
import { StreamSupervisor } from './streams/supervisor.js';
import type { StreamStatus } from './streams/types.js';
import { SystemdNotifier } from './systemd/notifier.js';
import { agentVersion } from './version.js';

export interface ControllerOptions {
  config: AgentConfig;
  logger: Logger;
  /** Another media host (tests); by default the native one for config.backend. */
  media?: MediaHost;
  /** Environment for systemd (NOTIFY_SOCKET, WATCHDOG_USEC); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The --config file the configuration came from (config.set checks changes against it). */
  configFile?: string;
  /** Called with every stream line set, about every health interval (the terminal status). */
  onStatusLines?: (lines: StreamStatusLine[]) => void;
}

export interface StreamStatusLine {
  status: StreamStatus;
  health: ReturnType<StreamSupervisor['sampleHealth']>;
}

export class Controller {
  readonly bus: EventBus;
  readonly media: MediaHost;
  private config: AgentConfig;
  private readonly logger: Logger;
  private readonly log: Logger;
  private readonly tuners: Tuners;
  private readonly supervisors = new Map<string, StreamSupervisor>();
  private readonly coalescer: ErrnoCoalescer;
  private readonly agentHealth = new AgentHealthSampler();
  private readonly notifier: SystemdNotifier;
  private healthTimer: NodeJS.Timeout | null = null;
  private bridge: MqttBridge | null = null;
  private embeddedBroker: Promise<EmbeddedBroker | null> | null = null;
  private mqttStopped: Promise<void> | null = null;
  private readyTimer: NodeJS.Timeout | null = null;
  private ready = false;
  private starting = false;
  private stopped = false;
  private finished = false;
  private lastAgentHealth: AgentHealth | null = null;
  private readonly fdsAtStart: number;

  constructor(private readonly options: ControllerOptions) {
    // Before anything of ours opens: stop() logs the count again, and the two must match.
    this.fdsAtStart = openFdCount();
    this.config = options.config;
    this.logger = options.logger;
    this.log = childLogger(options.logger, { module: 'controller' });
    this.bus = new EventBus((event, err) => this.log.error({ err, event }, 'an event listener threw'));
    this.media = options.media ?? new NativeMediaHost(this.config.backend, this.config.sim);
    this.tuners = new Tuners(this.media);
    this.coalescer = new ErrnoCoalescer({
      windowMs: this.config.diagnosis.coalesceWindowMs,
      emit: (event) => this.onErrnoEvent(event),
    });
    this.notifier = new SystemdNotifier({
      env: options.env ?? process.env,
      isAlive: () => this.alive(),
      logger: childLogger(options.logger, { module: 'systemd' }),
    });
    this.bus.on('streamState', this, () => this.checkReady());
  }

  get agentConfig(): AgentConfig {
    return this.config;
  }

  start(): void {
    this.log.info(
      {
        backend: this.config.backend,
        deviceId: this.config.deviceId,
        streams: this.config.streams.map((s) => s.id),
        openFds: this.fdsAtStart,
      },
      'starting',
    );
    // The fleet link first: it probes the devices before the streams own them, and it must be
    // listening for commands the broker kept for this box.
    if (this.config.mqtt.enabled) {
      let config = this.config;
      if (config.mqtt.url === 'embedded') {
        // Development only: a broker in this process. Its ports are fixed, so the link can be made now and
        // simply retries until the broker listens.
        const { port, wsPort } = config.mqtt.embedded;
        config = { ...config, mqtt: { ...config.mqtt, url: `mqtt://127.0.0.1:${port}`, protocolVersion: 4 } };
        const dashboard = dashboardDirectory();
        this.embeddedBroker = startEmbeddedBroker({ port, wsPort, dashboard }).then(
          (broker) => {
            this.log.info({ url: broker.url, ws: broker.wsUrl }, 'embedded MQTT broker (development only) listening');
            if (broker.dashboardUrl !== null) {
              this.log.info({ url: broker.dashboardUrl }, `fleet dashboard: open ${broker.dashboardUrl}`);
            } else {
              this.log.info('fleet dashboard not built (npm run build:dashboard); npm start builds it');
            }
            return broker;
          },
          (err: unknown) => {
            this.log.error({ err }, 'the embedded MQTT broker did not start');
            return null;
          },
        );
      }
      this.bridge = new MqttBridge({
        controller: this,
        config,
        logger: this.logger,
        version: agentVersion(),
        probe: () => probe(this.media.simulation ? { simulation: this.media.simulation } : {}),
        configFile: this.options.configFile,
        setLogLevel: (level) => {
          setLogLevel(this.logger, level);
          this.log.info({ level }, 'log level changed');
        },
      });
      this.bridge.start();
    }
    // Every supervisor exists before the first starts, so "all up" cannot be judged on half the list.
    this.starting = true;
    for (const stream of this.config.streams) this.addStream(stream);
    this.starting = false;
    this.healthTimer = setInterval(() => this.sampleHealth(), this.config.health.intervalMs);
    this.readyTimer = setTimeout(() => this.sendReady(true), this.config.systemd.readyTimeoutMs);
    this.readyTimer.unref();
    this.notifier.startWatchdog();
    this.checkReady();
  }

  /** Stops every stream (pumps first, buffers back from sinks, every fd closed), then the core. Safe twice. */
  stop(): void {
    for (const [name, step] of this.stopSteps()) this.runStopStep(name, step);
    // Best effort: the offline status goes out if the event loop gets to it.
    void this.stopMqtt();
    this.finishStop();
  }

  /**
   * The same, yielding to the event loop between steps, so that a caller's
   * timer (the SIGTERM bound) can still fire if one stream is slow to close.
   */
  async stopGracefully(): Promise<void> {
    for (const [name, step] of this.stopSteps()) {
      this.runStopStep(name, step);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    // Last: the streams' final events go out before the retained offline status.
    await this.stopMqtt();
    this.finishStop();
  }

  private stopSteps(): Array<[string, () => void]> {
    if (this.stopped) return [];
    this.stopped = true;
    this.log.info('stopping');
    this.notifier.stopping();
    return [
      ...[...this.supervisors.values()].reverse().map((s): [string, () => void] => [`stream ${s.id}`, () => s.stop()]),
      ['timers', () => this.clearTimers()],
      ['diagnosis', () => this.coalescer.stop()],
      ['frontends', () => this.tuners.closeAll()],
      ['media', () => this.media.close()],
      ['agent health', () => this.agentHealth.stop()],
      ['systemd', () => this.notifier.stop()],
      ['bus', () => this.bus.removeListeners(this)],
    ];
  }

  private runStopStep(name: string, step: () => void): void {
    try {
      step();
    } catch (err) {
      this.log.error({ err }, `stopping ${name} failed`);
    }
  }

  private finishStop(): void {
    if (this.finished) return;
    this.finished = true;
    this.supervisors.clear();
    this.log.info({ openFds: openFdCount() }, 'stopped');
  }

  stream(id: string): StreamSupervisor | undefined {
    return this.supervisors.get(id);
  }

  streams(): StreamSupervisor[] {
    return [...this.supervisors.values()];
  }

  /** A new configuration (SIGHUP): applies what can change at run time and names what needs a restart. */
  reload(next: AgentConfig): { applied: string[]; needsRestart: string[] } {
    const applied: string[] = [];
    const needsRestart: string[] = [];
    if (this.stopped) return { applied, needsRestart };
    const before = this.config;
    for (const key of ['backend', 'sim', 'deviceId', 'mqtt', 'diagnosis'] as const) {
      if (JSON.stringify(before[key]) !== JSON.stringify(next[key])) needsRestart.push(key);
    }
    this.config = {
      ...next,
      backend: before.backend,
      sim: before.sim,
      deviceId: before.deviceId,
      mqtt: before.mqtt,
      diagnosis: before.diagnosis,
    };
    if (before.log.level !== next.log.level) {
      setLogLevel(this.logger, next.log.level);
      applied.push(`log.level ${before.log.level} -> ${next.log.level}`);
    }
    if (before.health.intervalMs !== next.health.intervalMs && this.healthTimer) {
      clearInterval(this.healthTimer);
      this.healthTimer = setInterval(() => this.sampleHealth(), next.health.intervalMs);
      applied.push(`health.intervalMs ${before.health.intervalMs} -> ${next.health.intervalMs}`);
    }
    const nextIds = new Set(next.streams.map((s) => s.id));
    for (const supervisor of [...this.supervisors.values()]) {
      if (!nextIds.has(supervisor.id)) {
        supervisor.stop('removed from the configuration');
        this.supervisors.delete(supervisor.id);
        applied.push(`stream ${supervisor.id} removed`);
      }
    }
    for (const stream of next.streams) {
      const supervisor = this.supervisors.get(stream.id);
      if (!supervisor) {
        this.addStream(stream);
        applied.push(`stream ${stream.id} added`);
        continue;
      }
      const outcome = supervisor.reconfigure(stream, this.config);
      if (outcome !== 'unchanged') applied.push(`stream ${stream.id} ${outcome}`);
    }
    this.log.info({ applied, needsRestart }, 'configuration reloaded');
    if (needsRestart.length) this.log.warn({ keys: needsRestart }, 'these keys change only on restart');
    this.bus.emit('configReloaded', { config: this.config, changed: applied });
    // A removed stream may have been the last one down.
    this.checkReady();
    return { applied, needsRestart };
  }

  /** The link first (its offline status still reaches an embedded broker), then the embedded broker. */
  private stopMqtt(): Promise<void> {
    this.mqttStopped ??= (async () => {
      try {
        await this.bridge?.stop();
        await (await this.embeddedBroker)?.close();
      } catch (err) {
        this.log.error({ err }, 'stopping MQTT failed');
      }
    })();
    return this.mqttStopped;
  }

  /** The fleet link, when mqtt.enabled. */
  get mqtt(): MqttBridge | null {
    return this.bridge;
  }

  /** The agent-wide health of the last sample. */
  get health(): AgentHealth | null {
    return this.lastAgentHealth;
  }

  /** Samples every stream and the agent (the health loop; also callable directly). */
  sampleHealth(): void {
    const lines: StreamStatusLine[] = [];
    for (const supervisor of this.supervisors.values()) {
      let health = null;
      try {
        health = supervisor.sampleHealth();
      } catch (err) {
        this.log.error({ err, stream: supervisor.id }, 'health sampling failed');
      }
      if (health) this.log.debug({ stream: supervisor.id, health }, 'stream health');
      lines.push({ status: supervisor.status(), health: health ?? supervisor.health });
    }
    this.lastAgentHealth = this.agentHealth.sample(lines.map((l) => ({ state: l.status.state })));
    this.bus.emit('agentHealth', this.lastAgentHealth);
    this.options.onStatusLines?.(lines);
  }

  private addStream(stream: AgentConfig['streams'][number]): void {
    const supervisor = new StreamSupervisor({
      config: stream,
      agent: this.config,
      media: this.media,
      tuners: this.tuners,
      bus: this.bus,
      logger: childLogger(this.logger, { module: 'stream', stream: stream.id }),
      report: (event) => this.coalescer.push(event),
    });
    this.supervisors.set(stream.id, supervisor);
    supervisor.start();
  }

  private onErrnoEvent(event: ErrnoEvent): void {
    const level = event.prevented ? 'info' : 'warn';
    this.log[level](
      {
        stream: event.stream,
        device: event.device,
        ioctl: event.ioctl,
        errno: event.errno,
        args: event.args,
        cause: event.cause,
        prevented: event.prevented,
        count: event.count,
        remedy: event.remedy,
      },
      `${event.prevented ? 'prevented ' : ''}${event.ioctl} ${event.errno}: ${event.summary}`,
    );
    this.bus.emit('errnoEvent', event);
  }

  private checkReady(): void {
    if (this.stopped || this.starting) return;
    if (this.ready) {
      // After READY, STATUS= keeps saying how many streams are up.
      this.notifier.status(this.streamsUpSummary());
      return;
    }
    if ([...this.supervisors.values()].every((s) => s.up)) this.sendReady(false);
  }

  private sendReady(timedOut: boolean): void {
    if (this.ready || this.stopped) return;
    this.ready = true;
    const status = this.streamsUpSummary();
    this.notifier.ready(status);
    this.log.info({ timedOut }, `ready: ${status}`);
  }

  /** "2 of 2 streams up", or which are not and why. */
  private streamsUpSummary(): string {
    const down = [...this.supervisors.values()].filter((s) => !s.up);
    const up = `${this.supervisors.size - down.length} of ${this.supervisors.size} streams up`;
    return down.length ? `${up}; waiting: ${down.map((s) => `${s.id} (${s.status().reason})`).join(', ')}` : up;
  }

  /** The watchdog's condition: the event loop runs (we are here) and every pump turns. */
  private alive(): { alive: boolean; why?: string } {
    for (const supervisor of this.supervisors.values()) {
      const pump = supervisor.pumpAlive();
      if (!pump.alive) return pump;
    }
    return { alive: true };
  }

  private clearTimers(): void {
    if (this.healthTimer) clearInterval(this.healthTimer);
    if (this.readyTimer) clearTimeout(this.readyTimer);
    this.healthTimer = null;
    this.readyTimer = null;
  }
}

function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}
