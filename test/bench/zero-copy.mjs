/**
 * Row 2, zero copy against read() and copy: CPU per megabyte of the agent's
 * path (the demux fills mmap'ed buffers, the decoder imports them as
 * DMABUFs) against what tvheadend and GStreamer's dvbsrc do (read() from the
 * DVR into a buffer of their own, memcpy into the decoder's MMAP OUTPUT
 * buffers), both on vidtv's whole stream through vim2m in the VM, at the rate
 * vidtv delivers (lib/vm-session.mjs, one boot shared with row 1). The same
 * in C (native/bench/dmx-loop.c, --mode mmap against --mode read) separates
 * the copy's price from the agent's own overhead.
 *
 * Bytes copied are measured, not asserted: DHAT's copy profiler (valgrind
 * --tool=dhat --mode=copy) records every memcpy/memmove/strcpy-family call
 * with its stack, and the copies made on the data-path thread are split into
 * the program's own and the (simulated) kernel's on its behalf, on the host
 * simulation where the agent's code is the same. Per megabyte from two run
 * lengths, so what a run copies once (a vector growing) cancels out.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTools, loopArgs, POOL, pumpArgs } from './lib/data-path.mjs';
import { median, metric } from './lib/harness.mjs';
import { C_LOOP, dhatSample, PUMP_LOOP, valgrindVersion } from './lib/valgrind.mjs';
import { vmDataPath, vmOptions } from './lib/vm-session.mjs';

const MB = 1e6;
const cpuMsPerMb = (s) => s.cpuNs / 1e6 / (s.bytes / MB);
const rateKBps = (s) => s.bytes / 1000 / (s.wallNs / 1e9);

/** Bytes copied per MB on the data-path thread, from a short and a long run. */
async function copiesPerMb(tools, smoke) {
  const dir = mkdtempSync(join(tmpdir(), 'dmx-bench-dhat-'));
  try {
    const lengths = smoke ? [500, 1500] : [1000, 3000];
    const runs = { pump: [], read: [] };
    for (const measureMs of lengths) {
      const window = { warmupMs: 300, measureMs };
      const p = await dhatSample(process.execPath, pumpArgs({ backend: 'sim', ...window }), {
        loop: PUMP_LOOP,
        dir,
        name: `pump-${measureMs}`,
      });
      runs.pump.push({ ...p.copies, bytes: p.sample.totalBytes });
      const r = await dhatSample(tools.sim, loopArgs({ mode: 'read', ...window }), {
        loop: C_LOOP,
        dir,
        name: `read-${measureMs}`,
      });
      runs.read.push({ ...r.copies, bytes: r.sample.totalBytes });
    }
    const perMb = ([short, long], field) => ((long[field] - short[field]) / (long.bytes - short.bytes)) * MB;
    return {
      own: { pump: perMb(runs.pump, 'own'), read: perMb(runs.read, 'own') },
      kernel: { pump: perMb(runs.pump, 'kernel'), read: perMb(runs.read, 'kernel') },
      runs,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run({ smoke = false, rounds } = {}) {
  const tools = buildTools();
  const valgrind = valgrindVersion();
  const copies = await copiesPerMb(tools, smoke);
  const vm = await vmDataPath(vmOptions({ smoke, rounds }));
  const { pump, 'c-mmap': cMmap, 'c-read': cRead } = vm.samples;
  const med = (list, f) => median(list.map(f));
  const sum = (list, field) => list.reduce((total, s) => total + (s[field] ?? 0), 0);
  return {
    id: 2,
    title: 'Zero copy against read() + memcpy',
    rounds: vm.rounds,
    baseline:
      "read() from the DVR into the program's own buffer and memcpy into vim2m's MMAP OUTPUT buffers " +
      '(native/bench/dmx-loop.c --mode read, as tvheadend and dvbsrc do) on the same stream, alternating in the same VM run',
    metrics: [
      metric(
        `CPU per MB, VM: the agent (mmap + DMABUF), ${vm.kernel}`,
        'ms/MB',
        med(pump, cpuMsPerMb),
        med(cRead, cpuMsPerMb),
      ),
      metric(
        'CPU per MB, VM: the same path in C (mmap + DMABUF)',
        'ms/MB',
        med(cMmap, cpuMsPerMb),
        med(cRead, cpuMsPerMb),
      ),
      metric('stream rate through the decoder, VM (agent)', 'kB/s', med(pump, rateKBps), med(cRead, rateKBps)),
      metric(
        "bytes copied by the agent's own code per MB (DHAT, host simulation)",
        'B/MB',
        copies.own.pump,
        copies.own.read,
      ),
      metric(
        'bytes copied by the (simulated) kernel for the data-path thread per MB (DHAT)',
        'B/MB',
        copies.kernel.pump,
        copies.kernel.read,
      ),
    ],
    reading:
      "Ratio = the zero-copy path's figure / the read() path's. CPU is the data-path thread's (user + system) per " +
      "10^6 bytes taken from the DVR; both paths get vidtv's stream at the rate it delivers (the stream-rate ratio " +
      'near 1x says they kept up alike). The copy figures count memcpy-family calls on that thread by their stacks: ' +
      "the agent's own are expected at 0 (ratio 0.00x), the read() path's at 10^6 B/MB in user space plus 10^6 by " +
      "the kernel's read(); on the agent's side the simulated kernel copies only its own bookkeeping (queue lists, " +
      "poll sets), no stream data. vim2m's processing of each frame (a copy, on whichever thread starts the job) is " +
      'left out on both sides.',
    notes: [
      `pool and OUTPUT buffers ${POOL.count} x ${POOL.size} B; VM: ${vm.accel}, ${vm.rounds} rounds of ${vm.measureMs} ms`,
      `DVR ring overflows (data lost) on the read() path: ${sum(cRead, 'overflows')}; pump continuity gaps: ${sum(pump, 'ccGaps')}`,
      "DHAT counts calls to libc's copy functions (memcpy, memmove, strcpy...); a copy the compiler inlined would not show",
      valgrind,
    ],
    samples: { vm: vm.samples, dhat: copies.runs },
  };
}
