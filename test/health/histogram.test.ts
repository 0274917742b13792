import { describe, expect, it } from 'vitest';
import {
  type BucketHistogram,
  histogramDelta,
  histogramUpperBound,
  percentilesFromHistogram,
} from '../../agent/health/histogram.js';

/** The pump's hold-time bounds (PumpStats.sinkTime.holdHistogram). */
const BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

function bucketize(values: number[], bounds = BOUNDS): BucketHistogram {
  const counts = new Array<number>(bounds.length + 1).fill(0);
  for (const value of values) {
    const index = bounds.findIndex((bound) => value <= bound);
    const bucket = index === -1 ? bounds.length : index;
    counts[bucket] = (counts[bucket] ?? 0) + 1;
  }
  return { boundsMs: [...bounds], counts };
}

/** The value of rank ceil(q * n) in sorted data: what the histogram estimates. */
function exactQuantile(sorted: number[], q: number): number {
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1] ?? Number.NaN;
}

/** The width of the bucket holding a value: the documented error bound. */
function bucketWidth(value: number): number {
  const index = BOUNDS.findIndex((bound) => value <= bound);
  const hi = BOUNDS[index] ?? Number.POSITIVE_INFINITY;
  const lo = index <= 0 ? 0 : (BOUNDS[index - 1] ?? 0);
  return hi - lo;
}

const QUANTILES = [0.1, 0.5, 0.9, 0.95, 0.99];

describe('percentilesFromHistogram', () => {
  it('is exact for values spread evenly within each bucket (uniform 0..100 ms)', () => {
    const values = Array.from({ length: 10_000 }, (_, i) => ((i + 0.5) / 10_000) * 100);
    const estimates = percentilesFromHistogram(bucketize(values), QUANTILES);
    QUANTILES.forEach((q, i) => {
      expect(estimates[i]).toBeCloseTo(q * 100, 1);
    });
  });

  it('stays within one bucket width of the true quantile for an exponential distribution', () => {
    // Deterministic exponential sample, mean 30 ms (inverse CDF at evenly spaced probabilities).
    const values = Array.from({ length: 20_000 }, (_, i) => -30 * Math.log(1 - (i + 0.5) / 20_000));
    const sorted = [...values].sort((a, b) => a - b);
    const estimates = percentilesFromHistogram(bucketize(values), QUANTILES);
    QUANTILES.forEach((q, i) => {
      const truth = exactQuantile(sorted, q);
      const estimate = estimates[i] ?? Number.NaN;
      expect(Math.abs(estimate - truth)).toBeLessThanOrEqual(bucketWidth(truth));
    });
    // The median of an exponential with mean 30 is 30 ln 2 = 20.8 ms; the estimate lands in its bucket (20, 50].
    expect(estimates[1]).toBeGreaterThan(20);
    expect(estimates[1]).toBeLessThanOrEqual(50);
  });

  it('puts the median of one bucket in its middle and q = 0 / 1 at its edges', () => {
    const histogram = bucketize([12, 14, 16, 18]); // all in (10, 20]
    expect(percentilesFromHistogram(histogram, [0, 0.5, 1])).toEqual([10, 15, 20]);
  });

  it('caps estimates at the known maximum', () => {
    const histogram = bucketize([3, 3, 3, 3]); // all in (2, 5]
    expect(percentilesFromHistogram(histogram, [0.99])[0]).toBeCloseTo(4.97, 2);
    expect(percentilesFromHistogram(histogram, [0.99], 3)[0]).toBe(3);
  });

  it('reports the overflow bucket as the known max, or the top bound without one', () => {
    const histogram = bucketize([...Array.from({ length: 90 }, () => 10), ...Array.from({ length: 10 }, () => 8000)]);
    expect(percentilesFromHistogram(histogram, [0.99])).toEqual([5000]);
    expect(percentilesFromHistogram(histogram, [0.99], 8000)).toEqual([8000]);
    // A max below the top bound cannot describe overflow values: the top bound stays.
    expect(percentilesFromHistogram(histogram, [0.99], Number.POSITIVE_INFINITY)).toEqual([5000]);
    expect(percentilesFromHistogram(histogram, [0.5])[0]).toBeLessThanOrEqual(10);
  });

  it('returns NaN for an empty histogram and rejects bad input', () => {
    expect(percentilesFromHistogram(bucketize([]), [0.5, 0.99]).every(Number.isNaN)).toBe(true);
    expect(() => percentilesFromHistogram(bucketize([1]), [1.5])).toThrow(RangeError);
    expect(() => percentilesFromHistogram({ boundsMs: [1, 2], counts: [1, 2] }, [0.5])).toThrow(RangeError);
  });
});

describe('histogramDelta', () => {
  it('subtracts cumulative snapshots', () => {
    const prev = bucketize([0.5, 3, 3, 40]);
    const next = bucketize([0.5, 3, 3, 40, 3, 700, 9000]);
    const delta = histogramDelta(prev, next);
    expect(delta).toEqual(bucketize([3, 700, 9000]));
    expect(histogramUpperBound(delta!)).toBe(Number.POSITIVE_INFINITY);
    expect(histogramUpperBound(bucketize([3, 700]))).toBe(1000);
    expect(histogramUpperBound(bucketize([]))).toBeNull();
  });

  it('returns null when a count went down (a restarted pump) or the bounds differ', () => {
    expect(histogramDelta(bucketize([3, 3]), bucketize([3]))).toBeNull();
    expect(histogramDelta(bucketize([3], [1, 10]), bucketize([3], [1, 20]))).toBeNull();
  });
});
