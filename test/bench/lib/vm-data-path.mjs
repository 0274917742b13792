/**
 * Runs inside the VM (started by vm-session.mjs through
 * test/kernel/run-kernel-suite.mjs): the data-path samples of rows 1 and 2
 * on vidtv + vim2m, three variants alternating round by round, each one a
 * fresh process on the same stream:
 *   pump    the agent's pump (mmap + DMABUF), node data-path.mjs pump
 *   c-mmap  native/bench/dmx-loop.c, the same ioctl sequence in C
 *   c-read  the same program reading the DVR with read() and memcpy
 * Writes every sample to $DMX_VM_RESULTS/data-path.json for the host.
 *
 *   node test/bench/lib/vm-data-path.mjs '{"rounds":5,"warmupMs":1500,"measureMs":8000}'
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import { loopArgs, pumpArgs, runSample } from './data-path.mjs';
import { REPO_ROOT } from './env.mjs';
import { alternate } from './harness.mjs';

const options = JSON.parse(process.argv[2] ?? '{}');
const { rounds = 5, warmupMs = 1500, measureMs = 8000 } = options;
const results = process.env.DMX_VM_RESULTS;
if (!results) throw new Error('DMX_VM_RESULTS is not set: this runs inside the VM');
// Built on the host before the VM booted (the VM's view of the checkout is the host's).
const loop = join(REPO_ROOT, 'build', 'bench-tools', 'dmx-loop');
if (!existsSync(loop)) throw new Error(`${loop} is missing: native/bench/build.sh runs on the host first`);

// vim2m takes 40 ms per buffer by default (25 a second), fewer than vidtv's stream fills under qemu: the decoder
// would decide the pace and the demux would run dry. Its module parameter sets the transaction time of every
// context opened later; 2 ms, as the simulation's vim2m.
const TRANSTIME = '/sys/module/vim2m/parameters/default_transtime';
let transtimeMs = null;
try {
  writeFileSync(TRANSTIME, '2');
  transtimeMs = Number(readFileSync(TRANSTIME, 'utf8'));
} catch (err) {
  process.stderr.write(`cannot set ${TRANSTIME}: ${err instanceof Error ? err.message : err}\n`);
}

const window = { warmupMs, measureMs };
const started = Date.now();
const samples = await alternate(
  {
    pump: () => runSample(process.execPath, pumpArgs({ backend: 'kernel', ...window })),
    'c-mmap': () => runSample(loop, loopArgs({ mode: 'mmap', ...window })),
    'c-read': () => runSample(loop, loopArgs({ mode: 'read', ...window })),
  },
  rounds,
);
const document = { kernel: release(), cpus: availableParallelism(), transtimeMs, rounds, ...window, samples };
writeFileSync(join(results, 'data-path.json'), `${JSON.stringify(document, null, 2)}\n`);
process.stdout.write(`data-path samples written in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
