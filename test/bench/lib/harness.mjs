/**
 * The benchmark harness: rounds that alternate a measurement with its
 * baseline, medians, percentiles, ratios, and the table and JSON a run
 * prints and writes. Nothing here judges a figure: benchmarks report, they
 * never pass or fail on time.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** The middle value (mean of the two middle ones for an even count); NaN for none. */
export function median(values) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Nearest-rank percentile (p in 0..100) of the values; NaN for none. */
export function percentile(values, p) {
  if (values.length === 0) return Number.NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

/**
 * measured / baseline, the one reading every row uses: below 1 the agent
 * needs less (time, memory, bytes) than its baseline. null when the baseline
 * is zero or either side is not a finite number.
 */
export function ratio(measured, baseline) {
  if (!Number.isFinite(measured) || !Number.isFinite(baseline) || baseline === 0) return null;
  return measured / baseline;
}

/**
 * The order the variants run in, round by round: each round runs every
 * variant once, and the starting variant rotates, so neither side always
 * runs first (a warm cache or a cooling CPU then favours both alike).
 */
export function alternationOrder(variantNames, rounds) {
  const order = [];
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < variantNames.length; i++) {
      order.push({ round, variant: variantNames[(round + i) % variantNames.length] });
    }
  }
  return order;
}

/**
 * Runs `variants` (name -> async () => sample) alternating for `rounds`
 * rounds; returns every sample by variant name, in the order taken.
 */
export async function alternate(variants, rounds) {
  const samples = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
  for (const { variant } of alternationOrder(Object.keys(variants), rounds)) {
    samples[variant].push(await variants[variant]());
  }
  return samples;
}

/**
 * One row figure: what was measured, its baseline, their ratio. `unit` is
 * printed after both; `baseline` is null for a figure without one.
 */
export function metric(name, unit, value, baseline = null) {
  return { name, unit, value, baseline, ratio: baseline === null ? null : ratio(value, baseline) };
}

/** The keys every benchmark result has; the unit test holds the modules to them. */
export const RESULT_KEYS = ['id', 'title', 'rounds', 'baseline', 'metrics', 'reading', 'notes'];
export const METRIC_KEYS = ['name', 'unit', 'value', 'baseline', 'ratio'];

function formatNumber(value) {
  if (value === null || value === undefined) return '-';
  if (typeof value !== 'number') return String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  return abs >= 100 ? value.toFixed(0) : abs >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function formatRatio(value) {
  return value === null ? '-' : `${value.toFixed(2)}x`;
}

/** The rows as a markdown table: one line per metric. */
export function formatTable(results) {
  const lines = ['| # | Benchmark | Figure | Measured | Baseline | Ratio | Rounds |', '|---|---|---|---|---|---|---|'];
  for (const result of results) {
    if (result.metrics.length === 0) {
      lines.push(`| ${result.id} | ${result.title} | ${result.notes.join('; ')} | - | - | - | - |`);
      continue;
    }
    result.metrics.forEach((m, index) => {
      const head = index === 0 ? `| ${result.id} | ${result.title} ` : '| | ';
      const unit = m.unit ? ` ${m.unit}` : '';
      lines.push(
        `${head}| ${m.name} | ${formatNumber(m.value)}${unit} | ${m.baseline === null ? '-' : `${formatNumber(m.baseline)}${unit}`} | ${formatRatio(m.ratio)} | ${result.rounds} |`,
      );
    });
  }
  return lines.join('\n');
}

/** What was measured against what, and how each ratio reads, one line per row. */
export function formatReadings(results) {
  return results
    .filter((result) => result.metrics.length > 0)
    .map((result) => `- ${result.id}. ${result.title}: baseline: ${result.baseline}. ${result.reading}`)
    .join('\n');
}

export function writeJson(file, document) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(document, null, 2)}\n`);
}
