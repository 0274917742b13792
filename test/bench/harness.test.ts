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
import { attributeCopies, C_LOOP, PUMP_LOOP, PUMP_RETURNED, parseCallgrind } from './lib/valgrind.mjs';

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

describe('valgrind profiles of the data-path rows', () => {
  it('totals instructions, and counts calls to a function and their inclusive cost, with names compressed or not', () => {
    const plain = [
      'events: Ir',
      'summary: 900',
      'fn=dmx::PumpCore::Run()',
      '0 10',
      'cfn=dmx::PumpCore::Returned(unsigned int)',
      'calls=3 0',
      '0 30',
      'fn=dmx::DecoderSink::DrainOutput()',
      'cfn=dmx::PumpCore::Returned(unsigned int)',
      'calls=4 0',
      '0 40',
      'cfn=dmx::PumpCore::Requeue(unsigned int)',
      'calls=7 0',
      '0 70',
      'totals: 1000',
    ].join('\n');
    expect(parseCallgrind(plain, [PUMP_RETURNED])).toEqual({
      instructions: 1000,
      calls: { [PUMP_RETURNED]: 7 },
      inclusive: { [PUMP_RETURNED]: 70 },
    });
    const compressed = [
      'summary: 500',
      'fn=(1) dmx::PumpCore::Run()',
      'cfn=(2) dmx::PumpCore::Returned(unsigned int)',
      'calls=2 0',
      '0 5',
      'fn=(3) dmx::DecoderSink::DrainOutput()',
      'cfn=(2)',
      'calls=5 0',
      '0 9',
      'cfn=(1)',
      'calls=1 0',
      '0 1',
    ].join('\n');
    // No totals: line: the header's summary stands.
    expect(parseCallgrind(compressed, [PUMP_RETURNED, PUMP_LOOP])).toEqual({
      instructions: 500,
      calls: { [PUMP_RETURNED]: 7, [PUMP_LOOP]: 1 },
      inclusive: { [PUMP_RETURNED]: 14, [PUMP_LOOP]: 1 },
    });
    expect(() => parseCallgrind('fn=x\n0 1\n')).toThrow(/totals/);
  });

  it("splits a thread's copies into its own, the simulated kernel's and the decoder job's, ignoring other threads", () => {
    const ftbl = [
      '[root]',
      '0x1: memmove (in vgpreload_dhat-amd64-linux.so)',
      '0x2: std::vector<pollfd>::_M_realloc_insert (in dmx_native.node)',
      '0x3: dmx::PumpCore::Run() (in dmx_native.node)',
      '0x4: dmx::sim::DvbVb2Ctx::Dqbuf(dmx_buffer*) (in dmx_native.node)',
      '0x5: dmx::SimSys::Ioctl(int, unsigned long, void*) (in dmx_native.node)',
      '0x6: dmx::sim::M2mDecoder::StartPair(dmx::sim::M2mContext*) (in dmx_native.node)',
      '0x7: dmx::sim::DvbVb2Ctx::FillBuffer (in dmx_native.node)',
      '0x8: drain_dvr (dmx-loop.c:300)',
      '0x9: dmx_bench_loop (dmx-loop.c:400)',
    ];
    const profile = {
      mode: 'copy',
      ftbl,
      pps: [
        { tb: 24, tbk: 2, fs: [1, 2, 3] }, // the pump's own
        { tb: 40, tbk: 5, fs: [1, 4, 5, 3] }, // the simulated kernel inside a call from the pump
        { tb: 12288, tbk: 1, fs: [1, 6, 5, 3] }, // vim2m's job, started by the pump's QBUF
        { tb: 99999, tbk: 9, fs: [1, 7] }, // the demux filling buffers on its own thread
        { tb: 12220, tbk: 3, fs: [1, 8, 9] }, // the C loop's memcpy
      ],
    };
    expect(attributeCopies(profile, PUMP_LOOP)).toEqual({ own: 24, kernel: 40, decoderJob: 12288, ownCopies: 2 });
    expect(attributeCopies(profile, C_LOOP)).toEqual({ own: 12220, kernel: 0, decoderJob: 0, ownCopies: 3 });
    expect(() => attributeCopies({ ...profile, mode: 'heap' }, PUMP_LOOP)).toThrow(/copy profile/);
  });
});

// Every host benchmark, in the order of issue 7. Rows 1 and 2 (data-path.mjs, zero-copy.mjs) boot the
// real-kernel VM and run valgrind; they run in `node test/bench/run.mjs --smoke --only 1,2`, not here
// (one VM at a time on a machine).
const MODULES = ['event-loop.mjs', 'footprint.mjs', 'startup.mjs', 'commands.mjs', 'telemetry.mjs', 'pool-sizing.mjs'];

async function load(file: string): Promise<BenchModule> {
  const href: string = new URL(file, import.meta.url).href;
  return (await import(href)) as BenchModule;
}

describe('each benchmark in smoke mode', () => {
  it('the runner lists every row of the issue, each with a module that has run()', async () => {
    const href: string = new URL('run.mjs', import.meta.url).href;
    const runner = (await import(href)) as { BENCHMARKS: Array<{ id: number; load: null | (() => Promise<unknown>) }> };
    expect(runner.BENCHMARKS.map((b) => b.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const bench of runner.BENCHMARKS) {
      expect(bench.load, `row ${bench.id}`).not.toBeNull();
      const module = (await bench.load?.()) as Partial<BenchModule>;
      expect(typeof module.run, `row ${bench.id}'s run`).toBe('function');
    }
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
