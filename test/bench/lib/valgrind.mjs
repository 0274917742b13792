/**
 * Valgrind for the data-path rows: callgrind's instruction counts (row 1)
 * and DHAT's copy profile (row 2), both of one thread's loop: the pump's
 * (dmx::PumpCore::Run) or the C loop's (dmx_bench_loop). Counts are
 * repeatable where times are not; what a run costs once (thread start, the
 * first allocations, vectors growing) is cancelled by taking two run lengths
 * and dividing the difference by the difference in buffers or bytes.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runSample } from './data-path.mjs';

/** The loop functions whose thread a profile counts. */
export const PUMP_LOOP = 'dmx::PumpCore::Run()';
export const C_LOOP = 'dmx_bench_loop';
/** Called once per buffer the decoder hands back, on the pump thread. */
export const PUMP_RETURNED = 'dmx::PumpCore::Returned(unsigned int)';
/**
 * The simulated vim2m processing a job (a copy of the frame): like the
 * kernel's device_run it runs inside the QBUF that starts a job when the
 * decoder is idle, else on the decoder's own thread, as timing has it. It is
 * the decoder's work, not the data path's, and under valgrind its copy alone
 * (a rep movsb, one count per byte) outweighs the rest: taken out of both
 * sides' counts.
 */
export const DECODER_JOB = 'dmx::sim::M2mDecoder::StartPair(dmx::sim::M2mContext*)';
/** The pump's TS continuity check of a dequeued buffer, read in place. */
export const TS_CHECK = 'dmx::TsChecker::Feed(unsigned char const*, unsigned long)';

export function valgrindVersion() {
  const r = spawnSync('valgrind', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error('valgrind not found (apt-get install valgrind)');
  return r.stdout.trim();
}

/**
 * The total of the first event (Ir) from a callgrind output file, and for
 * each of `callees` the calls to it and their inclusive cost (everything it
 * and its callees executed); names compressed ("(12) name", then "(12)") or
 * not.
 */
export function parseCallgrind(text, callees = []) {
  const names = new Map();
  const calls = Object.fromEntries(callees.map((name) => [name, 0]));
  const inclusive = Object.fromEntries(callees.map((name) => [name, 0]));
  let total = null;
  let summary = null;
  let callee = null;
  // The line after a calls= line is the call's position and inclusive cost.
  let costOf = null;
  for (const line of text.split('\n')) {
    if (costOf !== null) {
      inclusive[costOf] += Number(line.trim().split(/\s+/)[1] ?? 0);
      costOf = null;
      continue;
    }
    if (line.startsWith('fn=') || line.startsWith('cfn=')) {
      const value = line.slice(line.indexOf('=') + 1);
      const match = /^\((\d+)\)(?: (.*))?$/.exec(value);
      let name = value;
      if (match) {
        if (match[2] !== undefined) names.set(match[1], match[2]);
        name = names.get(match[1]) ?? '';
      }
      // A calls= line counts calls to the function the cfn= line before it named.
      callee = line.startsWith('cfn=') ? name : null;
    } else if (line.startsWith('calls=')) {
      if (callee !== null && callee in calls) {
        calls[callee] += Number(line.slice(6).split(' ')[0]);
        costOf = callee;
      }
    } else if (line.startsWith('totals:')) {
      total = Number(line.slice(7).trim().split(/\s+/)[0]);
    } else if (line.startsWith('summary:')) {
      summary = Number(line.slice(8).trim().split(/\s+/)[0]);
    }
  }
  const instructions = total ?? summary;
  if (instructions === null || !Number.isFinite(instructions)) throw new Error('no totals: or summary: line');
  return { instructions, calls, inclusive };
}

/**
 * Splits a DHAT copy profile (--mode=copy) of the thread whose stacks pass
 * through `loop`: bytes copied by the program's own code, by the simulated
 * kernel on its behalf (any dmx::SimSys / dmx::sim frame), and by the
 * simulated decoder's processing of a job (vim2m's device_run, which the
 * kernel too runs in whichever thread queues the buffer that starts a job).
 * Copies on other threads (the simulated devices' own, node's) are left out.
 */
export function attributeCopies(profile, loop) {
  if (profile.mode !== 'copy') throw new Error(`not a DHAT copy profile (mode ${profile.mode})`);
  const out = { own: 0, kernel: 0, decoderJob: 0, ownCopies: 0 };
  for (const pp of profile.pps) {
    const frames = pp.fs.map((i) => profile.ftbl[i]);
    if (!frames.some((f) => f.includes(loop))) continue;
    if (frames.some((f) => f.includes('dmx::sim::M2mDecoder::StartPair'))) out.decoderJob += pp.tb;
    else if (frames.some((f) => /dmx::SimSys::|dmx::sim::/.test(f))) out.kernel += pp.tb;
    else {
      out.own += pp.tb;
      out.ownCopies += pp.tbk;
    }
  }
  return out;
}

/** Runs a sample program under callgrind, counting only `loop`'s thread; returns the sample and the counts. */
export async function callgrindSample(command, args, { loop, callees = [], dir, name }) {
  const file = join(dir, `callgrind.${name}.out`);
  const sample = await runSample('valgrind', [
    '--tool=callgrind',
    '--collect-atstart=no',
    `--toggle-collect=${loop}`,
    '--compress-strings=no',
    `--callgrind-out-file=${file}`,
    command,
    ...args,
  ]);
  return { sample, ...parseCallgrind(readFileSync(file, 'utf8'), callees) };
}

/** Runs a sample program under DHAT's copy profiler; returns the sample and `loop`'s thread's copies. */
export async function dhatSample(command, args, { loop, dir, name }) {
  const file = join(dir, `dhat.${name}.json`);
  const sample = await runSample('valgrind', [
    '--tool=dhat',
    '--mode=copy',
    // Deep enough to reach the loop from a copy inside the simulated kernel.
    '--num-callers=64',
    `--dhat-out-file=${file}`,
    command,
    ...args,
  ]);
  return { sample, copies: attributeCopies(JSON.parse(readFileSync(file, 'utf8')), loop) };
}
