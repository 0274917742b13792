import { describe, expect, it } from 'vitest';
import type { WatermarkConfig } from '../../agent/config/types.js';
import type { Watermark } from '../../agent/health/types.js';
import { type WatermarkSample, WatermarkTracker } from '../../agent/health/watermark.js';

const CONFIG: WatermarkConfig = { low: 0.25, high: 0.75, hysteresis: 0.1, minDurationMs: 2000, noDataMs: 3000 };

function flowing(occupancy: number): WatermarkSample {
  return { occupancy, lostInWindow: false, msSinceLastBuffer: 10 };
}

/** Feeds samples at a fixed interval and returns the reported level after each. */
function run(tracker: WatermarkTracker, samples: WatermarkSample[], startMs = 0, stepMs = 500): Watermark[] {
  return samples.map((sample, i) => tracker.update(sample, startMs + i * stepMs).level);
}

describe('WatermarkTracker', () => {
  it('reports the first level at once', () => {
    const tracker = new WatermarkTracker(CONFIG);
    expect(tracker.level).toBeNull();
    expect(tracker.update(flowing(0.5), 0)).toEqual({ level: 'normal', changed: true, sinceMs: 0 });
    expect(tracker.update(flowing(0.5), 1000)).toEqual({ level: 'normal', changed: false, sinceMs: 0 });
  });

  it('reports a new level only once it has been the candidate for minDurationMs', () => {
    const tracker = new WatermarkTracker(CONFIG);
    tracker.update(flowing(0.5), 0);
    expect(tracker.update(flowing(0.8), 1000).level).toBe('normal');
    expect(tracker.update(flowing(0.9), 2000).level).toBe('normal');
    // Candidate high since 1000: reported at 3000, dated from when it began.
    expect(tracker.update(flowing(0.8), 3000)).toEqual({ level: 'high', changed: true, sinceMs: 1000 });
    expect(tracker.update(flowing(0.8), 3500).changed).toBe(false);
  });

  it('leaves high only below high - hysteresis, and low only above low + hysteresis', () => {
    const tracker = new WatermarkTracker(CONFIG);
    tracker.update(flowing(0.9), 0);
    // 0.70 and 0.66 are below high (0.75) but within the hysteresis band: still high.
    expect(run(tracker, [0.7, 0.66, 0.7, 0.66, 0.7, 0.66, 0.7].map(flowing), 1000)).toEqual(Array(7).fill('high'));
    // 0.6 is past the band: normal once it has held for 2 s.
    expect(run(tracker, [0.6, 0.6, 0.6, 0.6, 0.6].map(flowing), 5000)).toEqual([
      'high',
      'high',
      'high',
      'high',
      'normal',
    ]);

    const low = new WatermarkTracker(CONFIG);
    low.update(flowing(0.1), 0);
    expect(run(low, [0.3, 0.34, 0.3, 0.34, 0.3, 0.34].map(flowing), 1000)).toEqual(Array(6).fill('low'));
    expect(run(low, [0.4, 0.4, 0.4, 0.4, 0.4].map(flowing), 5000).at(-1)).toBe('normal');
  });

  it('does not flap with an occupancy that flaps across a threshold', () => {
    // Swinging across the whole band every 500 ms: the candidate never holds 2 s.
    const swinging = new WatermarkTracker(CONFIG);
    const levels = run(
      swinging,
      Array.from({ length: 60 }, (_, i) => flowing(i % 2 === 0 ? 0.6 : 0.8)),
    );
    expect(new Set(levels)).toEqual(new Set(['normal']));

    // Wobbling just around the high threshold: high once, then held by the hysteresis.
    const wobbling = new WatermarkTracker(CONFIG);
    const changes: number[] = [];
    Array.from({ length: 60 }, (_, i) => flowing(i % 2 === 0 ? 0.74 : 0.76)).forEach((sample, i) => {
      if (wobbling.update(sample, i * 500).changed) changes.push(i);
    });
    expect(changes).toEqual([0, 5]); // the first report (normal), then high 2 s after 0.76 first appeared (i = 1)
    expect(wobbling.level).toBe('high');
  });

  it('reports overflow at once and holds it for minDurationMs after the last loss', () => {
    const tracker = new WatermarkTracker(CONFIG);
    tracker.update(flowing(0.5), 0);
    expect(tracker.update({ occupancy: 1, lostInWindow: true, msSinceLastBuffer: 10 }, 1000)).toEqual({
      level: 'overflow',
      changed: true,
      sinceMs: 1000,
    });
    expect(tracker.update({ occupancy: 1, lostInWindow: true, msSinceLastBuffer: 10 }, 1500).changed).toBe(false);
    // Loss stopped at 1500: held until 3500, and normal must then have been the candidate for 2 s.
    expect(run(tracker, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5].map(flowing), 2000)).toEqual([
      'overflow',
      'overflow',
      'overflow',
      'overflow',
      'normal',
      'normal',
    ]);
  });

  it('reports no-data when no buffer came for noDataMs (after the minimum duration)', () => {
    const tracker = new WatermarkTracker(CONFIG);
    tracker.update(flowing(0.1), 0);
    const stalled = (sinceBuffer: number): WatermarkSample => ({
      occupancy: 0,
      lostInWindow: false,
      msSinceLastBuffer: sinceBuffer,
    });
    expect(tracker.update(stalled(2500), 1000).level).toBe('low');
    expect(tracker.update(stalled(3500), 2000).level).toBe('low');
    expect(tracker.update(stalled(5500), 4000)).toEqual({ level: 'no-data', changed: true, sinceMs: 2000 });
    // Overflow outranks no-data: with every buffer held, nothing can be dequeued.
    expect(tracker.update({ occupancy: 1, lostInWindow: true, msSinceLastBuffer: 6000 }, 4500).level).toBe('overflow');
  });

  it('counts the wait from the first sample when no buffer ever came', () => {
    const tracker = new WatermarkTracker(CONFIG);
    const waiting: WatermarkSample = { occupancy: 0, lostInWindow: false, msSinceLastBuffer: null };
    // The no-data candidate starts at 3000 (i = 6) and is reported at 5000 (i = 10).
    expect(run(tracker, Array(12).fill(waiting), 0, 500)).toEqual([...Array(10).fill('low'), 'no-data', 'no-data']);
  });

  it('reset forgets the level', () => {
    const tracker = new WatermarkTracker(CONFIG);
    tracker.update(flowing(0.9), 0);
    tracker.reset();
    expect(tracker.level).toBeNull();
    expect(tracker.update(flowing(0.1), 100)).toEqual({ level: 'low', changed: true, sinceMs: 100 });
  });

  it('rejects impossible thresholds', () => {
    expect(() => new WatermarkTracker({ ...CONFIG, low: 0.8, high: 0.5 })).toThrow(RangeError);
    expect(() => new WatermarkTracker({ ...CONFIG, noDataMs: 0 })).toThrow(RangeError);
  });
});
