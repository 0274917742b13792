/**
 * Percentiles from the pump's bucketed hold-time histogram.
 *
 * The pump counts each returned buffer's hold time into fixed buckets
 * (PumpStats.sinkTime.holdHistogram): counts[i] holds the values in
 * (boundsMs[i-1], boundsMs[i]] with boundsMs[-1] = 0, and the last count
 * (the overflow bucket) holds everything above the top bound. Counts are
 * cumulative since the pump started, so a window's percentiles come from the
 * difference of two snapshots (histogramDelta).
 */

export interface BucketHistogram {
  boundsMs: number[];
  counts: number[];
}

function checkShape(histogram: BucketHistogram): void {
  if (histogram.counts.length !== histogram.boundsMs.length + 1) {
    throw new RangeError(
      `histogram: counts has ${histogram.counts.length} entries for ${histogram.boundsMs.length} bounds (expected bounds + 1)`,
    );
  }
}

/**
 * The counts added between two cumulative snapshots, or null when they
 * cannot be compared (different bounds, or a count that went down: the pump
 * restarted and `next` counts from zero again).
 */
export function histogramDelta(prev: BucketHistogram, next: BucketHistogram): BucketHistogram | null {
  checkShape(prev);
  checkShape(next);
  if (prev.boundsMs.length !== next.boundsMs.length) return null;
  if (prev.boundsMs.some((bound, i) => bound !== next.boundsMs[i])) return null;
  const counts: number[] = [];
  for (let i = 0; i < next.counts.length; i++) {
    const added = (next.counts[i] ?? 0) - (prev.counts[i] ?? 0);
    if (added < 0) return null;
    counts.push(added);
  }
  return { boundsMs: [...next.boundsMs], counts };
}

/** How many values the histogram holds. */
export function histogramTotal(histogram: BucketHistogram): number {
  return histogram.counts.reduce((sum, count) => sum + count, 0);
}

/**
 * The upper edge of the highest non-empty bucket: no value in the histogram
 * is above it. Infinity when the overflow bucket is used, null when empty.
 */
export function histogramUpperBound(histogram: BucketHistogram): number | null {
  checkShape(histogram);
  for (let i = histogram.counts.length - 1; i >= 0; i--) {
    if ((histogram.counts[i] ?? 0) > 0) return histogram.boundsMs[i] ?? Number.POSITIVE_INFINITY;
  }
  return null;
}

/**
 * Estimates each quantile (0..1) of the values in a bucketed histogram,
 * interpolating linearly inside the bucket where the quantile's rank falls
 * (rank = q * total, so the median of 2 values in one bucket is its middle).
 *
 * Error bound: for a quantile in bucket (lo, hi] the estimate and the true
 * value both lie in [lo, hi], so the error is at most the bucket's width
 * (with the pump's bounds: 1 ms below 2 ms, then 3, 5, 10, 30, 50, 100, 300,
 * 500, 1000, 3000 ms), and it is exact for values spread evenly within their
 * buckets. The overflow bucket has no upper edge: a quantile that falls in it
 * is reported as `maxKnownMs` when that is known and above the top bound (an
 * upper bound of the true value, off by at most maxKnownMs - top bound), and
 * otherwise as the top bound (a lower bound of the true value).
 *
 * `maxKnownMs` (the largest value in the histogram, or a finite upper bound
 * of it) also caps every estimate, since no value exceeds it.
 *
 * An empty histogram yields NaN for every quantile.
 */
export function percentilesFromHistogram(
  delta: BucketHistogram,
  quantiles: number[],
  maxKnownMs?: number | null,
): number[] {
  checkShape(delta);
  for (const q of quantiles) {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`histogram: quantile ${q} is outside 0..1`);
  }
  const total = histogramTotal(delta);
  if (total <= 0) return quantiles.map(() => Number.NaN);
  const topBound = delta.boundsMs[delta.boundsMs.length - 1] ?? 0;
  const cap =
    maxKnownMs !== undefined && maxKnownMs !== null && Number.isFinite(maxKnownMs) && maxKnownMs >= 0
      ? maxKnownMs
      : null;
  const overflowValue = cap !== null && cap > topBound ? cap : topBound;

  return quantiles.map((q) => {
    const rank = q * total;
    let before = 0;
    for (let i = 0; i < delta.counts.length; i++) {
      const count = delta.counts[i] ?? 0;
      if (count <= 0) continue;
      // rank 0 (q = 0) lands at the low edge of the first non-empty bucket.
      if (before + count >= rank) {
        if (i >= delta.boundsMs.length) return overflowValue;
        const lo = i === 0 ? 0 : (delta.boundsMs[i - 1] ?? 0);
        const hi = delta.boundsMs[i] ?? lo;
        const estimate = lo + ((hi - lo) * (rank - before)) / count;
        return cap !== null ? Math.min(estimate, cap) : estimate;
      }
      before += count;
    }
    // Unreachable (rank <= total); kept for the type checker.
    return overflowValue;
  });
}
