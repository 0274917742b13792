/**
 * One stream's buffer health, computed from successive pump snapshots
 * (PumpStats, cumulative since the pump started) and the pump's ledger.
 * Rates and "window" fields cover the time since the previous sample; totals
 * carry across pump restarts (a resize replaces the pump, whose counters then
 * start from zero again).
 */
import type { AgentConfig } from '../config/types.js';
import type { BufferOwner, PumpStats } from '../native/index.js';
import {
  type BucketHistogram,
  histogramDelta,
  histogramTotal,
  histogramUpperBound,
  percentilesFromHistogram,
} from './histogram.js';
import type { HealthLevel, StreamHealth } from './types.js';
import { WatermarkTracker } from './watermark.js';

export type HealthConfig = AgentConfig['health'];

export interface PoolShape {
  count: number;
  size: number;
}

export interface PumpLedgerEntry {
  index: number;
  owner: BufferOwner;
  exportFd: number;
  /** How long the buffer has had its current owner. */
  sinceMs: number;
}

export interface StreamHealthOptions {
  stream: string;
  /** Expected bitrate in bits per second (the estimate of lost bytes and the pool's buffering time). */
  bitrate: number;
  pool: PoolShape;
  health: HealthConfig;
  /** When the first window starts (epoch ms); defaults to the time of construction. */
  startMs?: number;
}

export interface StreamHealthInput {
  stats: PumpStats;
  ledger: PumpLedgerEntry[];
  /** Epoch ms of this sample. */
  nowMs: number;
  sinkAttached: boolean;
  /** The stream is configured with a sink (decoder or consumer) that should be attached. */
  sinkExpected: boolean;
}

const FLAG_NAMES = [
  'crc32Discard',
  'tei',
  'packetCounterMismatch',
  'discontinuityDetected',
  'discontinuityIndicator',
] as const;
type FlagName = (typeof FLAG_NAMES)[number];

/** The cumulative counters of one pump, as numbers that only grow while that pump lives. */
interface Counters {
  buffers: number;
  bytes: number;
  flags: Record<FlagName, number>;
  syncErrors: number;
  teiPackets: number;
  ccGaps: number;
  /** By PID as the pump keys it (decimal). */
  ccGapsByPid: Record<string, number>;
  zeroQueuedMs: number;
  zeroQueuedEpisodes: number;
  returned: number;
  holdMsTotal: number;
  holdMsMax: number;
  holdHistogram: BucketHistogram;
  errors: Record<string, number>;
}

type ScalarCounter = Exclude<keyof Counters, 'flags' | 'ccGapsByPid' | 'holdHistogram' | 'errors'>;
const SCALARS: ScalarCounter[] = [
  'buffers',
  'bytes',
  'syncErrors',
  'teiPackets',
  'ccGaps',
  'zeroQueuedMs',
  'zeroQueuedEpisodes',
  'returned',
  'holdMsTotal',
  'holdMsMax',
];

function countersFrom(stats: PumpStats): Counters {
  const histogram = stats.sinkTime.holdHistogram;
  return {
    buffers: stats.buffersDequeued,
    bytes: stats.bytesDequeued,
    flags: { ...stats.flags },
    syncErrors: stats.ts.syncErrors,
    teiPackets: stats.ts.teiPackets,
    ccGaps: stats.ts.ccGaps,
    ccGapsByPid: { ...stats.ts.ccGapsByPid },
    zeroQueuedMs: stats.zeroQueued.totalMs,
    zeroQueuedEpisodes: stats.zeroQueued.episodes,
    returned: stats.sinkTime.returned,
    holdMsTotal: stats.sinkTime.holdMsTotal,
    holdMsMax: stats.sinkTime.holdMsMax,
    holdHistogram: { boundsMs: [...histogram.boundsMs], counts: [...histogram.counts] },
    errors: { ...stats.errors },
  };
}

function zeroCounters(bounds: number[]): Counters {
  const flags = Object.fromEntries(FLAG_NAMES.map((name) => [name, 0])) as Record<FlagName, number>;
  const counters = { flags, ccGapsByPid: {}, errors: {} } as Partial<Counters>;
  for (const key of SCALARS) counters[key] = 0;
  counters.holdHistogram = { boundsMs: [...bounds], counts: new Array<number>(bounds.length + 1).fill(0) };
  return counters as Counters;
}

function subtractRecord(next: Record<string, number>, base: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(next)) {
    const added = value - (base[key] ?? 0);
    if (added !== 0) out[key] = added;
  }
  return out;
}

function addRecord(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = { ...a };
  for (const [key, value] of Object.entries(b)) out[key] = (out[key] ?? 0) + value;
  return out;
}

/** A pump restart (or a replaced pump) shows as any counter going backwards. */
function restarted(previous: Counters, next: Counters): boolean {
  if (SCALARS.some((key) => next[key] < previous[key])) return true;
  if (FLAG_NAMES.some((name) => next.flags[name] < previous.flags[name])) return true;
  const shrank = (before: Record<string, number>, after: Record<string, number>) =>
    Object.entries(before).some(([key, value]) => (after[key] ?? 0) < value);
  if (shrank(previous.ccGapsByPid, next.ccGapsByPid) || shrank(previous.errors, next.errors)) return true;
  return histogramDelta(previous.holdHistogram, next.holdHistogram) === null;
}

/** next - base, for counters of the same pump. */
function subtract(next: Counters, base: Counters): Counters {
  const delta = zeroCounters(next.holdHistogram.boundsMs);
  for (const key of SCALARS) delta[key] = next[key] - base[key];
  for (const name of FLAG_NAMES) delta.flags[name] = next.flags[name] - base.flags[name];
  delta.ccGapsByPid = subtractRecord(next.ccGapsByPid, base.ccGapsByPid);
  delta.errors = subtractRecord(next.errors, base.errors);
  delta.holdHistogram = histogramDelta(base.holdHistogram, next.holdHistogram) ?? next.holdHistogram;
  return delta;
}

/** a + b, to carry the totals of a finished pump into its successor's. */
function add(a: Counters, b: Counters): Counters {
  const sum = zeroCounters(b.holdHistogram.boundsMs);
  for (const key of SCALARS) sum[key] = a[key] + b[key];
  sum.holdMsMax = Math.max(a.holdMsMax, b.holdMsMax);
  for (const name of FLAG_NAMES) sum.flags[name] = a.flags[name] + b.flags[name];
  sum.ccGapsByPid = addRecord(a.ccGapsByPid, b.ccGapsByPid);
  sum.errors = addRecord(a.errors, b.errors);
  return sum;
}

/** '273' (the pump's decimal key) or '0x111' -> '0x0111'. */
export function formatPid(key: string): string {
  const pid = Number(key);
  if (!Number.isInteger(pid) || pid < 0) return key;
  return `0x${pid.toString(16).padStart(4, '0')}`;
}

function formatDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  if (bytes < 1_000_000) return `${(bytes / 1000).toFixed(1)} kB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

function formatBitrate(bitsPerSecond: number): string {
  if (bitsPerSecond >= 1_000_000) return `${(bitsPerSecond / 1_000_000).toFixed(1)} Mbit/s`;
  return `${(bitsPerSecond / 1000).toFixed(0)} kbit/s`;
}

function formatShare(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

function plural(count: number, one: string, many: string): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** Reasons naming single PIDs stop here; the rest are summed up in one sentence. */
const MAX_PID_REASONS = 3;

export class StreamHealthTracker {
  private readonly stream: string;
  private readonly bitrate: number;
  private readonly health: HealthConfig;
  private pool: PoolShape;
  private readonly watermark: WatermarkTracker;
  /** The previous sample's counters (the window's baseline), null before the first. */
  private previous: Counters | null = null;
  /** Totals of the pumps before the current one, at their last sample. */
  private carried: Counters | null = null;
  private windowStartMs: number;

  constructor(options: StreamHealthOptions) {
    this.stream = options.stream;
    this.bitrate = options.bitrate;
    this.health = options.health;
    this.pool = { ...options.pool };
    this.watermark = new WatermarkTracker(options.health.watermark);
    this.windowStartMs = options.startMs ?? Date.now();
  }

  /** The pool after a resize: fill ratio, occupancy and buffering time use it from the next sample on. */
  setPool(pool: PoolShape): void {
    this.pool = { ...pool };
  }

  /** Forget every baseline, total and the watermark; the next window starts at `nowMs`. */
  reset(nowMs: number = Date.now()): void {
    this.previous = null;
    this.carried = null;
    this.windowStartMs = nowMs;
    this.watermark.reset();
  }

  sample(input: StreamHealthInput): StreamHealth {
    const { stats, ledger, nowMs } = input;
    const windowMs = Math.max(0, nowMs - this.windowStartMs);
    const current = countersFrom(stats);
    const bounds = current.holdHistogram.boundsMs;

    let base = this.previous ?? zeroCounters(bounds);
    if (this.previous !== null && restarted(this.previous, current)) {
      // A new pump counts from zero: what the old one counted up to its
      // last sample goes into the totals, and the window starts from zero.
      this.carried = this.carried === null ? this.previous : add(this.carried, this.previous);
      base = zeroCounters(bounds);
    }
    const delta = subtract(current, base);
    const totals = this.carried === null ? current : add(this.carried, current);
    this.previous = current;
    this.windowStartMs = nowMs;

    const perSecond = (value: number) => (windowMs > 0 ? (value * 1000) / windowMs : 0);
    const windowLabel = `in the last ${(windowMs / 1000).toFixed(1)} s`;

    const places = { kernel: 0, agent: 0, decoder: 0, consumer: 0 };
    for (const entry of ledger) places[entry.owner]++;
    const poolCount = ledger.length > 0 ? ledger.length : this.pool.count;
    const inKernel = ledger.length > 0 ? places.kernel : stats.queuedInKernel;
    const occupancy = poolCount > 0 ? Math.min(1, Math.max(0, (poolCount - inKernel) / poolCount)) : 0;

    const zeroQueuedWindowMs = Math.max(0, delta.zeroQueuedMs);
    const zeroQueuedShare = windowMs > 0 ? Math.min(1, zeroQueuedWindowMs / windowMs) : 0;
    const estimatedLossBytes = Math.round((zeroQueuedWindowMs * this.bitrate) / 8 / 1000);

    // A new pump that has not dequeued anything yet has waited since it started.
    const msSinceLastBuffer = stats.lastDequeueAgoMs ?? (stats.uptimeMs > 0 ? stats.uptimeMs : null);
    const watermark = this.watermark.update(
      { occupancy, lostInWindow: zeroQueuedWindowMs > 0, msSinceLastBuffer },
      nowMs,
    ).level;

    const sinkLatencyMs = this.sinkLatency(delta, base, current);

    const anomalies: StreamHealth['anomalies'] = ledger
      .filter(
        (entry) =>
          (entry.owner === 'decoder' || entry.owner === 'consumer') && entry.sinceMs > this.health.stuckBufferMs,
      )
      .map((entry) => ({
        kind: 'stuck-buffer' as const,
        index: entry.index,
        owner: entry.owner,
        heldMs: entry.sinceMs,
      }));

    const flowing = stats.state === 'running';
    const critical: string[] = [];
    const degraded: string[] = [];

    if (zeroQueuedWindowMs > 0) {
      const lost = `no buffer queued in the kernel for ${formatDuration(zeroQueuedWindowMs)} of the last ${(windowMs / 1000).toFixed(1)} s (${formatShare(zeroQueuedShare)})`;
      const estimate = `about ${formatBytes(estimatedLossBytes)} lost at ${formatBitrate(this.bitrate)}`;
      const sentence = `Data lost: ${lost}, ${estimate}`;
      if (zeroQueuedShare >= this.health.lossShareCritical) critical.push(sentence);
      else degraded.push(sentence);
    }
    critical.push(...this.stuckReasons(anomalies));
    if (flowing && msSinceLastBuffer !== null && msSinceLastBuffer >= this.health.watermark.noDataMs) {
      critical.push(
        `No buffer from the demux for ${formatDuration(msSinceLastBuffer)} while the pump runs (limit ${formatDuration(this.health.watermark.noDataMs)})`,
      );
    }

    if (flowing && watermark === 'high') {
      degraded.push(
        `High watermark: ${formatShare(occupancy)} of the pool is out of the kernel (${poolCount - inKernel} of ${poolCount}), the sink is falling behind`,
      );
    }
    degraded.push(...this.continuityReasons(delta, windowLabel));
    if (delta.teiPackets > 0 || delta.flags.tei > 0) {
      const parts: string[] = [];
      if (delta.teiPackets > 0) parts.push(plural(delta.teiPackets, 'TS packet', 'TS packets'));
      if (delta.flags.tei > 0)
        parts.push(plural(delta.flags.tei, 'buffer flagged by the kernel', 'buffers flagged by the kernel'));
      degraded.push(`Transport error indicator set ${windowLabel}: ${parts.join(', ')}`);
    }
    if (delta.flags.crc32Discard > 0) {
      degraded.push(
        `${plural(delta.flags.crc32Discard, 'section CRC32 discard', 'section CRC32 discards')} ${windowLabel}`,
      );
    }
    for (const [key, count] of Object.entries(delta.errors)) {
      if (count > 0) degraded.push(`${plural(count, `${key} error`, `${key} errors`)} ${windowLabel}`);
    }
    if (input.sinkExpected && !input.sinkAttached) {
      degraded.push('The sink is expected but not attached (decoder gone?): buffers go back to the kernel undelivered');
    }
    const poolHoldMs = this.poolHoldMs();
    if (sinkLatencyMs !== null && poolHoldMs !== null && sinkLatencyMs.p99 > poolHoldMs) {
      const fillMs = poolHoldMs / this.pool.count;
      degraded.push(
        `Sink p99 hold time ${formatDuration(sinkLatencyMs.p99)} exceeds the ${formatDuration(poolHoldMs)} the pool can buffer (${this.pool.count} x ${formatDuration(fillMs)} at ${formatBitrate(this.bitrate)})`,
      );
    }

    const level: HealthLevel = critical.length > 0 ? 'critical' : degraded.length > 0 ? 'degraded' : 'ok';

    return {
      stream: this.stream,
      atMs: nowMs,
      windowMs,
      pool: { ...this.pool },
      ledger: places,
      fillRatio: delta.buffers > 0 && this.pool.size > 0 ? delta.bytes / (delta.buffers * this.pool.size) : null,
      rate: {
        bytesPerSecond: perSecond(delta.bytes),
        buffersPerSecond: perSecond(delta.buffers),
        bitsPerSecond: perSecond(delta.bytes * 8),
      },
      totals: { buffers: totals.buffers, bytes: totals.bytes },
      flags: Object.fromEntries(
        FLAG_NAMES.map((name) => [name, { total: totals.flags[name], window: delta.flags[name] }]),
      ) as StreamHealth['flags'],
      ts: { syncErrors: totals.syncErrors, teiPackets: totals.teiPackets },
      ccGaps: {
        total: totals.ccGaps,
        window: delta.ccGaps,
        byPid: Object.fromEntries(Object.entries(totals.ccGapsByPid).map(([pid, count]) => [formatPid(pid), count])),
      },
      zeroQueued: {
        totalMs: totals.zeroQueuedMs,
        windowMs: zeroQueuedWindowMs,
        share: zeroQueuedShare,
        episodes: totals.zeroQueuedEpisodes,
        estimatedLossBytes,
      },
      sinkLatencyMs,
      errors: totals.errors,
      exportedFds: ledger.filter((entry) => entry.exportFd >= 0).length,
      anomalies,
      watermark,
      level,
      reasons: [...critical, ...degraded],
    };
  }

  /** What the whole pool can hold while the sink keeps buffers: count x fill time at the bitrate. */
  private poolHoldMs(): number | null {
    if (!(this.bitrate > 0) || this.pool.count <= 0 || this.pool.size <= 0) return null;
    return (this.pool.count * this.pool.size * 8 * 1000) / this.bitrate;
  }

  private sinkLatency(delta: Counters, base: Counters, current: Counters): StreamHealth['sinkLatencyMs'] {
    const counted = histogramTotal(delta.holdHistogram);
    if (delta.returned <= 0 && counted <= 0) return null;
    // holdMsMax is all-time: it is this window's max only when it rose in the
    // window; otherwise the window's max is at most the top of the highest
    // bucket used (and never above the all-time max).
    const upper = histogramUpperBound(delta.holdHistogram) ?? Number.POSITIVE_INFINITY;
    const max = current.holdMsMax > base.holdMsMax ? current.holdMsMax : Math.min(current.holdMsMax, upper);
    const mean = delta.returned > 0 ? delta.holdMsTotal / delta.returned : max;
    if (counted <= 0) {
      // Returns without histogram entries: only the max is known to bound the tail.
      return { p50: mean, p95: max, p99: max, max, mean };
    }
    const [p50 = max, p95 = max, p99 = max] = percentilesFromHistogram(delta.holdHistogram, [0.5, 0.95, 0.99], max);
    return { p50, p95, p99, max, mean };
  }

  private stuckReasons(anomalies: StreamHealth['anomalies']): string[] {
    if (anomalies.length === 0) return [];
    const limit = formatDuration(this.health.stuckBufferMs);
    const longest = anomalies.reduce((a, b) => (b.heldMs > a.heldMs ? b : a));
    if (anomalies.length === 1) {
      return [
        `Buffer ${longest.index} held by the ${longest.owner} for ${formatDuration(longest.heldMs)} (limit ${limit})`,
      ];
    }
    return [
      `${anomalies.length} buffers held by the sink longer than ${limit} (longest: buffer ${longest.index}, ${formatDuration(longest.heldMs)} in the ${longest.owner})`,
    ];
  }

  private continuityReasons(delta: Counters, windowLabel: string): string[] {
    if (delta.ccGaps <= 0) return [];
    const byPid = Object.entries(delta.ccGapsByPid)
      .filter(([, count]) => count > 0)
      .sort((a, b) => b[1] - a[1]);
    if (byPid.length === 0) return [`${plural(delta.ccGaps, 'continuity gap', 'continuity gaps')} ${windowLabel}`];
    const reasons = byPid
      .slice(0, MAX_PID_REASONS)
      .map(
        ([pid, count]) =>
          `${plural(count, 'continuity gap', 'continuity gaps')} on PID ${formatPid(pid)} ${windowLabel}`,
      );
    const rest = byPid.slice(MAX_PID_REASONS);
    if (rest.length > 0) {
      const restCount = rest.reduce((sum, [, count]) => sum + count, 0);
      reasons.push(
        `${plural(restCount, 'continuity gap', 'continuity gaps')} on ${rest.length} other PIDs ${windowLabel}`,
      );
    }
    return reasons;
  }
}
