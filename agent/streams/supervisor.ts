/**
 * One stream, kept alive: opens its nodes, sets its filter, chooses its pool
 * with the decoder's OUTPUT format, starts the native pump, watches health,
 * and recovers by itself. Every native call here is synchronous and short
 * (every fd is O_NONBLOCK), so a supervisor's operations never interleave;
 * timers only decide *when* the next one runs.
 *
 * Three rules from the kernel shape this file (kernel-facts.md):
 * - There is no STREAMOFF on a demux pool and a DMX_REQBUFS on a streaming
 *   fd kills the stream, so a resize closes and reopens the node.
 * - A missing node (ENOENT, ENODEV) is waited for, never crashed on.
 * - A decoder that goes away leaves the pool cycling (the pump discards);
 *   the decoder is attached again when it comes back.
 */
import type { Logger } from 'pino';
import type { AgentConfig, StreamConfig } from '../config/types.js';
import { diagnose, diagnoseUnknown, preventedEvent } from '../diagnosis/diagnose.js';
import type { DiagnosisContext, ErrnoEvent } from '../diagnosis/types.js';
import type { EventBus } from '../event-bus.js';
import { StreamHealthTracker } from '../health/stream-health.js';
import type { StreamHealth } from '../health/types.js';
import {
  type ConsumerSink,
  type Decoder,
  type Demux,
  isDmxError,
  type Pump,
  type PumpEvent,
  type VideoFormat,
} from '../native/index.js';
import { backoffDelay } from './backoff.js';
import { applyPesFilter, type MediaHost, type Tuners } from './media-host.js';
import { configuredSizeimage, fitsDecoder, growPool, planPool, SizingError } from './sizing.js';
import { StreamStateMachine } from './state-machine.js';
import type { StreamStatus } from './types.js';

export interface SupervisorDeps {
  config: StreamConfig;
  agent: AgentConfig;
  media: MediaHost;
  tuners: Tuners;
  bus: EventBus;
  logger: Logger;
  /** Where diagnosed errno events go (the coalescer, then the bus). */
  report: (event: ErrnoEvent) => void;
  now?: () => number;
}

export interface PoolSize {
  count: number;
  size: number;
}

export type ResizeResult =
  | { outcome: 'applied'; from: PoolSize; to: PoolSize; reason: string }
  | { outcome: 'rolled-back'; from: PoolSize; to: PoolSize; reason: string }
  | { outcome: 'refused'; reason: string };

interface DecoderInfo {
  path: string;
  name: string;
  multiplanar: boolean;
  capabilities: number | undefined;
  output: VideoFormat;
}

/** The errnos that mean "the node is not there (yet)": wait, don't count a failure. */
const MISSING_DEVICE = new Set(['ENOENT', 'ENODEV', 'ENXIO']);

export class StreamSupervisor {
  private config: StreamConfig;
  private agent: AgentConfig;
  private readonly machine: StreamStateMachine;
  private readonly log: Logger;
  private readonly now: () => number;

  // What is open. Closed in reverse order by closeDataPath().
  private tunedAdapter: number | null = null;
  /** For a DVR source: the demux fd that carries the TS-tap filter. */
  private filterNode: Demux | null = null;
  /** The node whose vb2 queue holds the pool (demuxN or dvr0). */
  private pool: Demux | null = null;
  private decoder: Decoder | null = null;
  private decoderInfo: DecoderInfo | null = null;
  private consumer: ConsumerSink | null = null;
  private pump: Pump | null = null;

  private granted: PoolSize | null = null;
  /** A pool chosen by resize (remote command or growth), kept across restarts until the config changes. */
  private poolOverride: PoolSize | null = null;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryAt: number | null = null;
  private decoderTimer: NodeJS.Timeout | null = null;
  private sinkAttached = false;
  private sinkDetail = '';
  private stopped = true;
  private healthTracker: StreamHealthTracker | null = null;
  private lastHealth: StreamHealth | null = null;
  private pressureSince: number | null = null;
  private growthRefusedCount: number | null = null;
  private lastPolls = -1;

  constructor(private readonly deps: SupervisorDeps) {
    this.config = deps.config;
    this.agent = deps.agent;
    this.now = deps.now ?? Date.now;
    this.log = deps.logger;
    this.machine = new StreamStateMachine(
      deps.config.id,
      (change) => {
        this.log.info({ from: change.from, to: change.to, reason: change.reason }, `${change.from} -> ${change.to}`);
        deps.bus.emit('streamState', change);
      },
      this.now,
    );
  }

  get id(): string {
    return this.config.id;
  }

  get state() {
    return this.machine.state;
  }

  /** Up: buffers are cycling (streaming, or degraded). */
  get up(): boolean {
    return this.machine.up;
  }

  get streamConfig(): StreamConfig {
    return this.config;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.bringUp('start');
  }

  /** Drains and closes everything; the stream ends closed. Safe twice. */
  stop(reason = 'stop'): void {
    this.stopped = true;
    this.clearTimers();
    if (this.machine.state === 'closed') return;
    if (this.machine.state !== 'draining') this.machine.transition('draining', reason);
    this.closeDataPath({ keepSinkSocket: false });
    this.releaseFrontend();
    this.machine.transition('closed', reason);
  }

  status(): StreamStatus {
    const sink = this.config.sink;
    return {
      stream: this.config.id,
      state: this.machine.state,
      reason: this.machine.reason,
      sinceMs: this.machine.sinceMs,
      pool: this.granted ? { ...this.granted } : null,
      sink: { type: sink.type, attached: this.sinkAttached, detail: this.sinkDetail },
      failures: this.failures,
      retryAtMs: this.retryAt,
    };
  }

  /** What the pump knows right now, for a remote diagnosis dump: its counters and where each buffer is. */
  diagnostics(): { status: StreamStatus; stats: ReturnType<Pump['stats']> | null; ledger: ReturnType<Pump['ledger']> } {
    return {
      status: this.status(),
      stats: this.pump?.stats() ?? null,
      ledger: this.pump?.ledger() ?? [],
    };
  }

  /** The latest health sample, or null before the first. */
  get health(): StreamHealth | null {
    return this.lastHealth;
  }

  /**
   * The watchdog's question: is the pump thread still turning? It polls at
   * least every 200 ms even when idle, so a poll count that stands still
   * between two checks means it is stuck. No pump (waiting, failed) is not
   * a dead pump.
   */
  pumpAlive(): { alive: boolean; why?: string } {
    if (!this.pump) {
      this.lastPolls = -1;
      return { alive: true };
    }
    const stats = this.pump.stats();
    const alive = this.pump.running && (this.lastPolls < 0 || stats.polls > this.lastPolls);
    this.lastPolls = stats.polls;
    return alive ? { alive } : { alive, why: `stream ${this.id}: the pump has not polled since the last check` };
  }

  /** Samples health (called by the controller every health.intervalMs) and moves between streaming and degraded. */
  sampleHealth(): StreamHealth | null {
    if (!this.pump || !this.healthTracker || !this.machine.up) return null;
    const nowMs = this.now();
    const health = this.healthTracker.sample({
      stats: this.pump.stats(),
      ledger: this.pump.ledger(),
      nowMs,
      sinkAttached: this.sinkAttached,
      sinkExpected: this.config.sink.type === 'decoder',
    });
    this.lastHealth = health;
    this.deps.bus.emit('streamHealth', health);
    this.updateUpState(health);
    this.considerGrowth(health, nowMs);
    return health;
  }

  /**
   * Resizes the pool: drain the sink, close, reopen with the new size (never
   * a DMX_REQBUFS on a streaming fd). When the new pool cannot be had, the
   * old one is set up again and the result says why.
   */
  resize(target: Partial<PoolSize>, why = 'resize requested'): ResizeResult {
    if (!this.machine.up || !this.granted) {
      return { outcome: 'refused', reason: `stream ${this.id} is ${this.machine.state}, not streaming` };
    }
    const from = { ...this.granted };
    const to = { count: target.count ?? from.count, size: target.size ?? from.size };
    if (to.count === from.count && to.size === from.size) {
      return { outcome: 'refused', reason: `the pool is already ${describePool(from)}` };
    }
    // Checked before anything is touched: a pool the decoder cannot import,
    // or a size the kernel would clamp, never reaches the kernel.
    try {
      this.plan(to);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.reportPrevented(err, 'DMX_REQBUFS', { count: to.count, size: to.size });
      return this.resized(from, to, 'rolled-back', `refused before any change: ${reason}`);
    }
    this.machine.transition('draining', `resize ${describePool(from)} -> ${describePool(to)}`);
    this.closeDataPath({ keepSinkSocket: true });
    try {
      this.openDataPath(to, `resize to ${describePool(to)}`);
      const granted = this.granted as PoolSize | null;
      if (granted && granted.count < to.count && granted.count < from.count) {
        // The kernel granted fewer buffers than the pool being replaced: that is no resize.
        throw new RangeError(
          `the kernel granted ${granted.count} of ${to.count} buffers, fewer than the ${from.count} of the old pool`,
        );
      }
      this.poolOverride = to;
      return this.resized(from, this.granted ?? to, 'applied', why);
    } catch (err) {
      const reason = this.reportError(err);
      this.machine.transition('draining', `rolling back to ${describePool(from)}: ${reason}`);
      this.closeDataPath({ keepSinkSocket: true });
      try {
        this.openDataPath(from, `rolled back to ${describePool(from)}: ${reason}`);
        return this.resized(from, to, 'rolled-back', reason);
      } catch (err2) {
        this.fail(err2);
        return this.resized(from, to, 'rolled-back', `${reason}; the old pool could not be set up again either`);
      }
    }
  }

  /** A new configuration for this stream (SIGHUP). Pool-only changes resize; anything else restarts. */
  reconfigure(config: StreamConfig, agent: AgentConfig): 'unchanged' | 'resized' | 'rolled-back' | 'restarted' {
    const before = this.config;
    const beforeOverride = this.poolOverride;
    const healthChanged = JSON.stringify(this.agent.health) !== JSON.stringify(agent.health);
    this.agent = agent;
    if (healthChanged && this.healthTracker && this.granted) {
      this.healthTracker = new StreamHealthTracker({
        stream: this.id,
        bitrate: this.config.bitrate,
        pool: this.granted,
        health: agent.health,
      });
    }
    if (JSON.stringify(before) === JSON.stringify(config)) return 'unchanged';
    this.config = config;
    this.poolOverride = null;
    this.growthRefusedCount = null;
    const onlyPool = JSON.stringify({ ...before, pool: null }) === JSON.stringify({ ...config, pool: null });
    if (onlyPool && this.machine.up && this.granted) {
      // A pool that cannot be had leaves the running one, and the configuration it came from, in place:
      // the next restart must not retry what was just refused.
      const rollBack = () => {
        this.config = before;
        this.poolOverride = beforeOverride;
        return 'rolled-back' as const;
      };
      let next: PoolSize;
      try {
        next = this.plan(null);
      } catch (err) {
        // The loader checks pools; only the decoder's granted sizeimage can still say no.
        this.reportPrevented(err, 'DMX_REQBUFS', {});
        return rollBack();
      }
      if (next.count === this.granted.count && next.size === this.granted.size) return 'unchanged';
      return this.resize(next, 'configuration reloaded').outcome === 'applied' ? 'resized' : rollBack();
    }
    this.stop('configuration changed');
    this.start();
    return 'restarted';
  }

  // ------------------------------------------------------------ bring-up

  private bringUp(why: string): void {
    this.clearRetry();
    if (this.stopped) return;
    try {
      this.openDataPath(this.poolOverride, why);
    } catch (err) {
      if (this.isMissingDevice(err)) {
        this.closeDataPath({ keepSinkSocket: true });
        this.releaseFrontend();
        const what = isDmxError(err) ? (err.path ?? 'a device') : 'a device';
        // A node that is not there yet (driver loading, USB tuner unplugged):
        // wait for it without counting a failure.
        this.reportError(err);
        this.machine.transition(this.machine.state === 'opening' ? 'opening' : 'failed', `waiting for ${what}`);
        this.scheduleRetry(this.agent.supervision.deviceWaitMs, 'device check');
        return;
      }
      this.fail(err);
    }
  }

  /**
   * opening → configuring → allocating → streaming. Throws with whatever was
   * opened still open: the caller closes it.
   */
  private openDataPath(size: PoolSize | null, why: string): void {
    const cfg = this.config;
    this.machine.transition('opening', why);
    if (cfg.tuning && this.tunedAdapter === null) {
      this.deps.tuners.acquire(cfg.adapter, cfg.tuning);
      this.tunedAdapter = cfg.adapter;
    }
    const base = `/dev/dvb/adapter${cfg.adapter}`;
    const demuxPath = `${base}/demux${cfg.demux}`;
    if (cfg.source === 'dvr') {
      this.filterNode = this.deps.media.openDemux(demuxPath, 'demux');
      this.pool = this.deps.media.openDemux(`${base}/dvr0`, 'dvr');
    } else {
      this.pool = this.deps.media.openDemux(demuxPath, 'demux');
    }

    this.machine.transition('configuring', `filter ${cfg.filter.output} on ${cfg.filter.pids.map(hexPid).join(', ')}`);
    applyPesFilter(this.filterNode ?? this.pool, cfg.filter.pids, cfg.filter.output);
    this.openSink();
    const plan = this.plan(size);

    this.machine.transition('allocating', `DMX_REQBUFS ${describePool(plan)}`);
    const granted = this.pool.requestBuffers(plan.count, plan.size);
    if (granted.count < 2) {
      throw new RangeError(`the kernel granted ${granted.count} buffer(s) of the ${plan.count} asked; a pool needs 2`);
    }
    this.granted = { count: granted.count, size: granted.size };
    this.pool.mapBuffers();
    if (cfg.sink.type !== 'discard') this.pool.exportBuffers();
    if (this.decoder) this.prepareDecoder(this.decoder, granted.count);
    this.startPump();
    this.failures = 0;
    this.healthTracker = new StreamHealthTracker({
      stream: cfg.id,
      bitrate: cfg.bitrate,
      pool: this.granted,
      health: this.agent.health,
    });
    this.lastHealth = null;
    this.pressureSince = null;
    this.machine.transition(
      this.sinkAttached || cfg.sink.type !== 'decoder' ? 'streaming' : 'degraded',
      `${describePool(this.granted)} into ${this.sinkDetail}`,
    );
    if (!this.sinkAttached && cfg.sink.type === 'decoder') this.scheduleDecoderRetry();
  }

  /** The pool to ask for: a fixed size (resize), else the configured or derived one, fitted to the decoder. */
  private plan(size: PoolSize | null): PoolSize {
    const p = this.config.pool;
    const fixedSize = size?.size ?? p.size;
    return planPool({
      bitrate: this.config.bitrate,
      latencyMs: p.latencyMs,
      bufferingMs: p.bufferingMs,
      count: size?.count ?? p.count,
      size: fixedSize,
      // A derived size is always fitted to the decoder. With prevention off a fixed size goes to the
      // decoder as configured, so the kernel's own EINVAL is what gets diagnosed.
      // Without the decoder yet, the sizeimage its configured raw format will have.
      decoderSizeimage:
        this.agent.supervision.preventKnownBad || fixedSize === null
          ? (this.decoderInfo?.output.sizeimage ?? configuredSizeimage(this.config))
          : null,
    });
  }

  private openSink(): void {
    const sink = this.config.sink;
    if (sink.type === 'discard') {
      this.sinkAttached = true;
      this.sinkDetail = 'discard';
      return;
    }
    if (sink.type === 'consumer') {
      // The listening socket outlives resizes: a player stays connected.
      this.consumer ??= this.deps.media.openConsumerSink({
        socketPath: sink.socketPath,
        streamId: this.config.id,
        // 0: the native default (the pool count minus two).
        ...(sink.maxInFlight > 0 ? { maxInFlight: sink.maxInFlight } : {}),
        holdTimeoutMs: sink.holdTimeoutMs,
      });
      this.sinkAttached = true;
      this.sinkDetail = `consumer ${sink.socketPath}`;
      return;
    }
    this.openDecoder();
  }

  /** Finds and formats the decoder; a decoder that is not there leaves the stream to come up without it. */
  private openDecoder(): boolean {
    const sink = this.config.sink;
    if (sink.type !== 'decoder') return false;
    const path = this.deps.media.findDecoder(sink.decoder);
    if (!path) {
      this.sinkAttached = false;
      this.sinkDetail = `decoder ${sink.decoder} (not found)`;
      return false;
    }
    const decoder = this.deps.media.openDecoder(path);
    try {
      const cap = decoder.querycap();
      const output = decoder.setFormat('output', {
        fourcc: sink.format.fourcc,
        width: sink.format.width,
        height: sink.format.height,
        ...(sink.format.sizeimage !== null ? { sizeimage: sink.format.sizeimage } : {}),
      });
      const capture = sink.captureFormat ?? sink.format;
      decoder.setFormat('capture', { fourcc: capture.fourcc, width: capture.width, height: capture.height });
      // A count-0 REQBUFS in MMAP mode reads the capabilities even where DMABUF is missing
      // (asking for DMABUF there is itself an EINVAL).
      const caps = decoder.probeBuffers('output', 'mmap');
      this.decoderInfo = {
        path,
        name: cap.card,
        multiplanar: cap.multiplanar,
        capabilities: caps.capabilities,
        output,
      };
      if (!caps.supportsDmabuf) {
        const event = preventedEvent(
          'v4l2-memory-type-unsupported',
          {
            stream: this.id,
            device: path,
            ioctl: 'VIDIOC_REQBUFS',
            errno: 'EINVAL',
            args: { memory: 4, capabilities: caps.capabilities },
            message: `${path} cannot import DMABUFs on its OUTPUT queue (capabilities 0x${caps.capabilities.toString(16)})`,
          },
          this.now(),
        );
        this.deps.report(event);
        throw new RangeError(event.summary);
      }
      this.decoder = decoder;
      this.sinkAttached = true;
      this.sinkDetail = `decoder ${cap.card} ${path} (${output.fourcc} ${output.width}x${output.height}, sizeimage ${output.sizeimage})`;
      return true;
    } catch (err) {
      decoder.close();
      this.decoderInfo = null;
      this.sinkAttached = false;
      this.sinkDetail = `decoder ${sink.decoder} (${this.describeFailure(err)})`;
      throw err;
    }
  }

  private prepareDecoder(decoder: Decoder, count: number): void {
    const sink = this.config.sink;
    decoder.prepare({ outputCount: count, captureCount: sink.type === 'decoder' ? sink.captureCount : 4 });
  }

  private startPump(): void {
    if (!this.pool) throw new Error('no pool to pump');
    const sink = this.decoder ?? this.consumer ?? null;
    const pump = this.deps.media.createPump({
      demux: this.pool,
      sink,
      onEvents: (events) => this.onPumpEvents(pump, events),
    });
    try {
      pump.start();
    } catch (err) {
      pump.close();
      throw err;
    }
    this.pump = pump;
    this.lastPolls = -1;
  }

  private stopPump(): void {
    if (!this.pump) return;
    // stop() joins the thread and takes every buffer back from the sink.
    this.pump.stop();
    this.pump.close();
    this.pump = null;
  }

  // ------------------------------------------------------------ events

  private onPumpEvents(from: Pump, events: PumpEvent[]): void {
    // Events of a pump already replaced (late batches) are history.
    if (from !== this.pump) return;
    for (const event of events) {
      if (event.type === 'error') {
        const diagnosed = diagnose(event.error, this.context(), this.now());
        // The pump folds identical errors to one per second; keep its count.
        if (event.repeated > 0) diagnosed.count += event.repeated;
        this.deps.report(diagnosed);
      } else if (event.type === 'note') {
        this.deps.bus.emit('streamNote', {
          stream: this.id,
          what: event.what,
          detail: event.detail ?? '',
          atMs: this.now(),
        });
        this.onNote(from, event.what, event.detail ?? '');
      } else if (event.state === 'failed') {
        this.log.warn({ detail: event.detail }, 'the pump failed');
        // Off the event callback: restarting closes this very pump.
        setImmediate(() => {
          if (this.pump === from) this.restart(`the pump failed: ${event.detail ?? ''}`);
        });
      }
    }
  }

  private onNote(from: Pump, what: string, detail: string): void {
    if (what === 'decoder-gone') {
      this.sinkAttached = false;
      this.sinkDetail = `decoder ${this.decoderInfo?.path ?? ''} gone`;
      if (this.machine.up) this.machine.transition('degraded', 'decoder gone: buffers keep cycling without it');
      this.scheduleDecoderRetry();
    } else if (what === 'demux-poll-spin') {
      // A dead vb2 stream (kernel-facts.md): only a close and reopen revives it.
      setImmediate(() => {
        // Once per pump: a second note of the same batch must not restart the new pool.
        if (this.pump === from) this.restart(`the stream stopped completing buffers: ${detail}`);
      });
    }
  }

  /** Drain, close and bring the stream up again (the pump failed, the stream died). */
  private restart(why: string): void {
    if (this.stopped || !this.machine.up) return;
    this.machine.transition('draining', why);
    this.closeDataPath({ keepSinkSocket: true });
    this.bringUp(why);
  }

  private updateUpState(health: StreamHealth): void {
    const reasons = [...health.reasons];
    if (!this.sinkAttached && this.config.sink.type === 'decoder') reasons.unshift(this.sinkDetail);
    if (this.machine.state === 'streaming' && reasons.length > 0) {
      this.machine.transition('degraded', reasons.join('; '));
    } else if (this.machine.state === 'degraded') {
      if (reasons.length === 0) this.machine.transition('streaming', 'healthy again');
      else this.machine.transition('degraded', reasons.join('; '));
    }
  }

  /** Opt-in growth: sustained pressure (a high watermark or data lost) grows the count by the resize path. */
  private considerGrowth(health: StreamHealth, nowMs: number): void {
    const growth = this.config.pool.growth;
    if (!growth.enabled || !this.granted) return;
    const pressure = health.watermark === 'high' || health.watermark === 'overflow';
    if (!pressure) {
      this.pressureSince = null;
      return;
    }
    this.pressureSince ??= nowMs;
    if (nowMs - this.pressureSince < growth.sustainMs) return;
    this.pressureSince = null;
    const next = growPool(this.granted, { maxCount: growth.maxCount }, this.config.bitrate);
    // A count the kernel already refused is not asked for again until the configuration changes:
    // every attempt costs a close and reopen, and the data lost then would only feed the pressure.
    if (!next || next.count === this.growthRefusedCount) return;
    const result = this.resize(next, `pressure for ${growth.sustainMs} ms (${health.watermark})`);
    if (result.outcome !== 'applied') this.growthRefusedCount = next.count;
    this.log.info({ result }, 'pool growth');
  }

  // ------------------------------------------------------------ decoder recovery

  private scheduleDecoderRetry(): void {
    if (this.decoderTimer || this.stopped) return;
    this.decoderTimer = setTimeout(() => {
      this.decoderTimer = null;
      this.tryAttachDecoder();
    }, this.agent.supervision.decoderRetryMs);
    this.decoderTimer.unref();
  }

  /**
   * The decoder is back (or appeared): swap the pump's sink. The pool stays;
   * only the pump restarts (its sink is fixed when it is made), and only for
   * a decoder that opened and fits: an unusable one leaves the pump alone.
   */
  private tryAttachDecoder(): void {
    if (this.stopped || !this.machine.up || this.sinkAttached || !this.pool || !this.granted) return;
    const sink = this.config.sink;
    if (sink.type !== 'decoder' || !this.deps.media.findDecoder(sink.decoder)) {
      this.scheduleDecoderRetry();
      return;
    }
    const granted = this.granted;
    // The pump still holds the old decoder (gone, or none): keep it until the swap.
    const gone = this.decoder;
    this.decoder = null;
    let fresh: Decoder;
    try {
      if (!this.openDecoder() || !this.decoder || !this.decoderInfo) {
        this.decoder = gone;
        this.scheduleDecoderRetry();
        return;
      }
      fresh = this.decoder;
      const fit = fitsDecoder(granted.size, this.decoderInfo.output.sizeimage);
      if (!fit.ok && this.agent.supervision.preventKnownBad) {
        // The pool stays as it is; a resize (remote or config) can make it fit.
        throw new SizingError('decoder', fit.message);
      }
    } catch (err) {
      let why: string;
      if (err instanceof SizingError) {
        this.reportPrevented(err, 'VIDIOC_QBUF', { size: granted.size });
        why = err.message;
      } else {
        why = this.reportError(err);
      }
      this.sinkDetail = `decoder ${sink.decoder} (${why})`;
      this.dropDecoder();
      this.decoder = gone;
      this.sinkAttached = false;
      this.scheduleDecoderRetry();
      return;
    }
    this.stopPump();
    gone?.close();
    try {
      this.prepareDecoder(fresh, granted.count);
    } catch (err) {
      this.sinkDetail = `decoder ${sink.decoder} (${this.reportError(err)})`;
      this.dropDecoder();
      this.sinkAttached = false;
    }
    try {
      this.startPump();
    } catch (err) {
      this.fail(err);
      return;
    }
    if (this.sinkAttached) {
      this.log.info({ decoder: this.sinkDetail }, 'decoder attached');
      this.machine.transition('streaming', `decoder attached: ${this.sinkDetail}`);
    } else {
      this.scheduleDecoderRetry();
    }
  }

  private dropDecoder(): void {
    const decoder = this.decoder;
    this.decoder = null;
    this.decoderInfo = null;
    decoder?.close();
  }

  // ------------------------------------------------------------ failure

  private fail(err: unknown): void {
    const why = this.reportError(err);
    this.closeDataPath({ keepSinkSocket: true });
    this.releaseFrontend();
    this.failures++;
    const delay = backoffDelay(this.failures, {
      initialMs: this.agent.supervision.backoffInitialMs,
      maxMs: this.agent.supervision.backoffMaxMs,
    });
    const reason = `${why}; retry ${this.failures} in ${delay} ms`;
    this.machine.transition('failed', reason);
    this.scheduleRetry(delay, 'retry');
  }

  private scheduleRetry(delayMs: number, why: string): void {
    if (this.stopped) return;
    this.clearRetry();
    this.retryAt = this.now() + delayMs;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryAt = null;
      this.bringUp(why);
    }, delayMs);
    this.retryTimer.unref();
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
  }

  private clearTimers(): void {
    this.clearRetry();
    if (this.decoderTimer) clearTimeout(this.decoderTimer);
    this.decoderTimer = null;
  }

  private isMissingDevice(err: unknown): boolean {
    return isDmxError(err) && err.syscall === 'open' && MISSING_DEVICE.has(err.code);
  }

  private describeFailure(err: unknown): string {
    if (isDmxError(err)) return diagnose(err, this.context(), this.now()).summary;
    return err instanceof Error ? err.message : String(err);
  }

  /** Diagnoses and reports a failure once; returns what the state's reason should say. */
  private reportError(err: unknown): string {
    if (isDmxError(err)) {
      const event = diagnose(err, this.context(), this.now());
      this.deps.report(event);
      return event.summary;
    }
    this.deps.report(diagnoseUnknown(err, this.context(), this.now()));
    return err instanceof Error ? err.message : String(err);
  }

  private reportPrevented(err: unknown, ioctl: string, args: Record<string, number>): void {
    // A size that is sound on its own but breaks an import rule is the decoder's cause, whatever key the sizing named.
    const size = args.size;
    const misfit =
      this.decoderInfo !== null && size !== undefined && !fitsDecoder(size, this.decoderInfo.output.sizeimage).ok;
    const cause =
      misfit || (err instanceof SizingError && err.key === 'decoder')
        ? 'pool-exceeds-decoder-format'
        : 'pool-size-invalid';
    this.deps.report(
      preventedEvent(
        cause,
        {
          stream: this.id,
          ...(this.pool ? { device: this.pool.path } : {}),
          ioctl,
          errno: 'EINVAL',
          args: {
            ...args,
            ...(this.decoderInfo ? { sizeimage: this.decoderInfo.output.sizeimage } : {}),
          },
          message: err instanceof Error ? err.message : String(err),
        },
        this.now(),
      ),
    );
  }

  private context(): DiagnosisContext {
    const context: DiagnosisContext = { stream: this.id };
    if (this.pool?.fd !== undefined && this.pool.fd >= 0) {
      context.pool = { count: this.pool.bufferCount, size: this.pool.bufferSize, streaming: this.pool.streaming };
    }
    if (this.decoderInfo) {
      context.decoder = {
        path: this.decoderInfo.path,
        name: this.decoderInfo.name,
        multiplanar: this.decoderInfo.multiplanar,
        outputSizeimage: this.decoderInfo.output.sizeimage,
        ...(this.decoderInfo.capabilities !== undefined ? { capabilities: this.decoderInfo.capabilities } : {}),
      };
    }
    return context;
  }

  private resized(from: PoolSize, to: PoolSize, outcome: 'applied' | 'rolled-back', reason: string): ResizeResult {
    this.deps.bus.emit('poolResized', { stream: this.id, from, to, outcome, reason });
    if (outcome === 'applied') this.log.info({ from, to }, `pool resized: ${reason}`);
    else this.log.warn({ from, to, reason }, 'pool resize rolled back');
    return { outcome, from, to, reason };
  }

  // ------------------------------------------------------------ teardown

  /**
   * Stops the pump (buffers come back from the sink), then closes the
   * decoder, the pool node and the filter node, in that order. The consumer
   * socket is kept across resizes and restarts unless asked otherwise.
   */
  private closeDataPath(options: { keepSinkSocket: boolean }): void {
    const steps: Array<[string, () => void]> = [
      ['pump', () => this.stopPump()],
      [
        'decoder',
        () => {
          this.decoder?.close();
          this.decoder = null;
        },
      ],
      [
        'pool',
        () => {
          this.pool?.close();
          this.pool = null;
        },
      ],
      [
        'filter',
        () => {
          this.filterNode?.close();
          this.filterNode = null;
        },
      ],
    ];
    if (!options.keepSinkSocket) {
      steps.push([
        'consumer',
        () => {
          this.consumer?.close();
          this.consumer = null;
        },
      ]);
    }
    for (const [what, step] of steps) {
      try {
        step();
      } catch (err) {
        // Keep closing the rest: a leak is worse than a logged error.
        this.log.error({ err }, `closing the ${what} failed`);
      }
    }
    this.pump = null;
    this.decoder = null;
    this.pool = null;
    this.filterNode = null;
    this.decoderInfo = null;
    this.granted = null;
    this.healthTracker = null;
    if (this.config.sink.type === 'decoder') this.sinkAttached = false;
  }

  private releaseFrontend(): void {
    if (this.tunedAdapter === null) return;
    this.deps.tuners.release(this.tunedAdapter);
    this.tunedAdapter = null;
  }
}

function describePool(p: PoolSize): string {
  return `${p.count} x ${p.size} bytes`;
}

function hexPid(pid: number): string {
  return `0x${pid.toString(16).padStart(4, '0')}`;
}
