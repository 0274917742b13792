/**
 * The data path rows 1 and 2 measure, and the two programs that drive it:
 * the agent's native pump (this file, run as a child process) and the C loop
 * of native/bench/dmx-loop.c (the baseline). Both take the same stream the
 * same way: adapter 0's whole transport stream through the DVR (a TS tap on
 * PID 0x2000, as the agent's `source: 'dvr'` streams take it) into the pool
 * the agent's sizing policy picks for the decoder, every buffer imported as a
 * DMABUF into vim2m's OUTPUT queue (128x128 RGB24, sizeimage 49152: 49068 B
 * buffers fit it, kernel-facts.md), CAPTURE cycling with 4 buffers. Buffers
 * that large keep vim2m, one job at a time and at least a timer tick per job,
 * well ahead of vidtv's stream in the VM. On the host the devices are the
 * simulation (the same configuration on both sides: simConfig here, Config()
 * in native/bench/bench-sys-sim.cc); in the VM they are vidtv and vim2m.
 *
 * CPU time is the data-path thread's own (user + system, the scheduler's
 * sum_exec_runtime): the pump thread ("dmx-pump") read from /proc, the C
 * loop's thread by CLOCK_THREAD_CPUTIME_ID, which is the same clock. What the
 * simulated kernel does inside a call runs on the calling thread and counts,
 * as a real kernel's work inside an ioctl counts as system time.
 *
 *   node test/bench/lib/data-path.mjs pump '{"backend":"sim","bitrate":20000000,"warmupMs":500,"measureMs":2000}'
 *
 * prints one JSON line (see pumpSample).
 */
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { planPool } from '../../../dist/agent/streams/sizing.js';
import { LIVENESS_MS, REPO_ROOT, simConfig, sleep, TUNING, waitFor } from './env.mjs';

export const FRONTEND_PATH = '/dev/dvb/adapter0/frontend0';
export const DEMUX_PATH = '/dev/dvb/adapter0/demux0';
export const DVR_PATH = '/dev/dvb/adapter0/dvr0';
export const ALL_PIDS = 0x2000;
export const DECODER = {
  name: 'vim2m',
  fourcc: 'RGB3',
  width: 128,
  height: 128,
  sizeimage: 128 * 128 * 3,
  captureCount: 4,
};
/** The host's stream: a DVB-T multiplex, whole, as the DVR delivers it. */
export const HOST_BITRATE = 20_000_000;
/**
 * The pool the agent's sizing policy gives this stream into that decoder (default targets: 40 ms latency,
 * 500 ms buffering): buffers that fit vim2m's OUTPUT sizeimage, as many as vb2 grants.
 */
export const POOL = planPool({
  bitrate: HOST_BITRATE,
  latencyMs: 40,
  bufferingMs: 500,
  count: null,
  size: null,
  decoderSizeimage: DECODER.sizeimage,
});
/** The simulated vim2m's transaction time (the agent's simulation default). */
export const SIM_DECODER_DELAY_MS = 2;

/**
 * The simulated receiver: env.mjs's vidtv-like adapter with vim2m at the agent's default transaction
 * time. Keep in step with Config() in native/bench/bench-sys-sim.cc.
 */
export { simConfig };

/** The thread of this process named `name` (its comm), or null. */
export function findThread(name) {
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === name) return Number(tid);
    } catch {
      // the thread ended meanwhile
    }
  }
  return null;
}

/**
 * CPU time of a thread of this process, in ns: user + system, as the
 * scheduler accounts it (se.sum_exec_runtime). schedstat has it in ns where
 * the kernel keeps scheduler statistics; the VM's kernel has only the
 * scheduler's debug file, in ms with six decimals.
 */
export function threadCpuNs(tid) {
  try {
    return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    const sched = readFileSync(`/proc/self/task/${tid}/sched`, 'utf8');
    const match = /^se\.sum_exec_runtime\s*:\s*([\d.]+)/m.exec(sched);
    if (!match) throw new Error(`no se.sum_exec_runtime for thread ${tid}`);
    return Math.round(Number(match[1]) * 1e6);
  }
}

/**
 * The agent's data path, set up as the stream supervisor sets up a DVR
 * stream into a decoder, pumped for warmupMs and then measured for
 * measureMs. Returns what was measured over the window (buffers: cycles
 * back from the decoder; bytes: taken from the DVR), and the totals over the
 * pump's life (for the valgrind runs, which count the whole thread).
 */
export async function pumpSample({ backend, bitrate = HOST_BITRATE, warmupMs, measureMs, tsCheck = true }) {
  const native = await import('../../../dist/agent/native/index.js');
  const simulation = backend === 'sim' ? new native.Simulation(simConfig(bitrate)) : undefined;
  const opts = simulation ? { simulation } : {};
  const open = [];
  try {
    const frontend = new native.Frontend(FRONTEND_PATH, opts);
    open.push(frontend);
    frontend.tune(TUNING);
    await waitFor(() => frontend.status().lock, LIVENESS_MS, 'frontend lock');
    const filterNode = new native.Demux(DEMUX_PATH, { ...opts, kind: 'demux' });
    open.push(filterNode);
    filterNode.setPesFilter({ pid: ALL_PIDS, output: 'ts-tap', start: true });
    const pool = new native.Demux(DVR_PATH, { ...opts, kind: 'dvr' });
    open.push(pool);
    const granted = pool.requestBuffers(POOL.count, POOL.size);
    pool.mapBuffers();
    pool.exportBuffers();
    const decoder = new native.Decoder(DECODER.name, opts);
    open.push(decoder);
    const format = { fourcc: DECODER.fourcc, width: DECODER.width, height: DECODER.height };
    decoder.setFormat('output', format);
    decoder.setFormat('capture', format);
    decoder.prepare({ outputCount: granted.count, captureCount: DECODER.captureCount });
    const errors = [];
    // As the agent creates it: with an event callback (state changes and errors only, never per buffer).
    const pump = new native.Pump({
      demux: pool,
      sink: decoder,
      tsCheck,
      onEvents: (events) => errors.push(...events.filter((e) => e.type === 'error')),
    });
    open.push(pump);
    pump.start();
    const tid = await waitFor(() => findThread('dmx-pump'), LIVENESS_MS, 'the pump thread');
    await waitFor(() => pump.stats().sinkTime.returned >= 1, LIVENESS_MS, 'a buffer back from the decoder');
    await sleep(warmupMs);
    const before = pump.stats();
    const cpu0 = threadCpuNs(tid);
    const wall0 = process.hrtime.bigint();
    await sleep(measureMs);
    const after = pump.stats();
    const cpu1 = threadCpuNs(tid);
    const wall1 = process.hrtime.bigint();
    pump.stop();
    const final = pump.stats();
    const decoderStats = decoder.stats();
    return {
      backend,
      mode: 'pump',
      tsCheck,
      buffers: after.sinkTime.returned - before.sinkTime.returned,
      bytes: after.bytesDequeued - before.bytesDequeued,
      cpuNs: cpu1 - cpu0,
      wallNs: Number(wall1 - wall0),
      polls: after.polls - before.polls,
      // Over the pump's whole life, for the valgrind runs (stop() took the rest back outside the thread).
      totalBuffers: final.buffersDequeued,
      totalBytes: final.bytesDequeued,
      zeroQueuedMs: after.zeroQueued.totalMs - before.zeroQueued.totalMs,
      ccGaps: after.ts.ccGaps - before.ts.ccGaps,
      importRejected: decoderStats.importRejected,
      errors: errors.length,
    };
  } finally {
    // In reverse: the pump (it holds the decoder and the pool) first, the frontend last.
    for (const object of open.reverse()) object.close();
    simulation?.close();
  }
}

/** native/bench/build.sh: the C loops, rebuilt when their sources changed. */
export function buildTools() {
  const r = spawnSync('bash', [join(REPO_ROOT, 'native', 'bench', 'build.sh')], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0) throw new Error(`native/bench/build.sh failed (exit ${r.status ?? r.signal}): ${r.stderr}`);
  const [kernel, sim] = r.stdout.trim().split('\n');
  return { kernel, sim };
}

/** dmx-loop's arguments for one sample. */
export function loopArgs({ mode, bitrate = HOST_BITRATE, warmupMs, measureMs }) {
  return [
    ...['--mode', mode, '--pool', 'dvr', '--pid', String(ALL_PIDS)],
    ...['--count', String(POOL.count), '--size', String(POOL.size), '--capture', String(DECODER.captureCount)],
    ...['--width', String(DECODER.width), '--height', String(DECODER.height)],
    ...['--frequency', String(TUNING.frequency)],
    ...['--warmup-ms', String(warmupMs), '--measure-ms', String(measureMs)],
    ...['--bitrate', String(bitrate), '--delay-ms', String(SIM_DECODER_DELAY_MS)],
  ];
}

/** The node arguments that run pumpSample in a child process. */
export function pumpArgs(options) {
  return [join(REPO_ROOT, 'test', 'bench', 'lib', 'data-path.mjs'), 'pump', JSON.stringify(options)];
}

/**
 * Runs a sample program to its end and returns the JSON line it printed
 * last. `deadlineMs` is a liveness bound only.
 */
export function runSample(command, args, deadlineMs = 10 * LIVENESS_MS) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').filter(Boolean).pop();
      if (code !== 0 || !line) {
        reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}: ${stderr.trim().slice(-2000)}`));
        return;
      }
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`${command} printed no JSON: ${line}`));
      }
    });
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [what, json] = process.argv.slice(2);
  if (what !== 'pump' || json === undefined) {
    process.stderr.write('usage: node test/bench/lib/data-path.mjs pump \'{"backend":"sim"|"kernel",...}\'\n');
    process.exit(2);
  }
  const sample = await pumpSample(JSON.parse(json));
  process.stdout.write(`${JSON.stringify(sample)}\n`);
}
