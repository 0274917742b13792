/**
 * The page's one MQTT connection (MQTT.js over WebSocket), and what the page
 * tells the operator about it. MQTT 5 first; a broker that refuses the
 * protocol version (the development broker speaks 3.1.1) gets a 3.1.1
 * connection instead. Subscriptions are kept here and made again on every
 * connect, so a broker restart or a lost network heals without a reload.
 */
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { CommandTransport } from './commands.js';

export type ConnectionPhase = 'connecting' | 'connected' | 'unreachable' | 'refused';

export interface ConnectionState {
  phase: ConnectionPhase;
  url: string;
  protocolVersion: 4 | 5 | null;
  /** Failed attempts since the last good connection. */
  failures: number;
  /** What went wrong last, in the broker's or the browser's words. */
  lastError: string | null;
  /** When the phase began (epoch ms). */
  since: number;
}

export interface ConnectionOptions {
  url: string;
  username?: string;
  password?: string;
  /** Pause between attempts. */
  reconnectMs?: number;
  /** An attempt without an answer for this long is a failure. */
  connectTimeoutMs?: number;
  clientId?: string;
}

export type MessageHandler = (topic: string, payload: Uint8Array, correlation: string | null) => void;

/** True for the CONNACK of a broker that does not speak the requested MQTT version. */
function refusesProtocolVersion(err: Error & { code?: unknown }): boolean {
  // MQTT 3.1.1 return code 1; MQTT 5 reason code 0x84.
  return err.code === 1 || err.code === 132 || /protocol version/i.test(err.message);
}

/** After a refusal (MQTT.js itself gives up), the page tries again at this pace: a broker may be busy, an ACL fixed. */
const REFUSED_RETRY_MS = 15_000;
/** MQTT 5 DISCONNECT reason: another connection with this client id (the same certificate) took over. */
const SESSION_TAKEN_OVER = 0x8e;

function isConnackRefusal(err: Error & { code?: unknown }): boolean {
  return typeof err.code === 'number' && err.code > 0;
}

export class BrokerConnection implements CommandTransport {
  private client: MqttClient | null = null;
  /** Filter -> QoS, made again on every connect. */
  private readonly filters = new Map<string, 0 | 1>();
  private version: 4 | 5 = 5;
  private current: ConnectionState;
  private closed = false;

  constructor(
    private readonly options: ConnectionOptions,
    private readonly onMessage: MessageHandler,
    private readonly onState: (state: ConnectionState) => void = () => {},
  ) {
    this.current = {
      phase: 'connecting',
      url: options.url,
      protocolVersion: null,
      failures: 0,
      lastError: null,
      since: Date.now(),
    };
  }

  get state(): ConnectionState {
    return this.current;
  }

  get protocolVersion(): 4 | 5 | null {
    return this.current.phase === 'connected' ? this.version : null;
  }

  start(): void {
    this.closed = false;
    this.open();
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = null;
    if (client) await client.endAsync(true);
  }

  /**
   * Subscribes now when connected, and on every later connect. The fleet
   * view's own subscriptions are QoS 0 (a live view needs no redelivery);
   * command answers are QoS 1. Either way the broker's per-client queue must
   * hold every retained status at once: deploy/mosquitto/dmx-fleet.conf
   * bounds it in bytes, not at mosquitto's default of 1000 messages.
   */
  async subscribe(filter: string, qos: 0 | 1 = 1): Promise<void> {
    if (this.filters.get(filter) === qos) return;
    this.filters.set(filter, qos);
    const client = this.client;
    if (client?.connected) await client.subscribeAsync(filter, { qos });
  }

  async publish(
    topic: string,
    payload: string,
    options: { responseTopic?: string; correlationData?: Uint8Array; messageExpirySec?: number },
  ): Promise<void> {
    const client = this.client;
    if (!client?.connected) throw new Error(`not connected to the broker at ${this.options.url}`);
    const properties: NonNullable<Parameters<MqttClient['publishAsync']>[2]>['properties'] = {};
    if (options.responseTopic !== undefined) properties.responseTopic = options.responseTopic;
    // MQTT.js's typings say Buffer; in the browser its bundle takes any byte array.
    if (options.correlationData !== undefined) properties.correlationData = options.correlationData as Buffer;
    if (options.messageExpirySec !== undefined) properties.messageExpiryInterval = options.messageExpirySec;
    await client.publishAsync(topic, payload, {
      qos: 1,
      ...(this.version === 5 && Object.keys(properties).length > 0 ? { properties } : {}),
    });
  }

  private setState(change: Partial<ConnectionState>): void {
    const phaseChanged = change.phase !== undefined && change.phase !== this.current.phase;
    this.current = { ...this.current, ...change, ...(phaseChanged ? { since: Date.now() } : {}) };
    this.onState(this.current);
  }

  private open(): void {
    const options: IClientOptions = {
      protocolVersion: this.version,
      clientId: this.options.clientId ?? `dmx-dashboard-${Math.random().toString(16).slice(2, 10)}`,
      clean: true,
      reconnectPeriod: this.options.reconnectMs ?? 3000,
      connectTimeout: this.options.connectTimeoutMs ?? 10_000,
      // Subscriptions are made again by this class on every connect.
      resubscribe: false,
      ...(this.options.username ? { username: this.options.username } : {}),
      ...(this.options.password ? { password: this.options.password } : {}),
    };
    const client = mqtt.connect(this.options.url, options);
    this.client = client;
    let connectedOnce = false;
    /** Why the broker ended the connection, when it said (MQTT 5 DISCONNECT). */
    let endedBecause: string | null = null;

    client.on('connect', () => {
      connectedOnce = true;
      endedBecause = null;
      this.setState({ phase: 'connected', protocolVersion: this.version, failures: 0, lastError: null });
      for (const [filter, qos] of this.filters) {
        client.subscribe(filter, { qos }, (err) => {
          if (err) this.setState({ lastError: `subscription to ${filter} refused: ${err.message}` });
        });
      }
    });
    client.on('message', (topic: string, payload: Buffer, packet: IPublishPacket) => {
      const data = packet.properties?.correlationData;
      this.onMessage(topic, payload, data ? new TextDecoder().decode(data) : null);
    });
    client.on('error', (err: Error & { code?: unknown }) => {
      if (this.version === 5 && refusesProtocolVersion(err) && !connectedOnce) {
        // The development broker (MQTT 3.1.1): start again with 3.1.1.
        this.version = 4;
        this.client = null;
        client.end(true);
        if (!this.closed) this.open();
        return;
      }
      if (isConnackRefusal(err)) {
        this.setState({ phase: 'refused', lastError: err.message, failures: this.current.failures + 1 });
        setTimeout(() => {
          if (this.client === client && !this.closed && !client.connected) client.reconnect();
        }, REFUSED_RETRY_MS);
        return;
      }
      this.setState({ lastError: err.message });
    });
    client.on('disconnect', (packet) => {
      endedBecause =
        packet.reasonCode === SESSION_TAKEN_OVER
          ? 'another client with the same identity took over this session (two browsers sharing one certificate?)'
          : `the broker ended the connection (reason ${packet.reasonCode ?? 0})`;
    });
    client.on('close', () => {
      if (this.client !== client || this.closed) return;
      if (this.current.phase === 'refused') return;
      const lost = this.current.phase === 'connected';
      this.setState({
        phase: 'unreachable',
        failures: this.current.failures + (lost ? 0 : 1),
        lastError: lost ? (endedBecause ?? 'the connection was lost') : (this.current.lastError ?? 'no connection'),
      });
    });
  }
}
