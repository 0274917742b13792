// The benchmark harness's arithmetic and the shape of every benchmark's
// result. The benchmarks run here in smoke mode (one round, short durations)
// only to prove that each one runs end to end and reports every figure with
// its baseline and ratio; no assertion looks at a timing value.
import { describe, expect, it } from 'vitest';
import {
  alternate,
  alternationOrder,
  type BenchModule,
  type BenchResult,
  formatTable,
  METRIC_KEYS,
  median,
  metric,
  percentile,
  RESULT_KEYS,
  ratio,
} from './lib/harness.mjs';

describe('harness arithmetic', () => {
  it('takes the median of odd and even counts without reordering the input', () => {
    const values = [5, 1, 3];
    expect(median(values)).toBe(3);
    expect(values).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(median([])).toBeNaN();
  });

  it('takes nearest-rank percentiles', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile(values, 0)).toBe(1);
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile(values, 101)).toThrow(RangeError);
  });

  it('gives measured / baseline, and no ratio against a zero or missing baseline', () => {
    expect(ratio(3, 2)).toBe(1.5);
    expect(ratio(0, 2)).toBe(0);
    expect(ratio(1, 0)).toBeNull();
    expect(ratio(Number.NaN, 1)).toBeNull();
    expect(metric('x', 'ms', 6, 4)).toEqual({ name: 'x', unit: 'ms', value: 6, baseline: 4, ratio: 1.5 });
    expect(metric('x', 'ms', 6)).toEqual({ name: 'x', unit: 'ms', value: 6, baseline: null, ratio: null });
  });

  it('alternates variants, rotating which runs first in each round', () => {
    expect(alternationOrder(['a', 'b'], 3).map((s) => s.variant)).toEqual(['a', 'b', 'b', 'a', 'a', 'b']);
    const order = alternationOrder(['a', 'b', 'c'], 3);
    expect(order.map((s) => s.variant).join('')).toBe('abcbcacab');
    for (let round = 0; round < 3; round++) {
      expect(
        order
          .filter((s) => s.round === round)
          .map((s) => s.variant)
          .sort(),
      ).toEqual(['a', 'b', 'c']);
    }
  });

  it('runs the variants in that order and keeps each one its own samples', async () => {
    const calls: string[] = [];
    const samples = await alternate(
      {
        a: async () => {
          calls.push('a');
          return calls.length;
        },
        b: async () => {
          calls.push('b');
          return calls.length;
        },
      },
      2,
    );
    expect(calls).toEqual(['a', 'b', 'b', 'a']);
    expect(samples).toEqual({ a: [1, 4], b: [2, 3] });
  });

  it('prints one table line per figure, with a dash where there is no baseline', () => {
    const result: BenchResult = {
      id: 9,
      title: 'T',
      rounds: 2,
      baseline: 'b',
      metrics: [metric('m1', 'ms', 2, 4), metric('m2', '', 3)],
      reading: 'r',
      notes: [],
    };
    const lines = formatTable([result]).split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[2]).toBe('| 9 | T | m1 | 2 ms | 4 ms | 0.50x | 2 |');
    expect(lines[3]).toBe('| | | m2 | 3 | - | - | 2 |');
  });
});

// Every host benchmark, in the order of issue 7 (rows 1 and 2 are not host benchmarks).
const MODULES = ['event-loop.mjs', 'footprint.mjs', 'startup.mjs', 'commands.mjs', 'telemetry.mjs', 'pool-sizing.mjs'];

async function load(file: string): Promise<BenchModule> {
  const href: string = new URL(file, import.meta.url).href;
  return (await import(href)) as BenchModule;
}

describe('each benchmark in smoke mode', () => {
  it('the runner lists every row of the issue, with the host rows loadable', async () => {
    const href: string = new URL('run.mjs', import.meta.url).href;
    const runner = (await import(href)) as { BENCHMARKS: Array<{ id: number; load: null | (() => Promise<unknown>) }> };
    expect(runner.BENCHMARKS.map((b) => b.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(runner.BENCHMARKS.filter((b) => b.load !== null).map((b) => b.id)).toEqual([3, 4, 5, 6, 7, 8]);
  });

  it.each(MODULES)('%s reports every figure with its baseline and ratio', { timeout: 120_000 }, async (file) => {
    const { run } = await load(file);
    const result = await run({ smoke: true, rounds: 1 });
    for (const key of RESULT_KEYS) expect(result, `result key ${key}`).toHaveProperty(key);
    expect(result.rounds).toBe(1);
    expect(result.title).not.toBe('');
    expect(result.baseline).not.toBe('');
    expect(result.reading).toMatch(/ratio/i);
    expect(result.metrics.length).toBeGreaterThan(0);
    for (const m of result.metrics) {
      for (const key of METRIC_KEYS) expect(m, `${m.name}: ${key}`).toHaveProperty(key);
      expect(Number.isFinite(m.value), `${m.name} is a number`).toBe(true);
      if (m.baseline !== null) {
        expect(Number.isFinite(m.baseline), `${m.name}'s baseline is a number`).toBe(true);
        expect(m.ratio).toBe(ratio(m.value, m.baseline));
      } else {
        expect(m.ratio).toBeNull();
      }
    }
    // Every row but the computed one has at least one figure measured against a baseline.
    expect(result.metrics.some((m) => m.baseline !== null)).toBe(true);
  });
});
