/**
 * Watermark levels of a buffer pool, in the manner of Android's tuner filter
 * status (low water, high water, overflow), with hysteresis on the
 * thresholds and a minimum duration before a new level is reported, so an
 * occupancy that wobbles around a threshold does not make the level flap.
 */
import type { WatermarkConfig } from '../config/types.js';
import type { Watermark } from './types.js';

export interface WatermarkSample {
  /**
   * Share of the pool (0..1) NOT queued in the kernel: filled buffers waiting
   * in the agent or held by the sink. High means the consumer falls behind
   * and the kernel is about to run out of buffers to fill.
   */
  occupancy: number;
  /** Zero-queued time grew since the last sample: the kernel dropped data (kernel-facts.md). */
  lostInWindow: boolean;
  /** Time since the last dequeued buffer, or null when none has come yet. */
  msSinceLastBuffer: number | null;
}

export interface WatermarkUpdate {
  level: Watermark;
  /** The reported level differs from the one before this update (true on the first update). */
  changed: boolean;
  /** When the condition behind the reported level began (ms, the caller's clock). */
  sinceMs: number;
}

type OccupancyZone = 'low' | 'normal' | 'high';

export class WatermarkTracker {
  private readonly config: WatermarkConfig;
  /** The occupancy zone after hysteresis (a Schmitt trigger), independent of overflow and no-data. */
  private zone: OccupancyZone | null = null;
  private candidate: Watermark | null = null;
  private candidateSinceMs = 0;
  private reported: Watermark | null = null;
  private reportedSinceMs = 0;
  /** Overflow is held until this time once data was lost. */
  private overflowUntilMs = Number.NEGATIVE_INFINITY;
  /** When a stream with no buffer yet (msSinceLastBuffer null) was first seen waiting. */
  private waitingSinceMs: number | null = null;

  constructor(config: WatermarkConfig) {
    if (!(config.low >= 0 && config.low < config.high && config.high <= 1)) {
      throw new RangeError(`watermark: need 0 <= low < high <= 1 (low ${config.low}, high ${config.high})`);
    }
    if (!(config.hysteresis >= 0) || !(config.minDurationMs >= 0) || !(config.noDataMs > 0)) {
      throw new RangeError('watermark: hysteresis and minDurationMs must be >= 0 and noDataMs > 0');
    }
    this.config = { ...config };
  }

  /** The reported level, or null before the first update. */
  get level(): Watermark | null {
    return this.reported;
  }

  update(sample: WatermarkSample, nowMs: number): WatermarkUpdate {
    this.zone = this.nextZone(sample.occupancy);
    const previous = this.reported;

    if (sample.lostInWindow) {
      // Loss is reported at once: it already happened, waiting would hide it.
      this.overflowUntilMs = nowMs + this.config.minDurationMs;
      this.setCandidate('overflow', nowMs);
      if (this.reported !== 'overflow') this.report('overflow', nowMs);
      return { level: 'overflow', changed: previous !== 'overflow', sinceMs: this.reportedSinceMs };
    }

    this.setCandidate(this.isNoData(sample, nowMs) ? 'no-data' : this.zone, nowMs);

    if (this.reported === null) {
      // Nothing reported yet: there is no level to protect from flapping.
      this.report(this.candidate ?? this.zone, nowMs);
    } else if (this.reported === 'overflow' && nowMs < this.overflowUntilMs) {
      // Overflow is held for minDurationMs after the last loss.
    } else if (
      this.candidate !== null &&
      this.candidate !== this.reported &&
      nowMs - this.candidateSinceMs >= this.config.minDurationMs
    ) {
      this.report(this.candidate, this.candidateSinceMs);
    }
    const level = this.reported ?? this.zone;
    return { level, changed: previous !== level, sinceMs: this.reportedSinceMs };
  }

  /** Forget all state: the next update reports its level at once. */
  reset(): void {
    this.zone = null;
    this.candidate = null;
    this.candidateSinceMs = 0;
    this.reported = null;
    this.reportedSinceMs = 0;
    this.overflowUntilMs = Number.NEGATIVE_INFINITY;
    this.waitingSinceMs = null;
  }

  private nextZone(occupancy: number): OccupancyZone {
    const { low, high, hysteresis } = this.config;
    const fresh: OccupancyZone = occupancy >= high ? 'high' : occupancy <= low ? 'low' : 'normal';
    // A zone is left only once the occupancy is past its threshold by the hysteresis.
    if (this.zone === 'high' && occupancy >= high - hysteresis) return 'high';
    if (this.zone === 'low' && occupancy <= low + hysteresis) return 'low';
    return fresh;
  }

  private isNoData(sample: WatermarkSample, nowMs: number): boolean {
    if (sample.msSinceLastBuffer !== null) {
      this.waitingSinceMs = null;
      return sample.msSinceLastBuffer >= this.config.noDataMs;
    }
    this.waitingSinceMs ??= nowMs;
    return nowMs - this.waitingSinceMs >= this.config.noDataMs;
  }

  private setCandidate(level: Watermark, nowMs: number): void {
    if (this.candidate === level) return;
    this.candidate = level;
    this.candidateSinceMs = nowMs;
  }

  private report(level: Watermark, sinceMs: number): void {
    this.reported = level;
    this.reportedSinceMs = sinceMs;
  }
}
