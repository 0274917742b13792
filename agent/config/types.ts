/**
 * The agent's configuration, as the rest of the agent sees it once
 * agent/config/load.ts has validated it. Every field is required here:
 * defaults are filled in by the loader.
 */
import type { FrontendTuning, PesOutput, SimulationConfig } from '../native/index.js';

export type Backend = 'kernel' | 'sim';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** A V4L2 m2m decoder's OUTPUT format, chosen together with the pool size. */
export interface DecoderFormatConfig {
  fourcc: string;
  width: number;
  height: number;
  /** Asked of the driver; it may grant another (the granted one is what counts). */
  sizeimage: number | null;
}

export type SinkConfig =
  | {
      type: 'decoder';
      /** A name under /sys/class/video4linux (found by name, never by number) or a /dev/videoN path. */
      decoder: string;
      format: DecoderFormatConfig;
      /** CAPTURE format; defaults to the OUTPUT format when null. */
      captureFormat: DecoderFormatConfig | null;
      captureCount: number;
    }
  | {
      type: 'consumer';
      socketPath: string;
      maxInFlight: number;
      holdTimeoutMs: number;
    }
  | { type: 'discard' };

export interface PoolGrowthConfig {
  /** Opt-in: grow the pool under sustained pressure, by the resize path. */
  enabled: boolean;
  maxCount: number;
  /** Pressure (zero-queued time or a high watermark) must last this long. */
  sustainMs: number;
}

export interface PoolConfig {
  /** Fixed count and size, or null to derive them from latencyMs and the stream's bitrate. */
  count: number | null;
  size: number | null;
  /** Time for one buffer to fill at the stream's bitrate (TS buffers complete only when full). */
  latencyMs: number;
  /** Data the whole pool must be able to hold while the sink is slow. */
  bufferingMs: number;
  growth: PoolGrowthConfig;
}

export interface StreamConfig {
  /** [a-z0-9][a-z0-9_-]*: used in MQTT topics and log fields. */
  id: string;
  adapter: number;
  /** demux: the pool is on demuxN; dvr: the filter is on demuxN, the pool on dvr0 (opened O_RDWR). */
  source: 'demux' | 'dvr';
  demux: number;
  filter: {
    pids: number[];
    output: Exclude<PesOutput, 'decoder'>;
  };
  /** Tune frontend0 of the adapter first, or null when something else tunes it. */
  tuning: FrontendTuning | null;
  /** Expected bitrate in bits per second: sizes the pool and sets health expectations. */
  bitrate: number;
  pool: PoolConfig;
  sink: SinkConfig;
}

export interface WatermarkConfig {
  /** Share of the pool out of the kernel (filled, waiting) at or below which the level is low. */
  low: number;
  /** ... at or above which it is high. */
  high: number;
  /** A level is left only this far past its threshold (hysteresis). */
  hysteresis: number;
  /** A new level must hold this long before it is reported (overflow is reported at once). */
  minDurationMs: number;
  /** No buffer for this long is "no data". */
  noDataMs: number;
}

export interface MqttConfig {
  /** false: no broker at all (a receiver that is only watched locally, tests). */
  enabled: boolean;
  /** A broker URL, or 'embedded': an in-process development broker (MQTT 3.1.1) on 127.0.0.1. */
  url: string;
  /** The embedded broker's TCP and WebSocket ports. */
  embedded: { port: number; wsPort: number };
  username: string;
  password: string;
  topicPrefix: string;
  /** 5 (default) or 4 (MQTT 3.1.1: correlation then travels in the payload's id). */
  protocolVersion: 5 | 4;
  /** Empty: dmx-agent-<deviceId>. */
  clientId: string;
  keepaliveSec: number;
  /** The broker keeps the session (and QoS 1 commands) this long while the box is offline. */
  sessionExpirySec: number;
  /** Fleet reconnect: full-jitter exponential backoff from baseMs to capMs, reset after stableMs connected. */
  reconnect: { baseMs: number; capMs: number; stableMs: number };
  /** Events kept while offline, oldest dropped first. */
  offlineQueue: { maxEvents: number; maxBytes: number };
  telemetryIntervalMs: number;
  /** File paths; empty for none. */
  tls: { ca: string; cert: string; key: string };
  commands: {
    /** Command names allowed to run; empty: every known command. */
    allow: string[];
    maxBytes: number;
    dedupWindowMs: number;
    /** Ed25519 public key (PEM file path); when set, unsigned or badly signed commands are refused. */
    publicKeyFile: string;
  };
}

export interface AgentConfig {
  /** Where remote config.set writes its changes (JSON layered over the --config file); empty: config.set refused. */
  overrideFile: string;
  deviceId: string;
  backend: Backend;
  log: { level: LogLevel; pretty: 'auto' | 'always' | 'never' };
  mqtt: MqttConfig;
  health: {
    intervalMs: number;
    /** A buffer held by a sink longer than this is a ledger anomaly. */
    stuckBufferMs: number;
    watermark: WatermarkConfig;
    /** A stream is critical when zero-queued time exceeds this share of the window. */
    lossShareCritical: number;
  };
  diagnosis: { coalesceWindowMs: number };
  supervision: {
    backoffInitialMs: number;
    backoffMaxMs: number;
    /** How often a missing device (ENOENT, ENODEV) is looked for again. */
    deviceWaitMs: number;
    /** How often a lost decoder is looked for again while the pool keeps cycling. */
    decoderRetryMs: number;
    /** SIGTERM must finish within this; past it the agent exits non-zero. */
    shutdownTimeoutMs: number;
    /**
     * Refuse calls known to fail (a pool the decoder cannot import) before the
     * kernel sees them, reporting them as prevented. Off only to reproduce a
     * kernel's own EINVAL on purpose (diagnosis tests, bring-up of a new board).
     */
    preventKnownBad: boolean;
  };
  systemd: {
    /** READY=1 is sent when every stream is up, or after this long with STATUS= naming the rest. */
    readyTimeoutMs: number;
  };
  /** The simulated receiver, when backend = sim. */
  sim: SimulationConfig;
  /** The live per-stream line on a terminal: auto (when stdout is a TTY), always, never. */
  statusLine: 'auto' | 'always' | 'never';
  streams: StreamConfig[];
}
