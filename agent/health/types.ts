/** Buffer health as the agent reports it, per stream and agent-wide. */

/** Watermark states with hysteresis, like Android's tuner filter status. */
export type Watermark = 'no-data' | 'low' | 'normal' | 'high' | 'overflow';
export type HealthLevel = 'ok' | 'degraded' | 'critical';

export interface StreamHealth {
  stream: string;
  /** Epoch ms of the sample, and the window the rates cover. */
  atMs: number;
  windowMs: number;
  pool: { count: number; size: number };
  /** Where each buffer is now (pump ledger). */
  ledger: { kernel: number; agent: number; decoder: number; consumer: number };
  /** bytesused / length of the buffers dequeued in the window, or null when none were. */
  fillRatio: number | null;
  rate: { bytesPerSecond: number; buffersPerSecond: number; bitsPerSecond: number };
  totals: { buffers: number; bytes: number };
  /** Each dmx_buffer.flags bit: total, and in this window. */
  flags: Record<
    'crc32Discard' | 'tei' | 'packetCounterMismatch' | 'discontinuityDetected' | 'discontinuityIndicator',
    { total: number; window: number }
  >;
  ts: { syncErrors: number; teiPackets: number };
  /** TS continuity-counter gaps per PID ('0x0111'), total and in this window. */
  ccGaps: { total: number; window: number; byPid: Record<string, number> };
  /** Time with no buffer queued in the kernel: the kernel drops data silently then. */
  zeroQueued: {
    totalMs: number;
    windowMs: number;
    /** Share of the window (0..1). */
    share: number;
    episodes: number;
    /** windowMs at the configured bitrate: what was probably lost. */
    estimatedLossBytes: number;
  };
  /** Time buffers spent in the sink (decoder or consumer) in this window; null without returns. */
  sinkLatencyMs: { p50: number; p95: number; p99: number; max: number; mean: number } | null;
  /** Errors by 'IOCTL:ERRNO', totals. */
  errors: Record<string, number>;
  exportedFds: number;
  anomalies: Array<{ kind: 'stuck-buffer'; index: number; owner: string; heldMs: number }>;
  watermark: Watermark;
  level: HealthLevel;
  /** Why the level is not ok, in plain terms (empty when ok). */
  reasons: string[];
}

export interface AgentHealth {
  atMs: number;
  uptimeSeconds: number;
  rssBytes: number;
  heapUsedBytes: number;
  eventLoopLagMs: { mean: number; p99: number; max: number };
  openFds: number;
  streams: { total: number; streaming: number; degraded: number; failed: number; other: number };
}
