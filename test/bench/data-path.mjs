/**
 * Row 1, data-path cost per buffer: what one buffer cycle (the demux fills
 * it, DMX_DQBUF, VIDIOC_QBUF into vim2m's OUTPUT queue as a DMABUF, the
 * decoder hands it back, VIDIOC_DQBUF, DMX_QBUF) costs the agent's native
 * pump, against native/bench/dmx-loop.c doing the same ioctl sequence in
 * plain C on the same stream (lib/data-path.mjs says which). Three ways:
 *   - CPU time of the data-path thread on the host's simulation (the same
 *     simulated kernel linked into the C loop), alternating rounds; the pump
 *     once as the agent runs it (TS continuity check on) and once without it;
 *   - instructions of the thread's loop under callgrind on the host, per
 *     cycle from two run lengths (repeatable where times are not), with and
 *     without the TS check, the simulated decoder's frame copy taken out;
 *   - CPU time on the real kernel, vidtv + vim2m in the VM (lib/vm-session.mjs,
 *     one boot shared with row 2).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTools, DECODER, HOST_BITRATE, loopArgs, POOL, pumpArgs, runSample } from './lib/data-path.mjs';
import { alternate, median, metric } from './lib/harness.mjs';
import {
  C_LOOP,
  callgrindSample,
  DECODER_JOB,
  PUMP_LOOP,
  PUMP_RETURNED,
  TS_CHECK,
  valgrindVersion,
} from './lib/valgrind.mjs';
import { vmDataPath, vmOptions } from './lib/vm-session.mjs';

const perBufferUs = (s) => s.cpuNs / s.buffers / 1000;
const pollsPerBuffer = (s) => s.polls / s.buffers;

/** Host rounds: pump (TS check on), pump (off), C loop, alternating. */
async function hostTiming(tools, rounds, window) {
  return alternate(
    {
      pump: () => runSample(process.execPath, pumpArgs({ backend: 'sim', ...window })),
      'pump-no-ts-check': () => runSample(process.execPath, pumpArgs({ backend: 'sim', tsCheck: false, ...window })),
      c: () => runSample(tools.sim, loopArgs({ mode: 'mmap', ...window })),
    },
    rounds,
  );
}

/**
 * Instructions per buffer cycle under callgrind: the loop's count over a
 * short and a long run, the difference divided by the difference in cycles.
 * The pump's cycles are callgrind's own count of PumpCore::Returned calls on
 * that thread; the C loop prints its own. The simulated decoder's frame
 * processing, when it lands on the thread, is taken out (DECODER_JOB).
 */
async function instructionCounts(tools, smoke) {
  const dir = mkdtempSync(join(tmpdir(), 'dmx-bench-callgrind-'));
  try {
    const lengths = smoke ? [500, 1500] : [1000, 4000];
    const pump = [];
    const c = [];
    for (const measureMs of lengths) {
      const window = { warmupMs: 300, measureMs };
      const p = await callgrindSample(process.execPath, pumpArgs({ backend: 'sim', ...window }), {
        loop: PUMP_LOOP,
        callees: [PUMP_RETURNED, DECODER_JOB, TS_CHECK],
        dir,
        name: `pump-${measureMs}`,
      });
      pump.push({
        instructions: p.instructions - p.inclusive[DECODER_JOB],
        decoderJobs: p.inclusive[DECODER_JOB],
        tsCheck: p.inclusive[TS_CHECK],
        cycles: p.calls[PUMP_RETURNED],
      });
      const l = await callgrindSample(tools.sim, loopArgs({ mode: 'mmap', ...window }), {
        loop: C_LOOP,
        callees: [DECODER_JOB],
        dir,
        name: `c-${measureMs}`,
      });
      c.push({
        instructions: l.instructions - l.inclusive[DECODER_JOB],
        decoderJobs: l.inclusive[DECODER_JOB],
        cycles: l.sample.totalBuffers,
      });
    }
    const perCycle = ([short, long], field = 'instructions') =>
      (long[field] - short[field]) / (long.cycles - short.cycles);
    return { pump: perCycle(pump), pumpTsCheck: perCycle(pump, 'tsCheck'), c: perCycle(c), runs: { pump, c } };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run({ smoke = false, rounds } = {}) {
  const tools = buildTools();
  const valgrind = valgrindVersion();
  const hostRounds = rounds ?? 5;
  const window = smoke ? { warmupMs: 300, measureMs: 1000 } : { warmupMs: 500, measureMs: 2500 };
  const host = await hostTiming(tools, hostRounds, window);
  const counts = await instructionCounts(tools, smoke);
  const vm = await vmDataPath(vmOptions({ smoke, rounds }));

  const med = (list, f) => median(list.map(f));
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return {
    id: 1,
    title: 'Data-path cost per buffer',
    rounds: hostRounds,
    baseline:
      'native/bench/dmx-loop.c, the same ioctl sequence in plain C (poll, DMX_DQBUF, VIDIOC_QBUF as a DMABUF on ' +
      "vim2m's OUTPUT queue, VIDIOC_DQBUF, DMX_QBUF; CAPTURE cycling as the pump does) on the same stream and pool, " +
      'alternating in the same run',
    metrics: [
      metric(
        `CPU per buffer cycle, host simulation (${HOST_BITRATE / 1e6} Mbit/s)`,
        'µs',
        med(host.pump, perBufferUs),
        med(host.c, perBufferUs),
      ),
      metric(
        'CPU per buffer cycle, host simulation, pump without its TS check',
        'µs',
        med(host['pump-no-ts-check'], perBufferUs),
        med(host.c, perBufferUs),
      ),
      metric('instructions per buffer cycle, host simulation (callgrind)', 'Ir', counts.pump, counts.c),
      metric(
        'instructions per buffer cycle, pump without its TS check (callgrind)',
        'Ir',
        counts.pump - counts.pumpTsCheck,
        counts.c,
      ),
      metric(
        `CPU per buffer cycle, VM: vidtv + vim2m (${vm.kernel}, ${plural(vm.cpus, 'vCPU')}, ${plural(vm.rounds, 'round')})`,
        'µs',
        med(vm.samples.pump, perBufferUs),
        med(vm.samples['c-mmap'], perBufferUs),
      ),
      metric(
        'polls per buffer cycle, host simulation',
        '',
        med(host.pump, pollsPerBuffer),
        med(host.c, pollsPerBuffer),
      ),
    ],
    reading:
      "Ratio = the pump's cost / the C loop's: 1x is nothing beyond the ioctls; above 1 is the price of the pump's " +
      'bookkeeping (counters, ownership ledger, TS continuity check, event batching, a stop fd in every poll). CPU is ' +
      "the data-path thread's own (user + system, the scheduler's runtime) per buffer back from the decoder; what the " +
      '(simulated) kernel does inside a call counts, on both sides. Instructions: callgrind over the thread loop ' +
      "(PumpCore::Run, dmx_bench_loop), per cycle from two run lengths, less the simulated vim2m's frame copy.",
    notes: [
      `pool ${POOL.count} x ${POOL.size} B (the sizing policy for vim2m ${DECODER.width}x${DECODER.height} RGB24, ` +
        `sizeimage ${DECODER.sizeimage}), the whole TS through the DVR`,
      `host: ${hostRounds} rounds of ${window.measureMs} ms after ${window.warmupMs} ms warm-up; simulated vim2m 2 ms per job`,
      `VM: ${vm.accel}; ${vm.rounds} rounds of ${vm.measureMs} ms; vim2m default_transtime ${vm.transtimeMs ?? 'unchanged (40)'} ms`,
      "vim2m processes a job (a copy of the frame) inside the QBUF that starts it, on either side's thread alike",
      valgrind,
    ],
    samples: { host, callgrind: counts.runs, vm: { pump: vm.samples.pump, c: vm.samples['c-mmap'] } },
  };
}
