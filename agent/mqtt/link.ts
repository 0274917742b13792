/**
 * The agent's one connection to the broker: it owns the MQTT.js client, says
 * whether the box is alive (birth on every connect, Last Will and a clean
 * offline on stop, all retained on the status topic), receives commands and
 * publishes events, telemetry and answers.
 *
 * Written for a fleet: MQTT.js's own reconnect (a fixed 1 s, the same for
 * every box) is off, and this link reconnects with exponential backoff and
 * full jitter, so thousands of boxes losing one broker do not come back in
 * lockstep. The session is persistent (clean start off, a session expiry), so
 * QoS 1 commands sent while the box was away are delivered when it is back.
 * While disconnected, events wait in a queue bounded by count and bytes; the
 * oldest are dropped first and the loss is reported after the reconnect.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import {
  connect,
  type IClientOptions,
  type IClientPublishOptions,
  type IConnackPacket,
  type IDisconnectPacket,
  type IPublishPacket,
  type ISubscriptionGrant,
  type MqttClient,
} from 'mqtt';
import type { Logger } from 'pino';
import type { Topics } from './topics.js';

export interface ReconnectPolicy {
  /** First delay range and backoff unit. */
  baseMs: number;
  /** Longest delay between two attempts. */
  capMs: number;
  /** A connection that lasted this long resets the backoff; a shorter one keeps climbing. */
  stableMs: number;
}

export interface OfflineQueueLimits {
  maxEvents: number;
  maxBytes: number;
}

export interface MqttLinkOptions {
  /** mqtt://, mqtts://, tcp://, ssl://, ws:// or wss:// */
  url: string;
  /** Stable per device: the broker keeps the persistent session under it. */
  clientId: string;
  username?: string;
  password?: string;
  /** 5 (default in the agent's config) or 3.1.1 (4). */
  protocolVersion: 5 | 4;
  keepaliveSec: number;
  /** MQTT 5: how long the broker keeps the session (and queued QoS 1 commands) after a disconnect (3.1.1: the broker decides). */
  sessionExpirySec: number;
  reconnect: ReconnectPolicy;
  offlineQueue: OfflineQueueLimits;
  topics: Topics;
  /** The retained online status published on every connect; `state: 'online'` is set by the link. */
  birth: () => Record<string, unknown>;
  /** PEM file paths, read at start() and again before every reconnect (certificate rotation). */
  tls?: { ca?: string; cert?: string; key?: string };
  logger: Logger;
  /** In [0, 1); default Math.random. */
  random?: () => number;
  /** A monotonic clock in ms (connection lifetimes for the backoff reset); default performance.now. */
  now?: () => number;
  /** Wall clock in ms (the `since` of a queue overflow); default Date.now. */
  wallClock?: () => number;
  /** How long stop() waits for the broker to take the offline status before it cuts the connection (default 3000). */
  stopTimeoutMs?: number;
}

/** What a command handler may need from the request besides its payload. */
export type CommandPacket = Pick<IPublishPacket, 'topic' | 'qos' | 'retain' | 'dup' | 'properties'>;

export type CommandHandler = (name: string, payload: Buffer, packet: CommandPacket) => void | Promise<void>;

export interface MqttLinkStats {
  /** Successful connections (CONNACK accepted). */
  connects: number;
  /** Established connections lost or closed. */
  disconnects: number;
  /** Messages waiting in the offline queue now. */
  queued: number;
  /** Messages dropped from the offline queue since start. */
  dropped: number;
  /** Messages the broker acknowledged (QoS 1) or that were written (QoS 0). */
  published: number;
  /** QoS 1 messages the broker refused (MQTT 5 PUBACK reason code 0x80 or above: an ACL, a quota). */
  refused: number;
}

export interface QueueOverflow {
  dropped: number;
  droppedBytes: number;
  /** Epoch ms of the first drop in this offline period (as every event timestamp). */
  since: number;
}

export interface QueuedMessage {
  topic: string;
  payload: Buffer;
  options: IClientPublishOptions;
}

const OFFLINE_PAYLOAD = Buffer.from(JSON.stringify({ state: 'offline' }));
const DEFAULT_STOP_TIMEOUT_MS = 3000;
// 2^30 * any sane base is far beyond any cap; stops the power from overflowing to Infinity.
const MAX_BACKOFF_EXPONENT = 30;

/**
 * Full-jitter backoff: a uniform delay in [0, min(cap, base * 2^attempt)). Attempt 0 is the
 * random first delay in [0, base) that spreads a fleet's reconnects after a broker restart.
 */
export function reconnectDelayMs(
  attempt: number,
  policy: Pick<ReconnectPolicy, 'baseMs' | 'capMs'>,
  random: () => number,
): number {
  const exponent = Math.min(Math.max(0, Math.floor(attempt)), MAX_BACKOFF_EXPONENT);
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** exponent);
  return random() * ceiling;
}

/** The attempt counter behind reconnectDelayMs, reset only by a connection that lasted stableMs. */
export class ReconnectBackoff {
  private attemptCount = 0;
  private connectedAt: number | null = null;

  constructor(
    private readonly policy: ReconnectPolicy,
    private readonly random: () => number,
    private readonly now: () => number,
  ) {}

  get attempt(): number {
    return this.attemptCount;
  }

  /** The delay before the next connection attempt; each call counts one attempt. */
  nextDelayMs(): number {
    const delay = reconnectDelayMs(this.attemptCount, this.policy, this.random);
    this.attemptCount += 1;
    return delay;
  }

  connected(): void {
    this.connectedAt = this.now();
  }

  disconnected(): void {
    // A broker that accepts and drops at once must not reset the backoff: only a stable connection does.
    if (this.connectedAt !== null && this.now() - this.connectedAt >= this.policy.stableMs) this.attemptCount = 0;
    this.connectedAt = null;
  }
}

/** QoS 1 messages held while the link is down: bounded by count and bytes, oldest dropped first. */
export class OfflineQueue {
  private readonly messages: Array<{ message: QueuedMessage; bytes: number }> = [];
  private byteCount = 0;
  private droppedNow = 0;
  private droppedBytesNow = 0;
  private firstDropAt: number | null = null;
  private droppedEver = 0;

  constructor(
    private readonly limits: OfflineQueueLimits,
    private readonly wallClock: () => number = Date.now,
  ) {}

  get size(): number {
    return this.messages.length;
  }

  get bytes(): number {
    return this.byteCount;
  }

  /** Messages dropped since the queue was made. */
  get droppedTotal(): number {
    return this.droppedEver;
  }

  push(message: QueuedMessage): void {
    const bytes = message.payload.length + Buffer.byteLength(message.topic);
    if (bytes > this.limits.maxBytes || this.limits.maxEvents <= 0) {
      // Larger than the whole budget: keeping it would drop everything else and still not fit.
      this.noteDrop(bytes);
      return;
    }
    this.messages.push({ message, bytes });
    this.byteCount += bytes;
    while (this.messages.length > this.limits.maxEvents || this.byteCount > this.limits.maxBytes) {
      const oldest = this.messages.shift()!;
      this.byteCount -= oldest.bytes;
      this.noteDrop(oldest.bytes);
    }
  }

  /** Every queued message, oldest first; the queue is empty afterwards. */
  drain(): QueuedMessage[] {
    const messages = this.messages.map((entry) => entry.message);
    this.messages.length = 0;
    this.byteCount = 0;
    return messages;
  }

  /** What was dropped since the last call (null when nothing was); the counts start again from zero. */
  takeOverflow(): QueueOverflow | null {
    if (this.firstDropAt === null) return null;
    const overflow = {
      dropped: this.droppedNow,
      droppedBytes: this.droppedBytesNow,
      since: this.firstDropAt,
    };
    this.droppedNow = 0;
    this.droppedBytesNow = 0;
    this.firstDropAt = null;
    return overflow;
  }

  private noteDrop(bytes: number): void {
    this.firstDropAt ??= this.wallClock();
    this.droppedNow += 1;
    this.droppedBytesNow += bytes;
    this.droppedEver += 1;
  }
}

type TlsFiles = NonNullable<MqttLinkOptions['tls']>;
const TLS_FILE_NAMES: ReadonlyArray<[keyof TlsFiles, string]> = [
  ['ca', 'CA file'],
  ['cert', 'certificate file'],
  ['key', 'key file'],
];

/** The PEM contents of the configured TLS files; throws naming the first one that cannot be read. */
function readTlsFiles(tls: TlsFiles | undefined): Partial<Record<keyof TlsFiles, Buffer>> {
  const contents: Partial<Record<keyof TlsFiles, Buffer>> = {};
  for (const [key, what] of TLS_FILE_NAMES) {
    const path = tls?.[key];
    if (path === undefined) continue;
    try {
      contents[key] = readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read the MQTT TLS ${what} ${path}: ${(err as Error).message}`);
    }
  }
  return contents;
}

function serialize(payload: object): Buffer {
  return Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload));
}

export class MqttLink {
  private client: MqttClient | null = null;
  private readonly log: Logger;
  private readonly topics: Topics;
  private readonly backoff: ReconnectBackoff;
  private readonly queue: OfflineQueue;
  private latestTelemetry: Buffer | null = null;
  private readonly pendingRetained = new Map<string, Buffer>();
  private commandHandler: CommandHandler | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private isConnected = false;
  private stopping = false;
  private startPromise: Promise<void> | null = null;
  private resolveStart: (() => void) | null = null;
  private stopPromise: Promise<void> | null = null;
  private connects = 0;
  private disconnects = 0;
  private published = 0;
  private refused = 0;

  constructor(private readonly options: MqttLinkOptions) {
    this.log = options.logger;
    this.topics = options.topics;
    this.backoff = new ReconnectBackoff(
      options.reconnect,
      options.random ?? Math.random,
      options.now ?? (() => performance.now()),
    );
    this.queue = new OfflineQueue(options.offlineQueue, options.wallClock);
  }

  get connected(): boolean {
    return this.isConnected;
  }

  stats(): MqttLinkStats {
    return {
      connects: this.connects,
      disconnects: this.disconnects,
      queued: this.queue.size,
      dropped: this.queue.droppedTotal,
      published: this.published,
      refused: this.refused,
    };
  }

  /**
   * Connects and keeps reconnecting until stop(). Resolves on the first connection (or when stop()
   * comes first) and never rejects for a missing broker: a box without one keeps running, so callers
   * need not await it. Throws only for what can never work (an unreadable TLS file, a bad URL).
   */
  start(): Promise<void> {
    if (this.startPromise !== null) return this.startPromise;
    if (this.stopping) return Promise.resolve();
    let client: MqttClient;
    try {
      client = connect(this.options.url, this.clientOptions());
    } catch (err) {
      return Promise.reject(err);
    }
    this.startPromise = new Promise<void>((resolve) => {
      this.resolveStart = resolve;
    });
    this.client = client;
    client.on('connect', (connack) => this.onConnect(client, connack));
    client.on('close', () => this.onClose(client));
    client.on('error', (err) => this.log.warn({ err: err.message, url: this.options.url }, 'MQTT connection error'));
    client.on('disconnect', (packet: IDisconnectPacket) =>
      this.log.warn(
        { reasonCode: packet.reasonCode, reason: packet.properties?.reasonString },
        'broker disconnected us',
      ),
    );
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    return this.startPromise;
  }

  /**
   * Sets the one handler for `cmd/<name>` messages (replacing any earlier one); a throw is logged, not fatal.
   * Set it before start(): commands the session kept for us arrive right after the connection.
   */
  onCommand(handler: CommandHandler): void {
    this.commandHandler = handler;
  }

  /** QoS 1, not retained. Queued while disconnected (bounded, oldest dropped first) and sent in order on reconnect. */
  publishEvent(kind: string, payload: object): void {
    const message = this.prepare(this.topics.event(kind), payload, { qos: 1, retain: false });
    if (message !== null) this.sendOrQueue(message);
  }

  /** QoS 0 and never queued: while disconnected only the latest snapshot is kept, and sent on reconnect. */
  publishTelemetry(payload: object): void {
    const message = this.prepare(this.topics.telemetry, payload, { qos: 0, retain: false });
    if (message === null) return;
    if (this.isConnected) this.send(message);
    else this.latestTelemetry = message.payload;
  }

  /** QoS 1, retained (capabilities). While disconnected the latest per topic is kept and sent on reconnect. */
  publishRetained(topic: string, payload: object): void {
    const message = this.prepare(topic, payload, { qos: 1, retain: true });
    if (message === null) return;
    if (this.isConnected) this.send(message);
    else this.pendingRetained.set(topic, message.payload);
  }

  /**
   * A command's answer, QoS 1, with the request's correlation data under MQTT 5 (under 3.1.1 the
   * correlation travels in the payload's id). Queued with the events while disconnected.
   */
  publishResponse(topic: string, payload: object, correlationData?: Buffer): void {
    const options: IClientPublishOptions = { qos: 1, retain: false };
    if (correlationData !== undefined && this.options.protocolVersion === 5) options.properties = { correlationData };
    const message = this.prepare(topic, payload, options);
    if (message !== null) this.sendOrQueue(message);
  }

  /** Publishes the retained offline status, disconnects and clears every timer. Safe twice. */
  stop(): Promise<void> {
    this.stopPromise ??= this.shutdown();
    return this.stopPromise;
  }

  private clientOptions(): IClientOptions {
    const { options } = this;
    const clientOptions: IClientOptions = {
      clientId: options.clientId,
      protocolVersion: options.protocolVersion,
      // Persistent session in both protocol versions: QoS 1 commands sent while we were away are kept for us.
      clean: false,
      keepalive: options.keepaliveSec,
      // MQTT.js would retry every second on its own, the whole fleet in step; onClose schedules retries instead.
      reconnectPeriod: 0,
      // Only recorded when reconnectPeriod > 0 anyway; onConnect subscribes on every connection.
      resubscribe: false,
      // Telemetry is QoS 0 and must not pile up inside MQTT.js while disconnected.
      queueQoSZero: false,
      will: { topic: this.topics.status, payload: OFFLINE_PAYLOAD, qos: 1, retain: true },
    };
    if (options.protocolVersion === 5) clientOptions.properties = { sessionExpiryInterval: options.sessionExpirySec };
    if (options.username !== undefined) clientOptions.username = options.username;
    if (options.password !== undefined) clientOptions.password = options.password;
    Object.assign(clientOptions, readTlsFiles(options.tls));
    return clientOptions;
  }

  private onConnect(client: MqttClient, connack: IConnackPacket): void {
    if (client !== this.client || this.stopping) return;
    // An answer is written right after the request's PUBACK: with Nagle's algorithm on (MQTT.js leaves it
    // on) it waits for the peer's delayed ACK, about 40 ms a command on loopback (npm run bench, row 6).
    (client.stream as { setNoDelay?: (noDelay?: boolean) => unknown }).setNoDelay?.(true);
    this.isConnected = true;
    this.connects += 1;
    this.backoff.connected();
    this.log.info(
      { url: this.options.url, sessionPresent: connack.sessionPresent, connects: this.connects },
      'connected to the MQTT broker',
    );
    this.resolveStart?.();
    this.resolveStart = null;

    // Subscribe on every connection, even with a session present: a broker that lost its state (no
    // persistence, expired session) answers sessionPresent=false, and MQTT.js resubscribes nothing by itself
    // with reconnectPeriod 0. Retain handling 2: a command left retained by mistake must not run again on
    // every reconnect.
    const subscription = this.options.protocolVersion === 5 ? { qos: 1 as const, rh: 2 } : { qos: 1 as const };
    client.subscribe(this.topics.commandFilter, subscription, (err, granted) => this.onSubscribed(err, granted));
    // After the SUBSCRIBE on the same connection: whoever sees 'online' can command the box.
    this.send({ topic: this.topics.status, payload: this.birthPayload(), options: { qos: 1, retain: true } });

    const overflow = this.queue.takeOverflow();
    if (overflow !== null) {
      this.log.warn(overflow, 'offline queue overflowed: oldest events dropped');
      this.send({
        topic: this.topics.event('queue-overflow'),
        payload: serialize(overflow),
        options: { qos: 1, retain: false },
      });
    }
    for (const message of this.queue.drain()) this.send(message);
    for (const [topic, payload] of this.pendingRetained) {
      this.send({ topic, payload, options: { qos: 1, retain: true } });
    }
    this.pendingRetained.clear();
    if (this.latestTelemetry !== null) {
      this.send({ topic: this.topics.telemetry, payload: this.latestTelemetry, options: { qos: 0, retain: false } });
      this.latestTelemetry = null;
    }
  }

  private onSubscribed(err: Error | null | undefined, granted: ISubscriptionGrant[] | undefined): void {
    if (err) {
      // The connection went away before SUBACK: the next connect subscribes again.
      this.log.debug({ err: err.message }, 'command subscription not confirmed');
      return;
    }
    const refused = (granted ?? []).filter((grant) => grant.qos > 2);
    if (refused.length > 0) {
      this.log.error({ topic: this.topics.commandFilter, granted: refused }, 'broker refused the command subscription');
    }
  }

  private onClose(client: MqttClient): void {
    if (client !== this.client) return;
    if (this.isConnected) {
      this.isConnected = false;
      this.disconnects += 1;
      this.backoff.disconnected();
      if (!this.stopping) this.log.warn({ url: this.options.url }, 'lost the MQTT broker connection');
    }
    if (this.stopping || this.reconnectTimer !== null) return;
    const attempt = this.backoff.attempt;
    const delayMs = this.backoff.nextDelayMs();
    this.log.debug({ attempt, delayMs: Math.round(delayMs) }, 'MQTT reconnect scheduled');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.stopping) return;
      this.rereadTlsFiles(client);
      // The same client with its own stores: client.reconnect() without them would start empty stores and
      // lose the QoS 1 messages in flight when the connection dropped (their callbacks would never run).
      client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore });
    }, delayMs);
  }

  /**
   * Certificates are rotated on the box by replacing the files: read them again before each reconnect, so
   * the next connection uses them with no restart. MQTT.js builds every connection from client.options. All
   * or nothing: when one file cannot be read (caught mid-replacement), the set in use stays, with a warning.
   */
  private rereadTlsFiles(client: MqttClient): void {
    if (this.options.tls === undefined) return;
    try {
      Object.assign(client.options, readTlsFiles(this.options.tls));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'kept the TLS files in use: a new one cannot be read');
    }
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const name = this.topics.commandName(topic);
    if (name === null) {
      this.log.debug({ topic }, 'ignored a message outside the command topics');
      return;
    }
    const handler = this.commandHandler;
    if (handler === null) {
      this.log.warn({ command: name }, 'command received before a handler was set: ignored');
      return;
    }
    const info: CommandPacket = {
      topic: packet.topic,
      qos: packet.qos,
      retain: packet.retain,
      dup: packet.dup,
      properties: packet.properties,
    };
    try {
      const result = handler(name, payload, info);
      if (result instanceof Promise) {
        result.catch((err: unknown) => this.log.error({ err, command: name }, 'command handler failed'));
      }
    } catch (err) {
      this.log.error({ err, command: name }, 'command handler failed');
    }
  }

  private birthPayload(): Buffer {
    let details: Record<string, unknown> = {};
    try {
      details = this.options.birth();
    } catch (err) {
      this.log.error({ err }, 'building the online status failed: publishing the bare state');
    }
    // 'state' first for people reading the topic, and always 'online' whatever birth() returned.
    return serialize(Object.assign({ state: 'online' }, details, { state: 'online' }));
  }

  private prepare(topic: string, payload: object, options: IClientPublishOptions): QueuedMessage | null {
    if (this.stopping) {
      this.log.debug({ topic }, 'MQTT link stopped: message not sent');
      return null;
    }
    try {
      return { topic, payload: serialize(payload), options };
    } catch (err) {
      this.log.error({ err, topic }, 'payload cannot be serialized: not sent');
      return null;
    }
  }

  private sendOrQueue(message: QueuedMessage): void {
    if (this.isConnected) {
      this.send(message);
      return;
    }
    const droppedBefore = this.queue.droppedTotal;
    this.queue.push(message);
    if (this.queue.droppedTotal > droppedBefore && droppedBefore === 0) {
      this.log.warn(this.options.offlineQueue, 'offline queue full: dropping the oldest events');
    }
  }

  /** Hands a message to MQTT.js; only while connected (MQTT.js would otherwise queue without a bound). */
  private send(message: QueuedMessage): void {
    const client = this.client;
    if (client === null) return;
    client.publish(message.topic, message.payload, message.options, (err) => {
      if (!err) {
        this.published += 1;
        return;
      }
      const reasonCode = (err as Error & { code?: unknown }).code;
      if (typeof reasonCode === 'number' && reasonCode >= 0x80) {
        // Refused, not lost in a reconnect: retrying cannot help. 0x87 is the broker's ACL (e.g. a response
        // topic outside this box's subtree), which fleet operators must hear about.
        this.refused += 1;
        this.log.warn({ topic: message.topic, reasonCode, reason: err.message }, 'the broker refused a publish');
      } else {
        this.log.debug({ err: err.message, topic: message.topic }, 'publish not completed');
      }
    });
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.resolveStart?.();
    this.resolveStart = null;
    const client = this.client;
    if (client === null) return;
    const deadlineMs = this.options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    if (this.isConnected) {
      const offline = new Promise<void>((resolve) => {
        client.publish(this.topics.status, OFFLINE_PAYLOAD, { qos: 1, retain: true }, () => resolve());
        client.once('close', () => resolve());
      });
      await withDeadline(offline, deadlineMs);
    }
    if (client.connected) {
      // A clean DISCONNECT (the broker drops the Last Will); end() waits for unacknowledged messages first,
      // so a broker that stopped answering is cut off at the deadline.
      const ended = await withDeadline(client.endAsync(false), deadlineMs);
      if (!ended) client.stream.destroy();
    } else {
      client.end(true);
    }
    this.isConnected = false;
    this.log.info('MQTT link stopped');
  }
}

/** True when the promise settled in time; a rejection counts as settled (stop() must not throw). */
async function withDeadline(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
