/**
 * A fleet in one process: N simulated boxes, each with its own device id,
 * client id and persistent session, each talking to the broker through the
 * agent's own MQTT layer (MqttLink, the CommandRouter, StreamHealthReporter,
 * routerPublishing/routeCommands, toTelemetry, diagnose()). Only the health
 * underneath is synthetic: stream watermark levels that wander, and now and
 * then a failed DVB ioctl (EINVAL) that the agent's diagnosis code turns into
 * an errno event. Nothing here speaks MQTT itself.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Logger, pino } from 'pino';
import { diagnose } from '../../agent/diagnosis/diagnose.js';
import type { ErrnoEvent } from '../../agent/diagnosis/types.js';
import type { AgentHealth, HealthLevel, StreamHealth, Watermark } from '../../agent/health/types.js';
import { CommandError, type CommandHandlers, CommandRouter } from '../../agent/mqtt/command-router.js';
import { MqttLink, type OfflineQueueLimits, type ReconnectPolicy } from '../../agent/mqtt/link.js';
import { toTelemetry } from '../../agent/mqtt/payloads.js';
import { routeCommands, routerPublishing, StreamHealthReporter } from '../../agent/mqtt/reporting.js';
import { Topics } from '../../agent/mqtt/topics.js';
import type { StreamStatus } from '../../agent/streams/types.js';

export interface FleetOptions {
  url: string;
  devices: number;
  /** Device ids are `<idPrefix>-00001`, ... (default 'sim'). */
  idPrefix?: string;
  topicPrefix: string;
  protocolVersion?: 5 | 4;
  keepaliveSec: number;
  sessionExpirySec: number;
  reconnect: ReconnectPolicy;
  offlineQueue: OfflineQueueLimits;
  telemetryIntervalMs: number;
  /** Devices started per second (staggered start, as boxes powering up do); default 500. */
  startPerSecond?: number;
  /** Chance per device and telemetry tick of a diagnosed EINVAL (default 0.002). */
  einvalPerTick?: number;
  /** Chance per stream and tick that the watermark moves (default 0.02). */
  watermarkMovePerTick?: number;
  /** Seeds every device's generator, so a run can be repeated (default 1). */
  seed?: number;
  logger?: Logger;
  version?: string;
}

/** The commands a simulated box answers: those the synthetic model can answer honestly. */
export const SIMULATED_COMMANDS = ['status', 'streams', 'diag.dump', 'pool.resize', 'telemetry.interval'] as const;

/** mulberry32: small, fast, seedable; plenty for a synthetic model. */
export function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface SimStream {
  id: string;
  demux: string;
  pool: { count: number; size: number };
  bitrate: number;
  watermark: Watermark;
  sinceMs: number;
  errors: Record<string, number>;
  totals: { buffers: number; bytes: number };
  recentErrors: ErrnoEvent[];
}

const WATERMARK_STEPS: readonly Watermark[] = ['low', 'normal', 'high', 'overflow'];

function levelOf(watermark: Watermark): { level: HealthLevel; reasons: string[] } {
  switch (watermark) {
    case 'overflow':
      return { level: 'critical', reasons: ['the pool overflowed: the kernel dropped data'] };
    case 'high':
      return { level: 'degraded', reasons: ['the pool is above its high watermark'] };
    case 'no-data':
      return { level: 'degraded', reasons: ['no data in the window'] };
    default:
      return { level: 'ok', reasons: [] };
  }
}

const FILL_BY_WATERMARK: Readonly<Record<Watermark, number>> = {
  'no-data': 0,
  low: 0.15,
  normal: 0.5,
  high: 0.85,
  overflow: 1,
};

/** The synthetic box underneath one device: two streams, their health, the agent's own health. */
export class SyntheticBox {
  readonly streams: SimStream[];
  private readonly startedAt = Date.now();

  constructor(
    readonly deviceId: string,
    private readonly random: () => number,
    private readonly windowMs: number,
  ) {
    const now = Date.now();
    const stream = (id: string, adapter: number, count: number, bitrate: number): SimStream => ({
      id,
      demux: `/dev/dvb/adapter${adapter}/demux0`,
      pool: { count, size: 188 * 64 },
      bitrate,
      watermark: 'normal',
      sinceMs: now,
      errors: {},
      totals: { buffers: 0, bytes: 0 },
      recentErrors: [],
    });
    this.streams = [stream('main', 0, 16, 12_000_000), stream('pip', 1, 8, 3_000_000)];
  }

  stream(id: string): SimStream {
    const found = this.streams.find((s) => s.id === id);
    if (!found) throw new CommandError('unknown-stream', `no stream "${id}" is configured`);
    return found;
  }

  /** One step of the model; returns the streams whose health was sampled. */
  step(watermarkMove: number): void {
    for (const s of this.streams) {
      const bytes = (s.bitrate / 8) * (this.windowMs / 1000);
      s.totals.bytes += bytes;
      s.totals.buffers += Math.round(bytes / s.pool.size);
      if (this.random() < watermarkMove) {
        // A walk that drifts back to normal: pressure builds one step at a time and eases again.
        const at = WATERMARK_STEPS.indexOf(s.watermark);
        const up = s.watermark === 'normal' ? this.random() < 0.7 : at < 1;
        const next = WATERMARK_STEPS[Math.max(0, Math.min(WATERMARK_STEPS.length - 1, up ? at + 1 : at - 1))];
        if (next !== undefined) s.watermark = next;
      }
    }
  }

  /** A failed DVB ioctl, as the native layer would throw it, diagnosed by the agent's own code. */
  einval(): ErrnoEvent {
    const s = this.streams[Math.floor(this.random() * this.streams.length)] ?? this.streams[0]!;
    const failures: Array<{ request: string; args: Record<string, number>; message: string }> = [
      {
        request: 'DMX_QBUF',
        args: { index: s.pool.count + Math.floor(this.random() * 4) },
        message: 'DMX_QBUF: Invalid argument',
      },
      { request: 'DMX_EXPBUF', args: { index: 0, flags: 0o4000000 | 0x10 }, message: 'DMX_EXPBUF: Invalid argument' },
      { request: 'DMX_QBUF', args: { index: 1, expectedSize: s.pool.size * 2 }, message: 'DMX_QBUF: Invalid argument' },
    ];
    const failure = failures[Math.floor(this.random() * failures.length)] ?? failures[0]!;
    const key = `${failure.request}:EINVAL`;
    s.errors[key] = (s.errors[key] ?? 0) + 1;
    const event = diagnose(
      {
        code: 'EINVAL',
        errno: -22,
        syscall: 'ioctl',
        request: failure.request,
        path: s.demux,
        args: failure.args,
        message: failure.message,
      },
      { stream: s.id, pool: { ...s.pool, streaming: true } },
    );
    s.recentErrors = [...s.recentErrors.slice(-4), event];
    return event;
  }

  status(s: SimStream): StreamStatus {
    const { level, reasons } = levelOf(s.watermark);
    return {
      stream: s.id,
      state: level === 'ok' ? 'streaming' : 'degraded',
      reason: reasons[0] ?? 'streaming',
      sinceMs: s.sinceMs,
      pool: { ...s.pool },
      sink: { type: 'decoder', attached: true, detail: `/dev/video${s.id === 'main' ? 0 : 1}` },
      failures: 0,
      retryAtMs: null,
    };
  }

  health(s: SimStream): StreamHealth {
    const { level, reasons } = levelOf(s.watermark);
    const atMs = Date.now();
    const bytesPerSecond = s.bitrate / 8;
    const buffersPerSecond = bytesPerSecond / s.pool.size;
    const zero = { total: 0, window: 0 };
    const kernel = s.watermark === 'overflow' ? 0 : Math.max(1, s.pool.count - 3);
    return {
      stream: s.id,
      atMs,
      windowMs: this.windowMs,
      pool: { ...s.pool },
      ledger: { kernel, agent: 1, decoder: s.pool.count - kernel - 1, consumer: 0 },
      fillRatio: FILL_BY_WATERMARK[s.watermark],
      rate: { bytesPerSecond, buffersPerSecond, bitsPerSecond: s.bitrate },
      totals: { ...s.totals },
      flags: {
        crc32Discard: zero,
        tei: zero,
        packetCounterMismatch: zero,
        discontinuityDetected: zero,
        discontinuityIndicator: zero,
      },
      ts: { syncErrors: 0, teiPackets: 0 },
      ccGaps: { total: 0, window: 0, byPid: {} },
      zeroQueued: {
        totalMs: 0,
        windowMs: s.watermark === 'overflow' ? 120 : 0,
        share: s.watermark === 'overflow' ? 120 / this.windowMs : 0,
        episodes: s.watermark === 'overflow' ? 1 : 0,
        estimatedLossBytes: s.watermark === 'overflow' ? Math.round(bytesPerSecond * 0.12) : 0,
      },
      sinkLatencyMs: { p50: 4, p95: 9, p99: 12, max: 20, mean: 5 },
      errors: { ...s.errors },
      exportedFds: s.pool.count,
      anomalies: [],
      watermark: s.watermark,
      level,
      reasons,
    };
  }

  agentHealth(): AgentHealth {
    const levels = this.streams.map((s) => levelOf(s.watermark).level);
    const degraded = levels.filter((level) => level !== 'ok').length;
    return {
      atMs: Date.now(),
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      rssBytes: 38_000_000 + Math.floor(this.random() * 2_000_000),
      heapUsedBytes: 12_000_000 + Math.floor(this.random() * 1_000_000),
      eventLoopLagMs: { mean: 0.4, p99: 2.1, max: 4 },
      openFds: 40 + this.streams.reduce((sum, s) => sum + s.pool.count, 0),
      streams: { total: this.streams.length, streaming: levels.length - degraded, degraded, failed: 0, other: 0 },
    };
  }
}

/** One simulated box: the agent's link and router over a SyntheticBox. */
export class SimDevice {
  readonly topics: Topics;
  readonly link: MqttLink;
  readonly model: SyntheticBox;
  /** performance.now() of every accepted connection, in order (the link builds its birth once per connection). */
  readonly connectTimes: number[] = [];
  private readonly router: CommandRouter;
  private readonly reporter: StreamHealthReporter;
  private readonly bootTime = new Date().toISOString();
  private telemetryMs: number;
  private timer: NodeJS.Timeout | null = null;
  private telemetrySent = false;

  constructor(
    readonly deviceId: string,
    private readonly options: FleetOptions,
    private readonly random: () => number,
    logger: Logger,
  ) {
    this.telemetryMs = options.telemetryIntervalMs;
    this.topics = new Topics(options.topicPrefix, deviceId);
    this.model = new SyntheticBox(deviceId, random, options.telemetryIntervalMs);
    const version = options.version ?? '0.0.0-fleet-sim';
    const configDigest = createHash('sha256').update(`fleet-sim:${deviceId}`).digest('hex');
    this.link = new MqttLink({
      url: options.url,
      clientId: `dmx-agent-${deviceId}`,
      protocolVersion: options.protocolVersion ?? 5,
      keepaliveSec: options.keepaliveSec,
      sessionExpirySec: options.sessionExpirySec,
      reconnect: options.reconnect,
      offlineQueue: options.offlineQueue,
      topics: this.topics,
      birth: () => {
        this.connectTimes.push(performance.now());
        return { version, bootTime: this.bootTime, configDigest, deviceId };
      },
      logger,
      random,
    });
    this.reporter = new StreamHealthReporter(this.link, () => this.publishTelemetry());
    const model = this.model;
    const handlers: CommandHandlers = {
      status: () => ({
        deviceId,
        version,
        bootTime: this.bootTime,
        health: model.agentHealth(),
        streams: model.streams.map((s) => model.status(s)),
      }),
      streams: () => model.streams.map((s) => ({ ...model.status(s), health: model.health(s) })),
      'diag.dump': (args) => {
        const streams = typeof args.stream === 'string' ? [model.stream(args.stream)] : model.streams;
        return {
          health: model.agentHealth(),
          streams: streams.map((s) => ({ status: model.status(s), health: model.health(s), errors: s.recentErrors })),
        };
      },
      'pool.resize': (args) => {
        const s = model.stream(args.stream);
        const from = { ...s.pool };
        const to = { count: args.count ?? from.count, size: args.size ?? from.size };
        if (to.count === from.count && to.size === from.size) {
          throw new CommandError('resize-refused', `the pool is already ${from.count} x ${from.size}`);
        }
        s.pool = to;
        return { outcome: 'applied', from, to, reason: 'remote command' };
      },
      'telemetry.interval': (args) => {
        this.telemetryMs = args.ms;
        if (this.timer !== null) this.schedule();
        return { ms: args.ms };
      },
    };
    this.router = new CommandRouter({ handlers, ...routerPublishing(this.link, this.topics, logger) });
  }

  /** Connects in the background (as the agent does) and starts the health ticks. */
  start(): void {
    routeCommands(this.link, this.router);
    void this.link.start();
    this.schedule();
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.link.stop();
  }

  /** One health interval: the model moves, each stream's health is reported, telemetry goes out. */
  tick(): void {
    const options = this.options;
    this.model.step(options.watermarkMovePerTick ?? 0.02);
    if (this.random() < (options.einvalPerTick ?? 0.002)) this.link.publishEvent('errno', this.model.einval());
    this.telemetrySent = false;
    for (const s of this.model.streams) this.reporter.report(this.model.health(s));
    // A level change already sent this tick's snapshot; the agent would not send two in one interval either.
    if (!this.telemetrySent) this.publishTelemetry();
  }

  /** Publishes an EINVAL event now (the rare event on demand, for tests). */
  injectEinval(): ErrnoEvent {
    const event = this.model.einval();
    this.link.publishEvent('errno', event);
    return event;
  }

  publishTelemetry(): void {
    const model = this.model;
    const streams = model.streams.map((s) => ({ status: model.status(s), health: model.health(s) }));
    this.link.publishTelemetry(toTelemetry(model.agentHealth(), streams, Date.now()));
    this.telemetrySent = true;
  }

  private schedule(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), this.telemetryMs);
  }
}

export function deviceIds(count: number, idPrefix = 'sim'): string[] {
  const width = Math.max(5, String(count).length);
  return Array.from({ length: count }, (_, i) => `${idPrefix}-${String(i + 1).padStart(width, '0')}`);
}

export class FleetSimulator {
  readonly devices: SimDevice[] = [];
  private stopped = false;

  constructor(private readonly options: FleetOptions) {}

  /**
   * Builds and starts every device, startPerSecond at a time; resolves when the last one was started
   * (not when it is connected: see onlineCount()).
   */
  async start(): Promise<void> {
    const { options } = this;
    const logger = options.logger ?? pino({ level: 'silent' });
    const perSecond = options.startPerSecond ?? 500;
    const batch = Math.max(1, Math.ceil(perSecond / 20));
    const began = performance.now();
    const ids = deviceIds(options.devices, options.idPrefix);
    for (const [index, id] of ids.entries()) {
      if (this.stopped) return;
      const device = new SimDevice(id, options, generator((options.seed ?? 1) * 1_000_003 + index), logger);
      this.devices.push(device);
      device.start();
      if ((index + 1) % batch === 0) {
        // Paced against the clock: a slow batch (a busy loop) is not followed by a burst.
        const due = began + ((index + 1) / perSecond) * 1000;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())));
      }
    }
  }

  onlineCount(): number {
    let online = 0;
    for (const device of this.devices) if (device.link.connected) online += 1;
    return online;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.devices.map((device) => device.stop()));
  }
}
