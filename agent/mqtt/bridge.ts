/**
 * The agent's face to the fleet: owns the MQTT link and the command router,
 * turns bus events into MQTT events, sends telemetry on its interval (and at
 * once when a stream changes health level), publishes the capability probe
 * retained, and answers commands through the handlers. Topics, payloads and
 * commands are the contract in agent/mqtt/asyncapi.yaml.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { redactConfig } from '../config/load.js';
import type { AgentConfig, LogLevel } from '../config/types.js';
import type { Controller } from '../controller.js';
import { CommandRouter } from './command-router.js';
import { COMMAND_ARGS_SCHEMAS, COMMAND_NAMES } from './command-schemas.js';
import { commandHandlers } from './handlers.js';
import { MqttLink } from './link.js';
import { toTelemetry } from './payloads.js';
import { routeCommands, routerPublishing, StreamHealthReporter } from './reporting.js';
import { Topics } from './topics.js';

export interface MqttBridgeOptions {
  controller: Controller;
  config: AgentConfig;
  logger: Logger;
  version: string;
  /** The capability probe, run before the streams open their nodes. */
  probe: () => unknown;
  setLogLevel: (level: LogLevel) => void;
  /** The --config file (config.set validates a change against it); undefined: DMX_AGENT_CONFIG or none. */
  configFile: string | undefined;
}

/** How far a signed command's issue time may be from this box's clock. */
const SIGNATURE_SKEW_MS = 5 * 60_000;

export class MqttBridge {
  readonly topics: Topics;
  private readonly link: MqttLink;
  private readonly router: CommandRouter;
  private readonly bootTime = new Date().toISOString();
  private telemetryMs: number;
  private telemetryTimer: NodeJS.Timeout | null = null;
  private readonly healthReporter: StreamHealthReporter;
  private stopped = false;

  constructor(private readonly options: MqttBridgeOptions) {
    const { config, logger } = options;
    const mqtt = config.mqtt;
    this.telemetryMs = mqtt.telemetryIntervalMs;
    this.topics = new Topics(mqtt.topicPrefix, config.deviceId);
    const configDigest = createHash('sha256')
      .update(JSON.stringify(redactConfig(config)))
      .digest('hex');
    this.link = new MqttLink({
      url: mqtt.url,
      clientId: mqtt.clientId || `dmx-agent-${config.deviceId || hostname()}`,
      ...(mqtt.username ? { username: mqtt.username } : {}),
      ...(mqtt.password ? { password: mqtt.password } : {}),
      protocolVersion: mqtt.protocolVersion,
      keepaliveSec: mqtt.keepaliveSec,
      sessionExpirySec: mqtt.sessionExpirySec,
      reconnect: mqtt.reconnect,
      offlineQueue: mqtt.offlineQueue,
      topics: this.topics,
      birth: () => ({ version: options.version, bootTime: this.bootTime, configDigest, deviceId: config.deviceId }),
      ...(mqtt.tls.ca || mqtt.tls.cert
        ? {
            tls: {
              ...(mqtt.tls.ca ? { ca: mqtt.tls.ca } : {}),
              ...(mqtt.tls.cert ? { cert: mqtt.tls.cert, key: mqtt.tls.key } : {}),
            },
          }
        : {}),
      logger: logger.child({ module: 'mqtt' }),
    });
    const handlers = commandHandlers({
      controller: options.controller,
      version: options.version,
      bootTime: this.bootTime,
      probe: options.probe,
      setLogLevel: options.setLogLevel,
      setTelemetryInterval: (ms) => this.setTelemetryInterval(ms),
      configFile: options.configFile,
    });
    // Only commands this agent implements can be allowed; the allow-list narrows them further.
    const implemented = COMMAND_NAMES.filter((name) => handlers[name] !== undefined);
    const allow = mqtt.commands.allow.length
      ? mqtt.commands.allow.filter((n) => implemented.includes(n as never))
      : implemented;
    this.router = new CommandRouter({
      handlers,
      argsSchemas: COMMAND_ARGS_SCHEMAS,
      allow,
      maxBytes: mqtt.commands.maxBytes,
      dedupWindowMs: mqtt.commands.dedupWindowMs,
      ...(mqtt.commands.publicKeyFile
        ? {
            requireSignature: {
              publicKeyPem: readFileSync(mqtt.commands.publicKeyFile, 'utf8'),
              deviceId: config.deviceId,
              maxSkewMs: SIGNATURE_SKEW_MS,
            },
          }
        : {}),
      ...routerPublishing(this.link, this.topics, logger),
    });
    this.healthReporter = new StreamHealthReporter(this.link, () => this.publishTelemetry());
  }

  get connected(): boolean {
    return this.link.connected;
  }

  /** Registers for commands before connecting (the broker may hold some for this box), then connects in the background. */
  start(): void {
    const { controller } = this.options;
    routeCommands(this.link, this.router);
    controller.bus.on('errnoEvent', this, (event) => this.link.publishEvent('errno', event));
    controller.bus.on('streamState', this, (change) => this.link.publishEvent('stream-state', change));
    controller.bus.on('streamHealth', this, (health) => this.healthReporter.report(health));
    try {
      this.link.publishRetained(this.topics.capabilities, this.options.probe() as Record<string, unknown>);
    } catch (err) {
      this.options.logger.error({ module: 'mqtt', err }, 'the capability probe failed');
    }
    this.scheduleTelemetry();
    void this.link.start();
  }

  /** Publishes offline (retained) and disconnects. Safe twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.telemetryTimer) clearInterval(this.telemetryTimer);
    this.telemetryTimer = null;
    this.options.controller.bus.removeListeners(this);
    await this.link.stop();
  }

  /** The telemetry snapshot now (also what the interval sends). */
  publishTelemetry(): void {
    const { controller } = this.options;
    const agent = controller.health;
    if (!agent) return;
    const streams = controller.streams().map((s) => ({ status: s.status(), health: s.health }));
    this.link.publishTelemetry(toTelemetry(agent, streams, Date.now()));
  }

  private setTelemetryInterval(ms: number): void {
    this.telemetryMs = ms;
    this.scheduleTelemetry();
  }

  private scheduleTelemetry(): void {
    if (this.telemetryTimer) clearInterval(this.telemetryTimer);
    this.telemetryTimer = setInterval(() => this.publishTelemetry(), this.telemetryMs);
    this.telemetryTimer.unref();
  }
}
