#!/usr/bin/env node
// Runs the `conformance-kernel` vitest project against the real kernel (vidtv,
// vim2m, vicodec) inside qemu: `npm run test:kernel [-- <vitest args>]`.
//
// 1. checks that the addon is built on the host (the VM's root is read-only)
//    and runs test/consumer/build.sh,
// 2. builds or reuses the kernel image (test/kernel/build-kernel.sh),
// 3. boots qemu with the host's / over 9p read-only and a scratch directory as
//    a writable results share, init = test/kernel/vm-init.sh,
// 4. streams the serial console, enforces a wall-clock limit,
// 5. summarises vitest's JSON report and exits non-zero on any failure.
//
// Environment:
//   DMX_VM_ACCEL      auto (default: KVM when usable, else TCG) | kvm | tcg
//   DMX_VM_TIMEOUT    wall-clock limit for the VM in seconds (default 1500 = 25 min)
//   DMX_VM_BOOT_TIMEOUT  seconds for the VM to reach its init (default 120); in
//                     auto mode a KVM boot that misses it is retried with TCG
//   DMX_VM_MEM        guest memory in MiB (default 2048)
//   DMX_VM_CPUS       guest CPUs (default: host CPUs, at most 4)
//   DMX_VM_CPU        qemu -cpu model (default max,-arch-capabilities)
//   DMX_VM_SHELL=1    interactive shell in the VM instead of the tests
//   DMX_VM_CMD        shell command to run in the VM instead of vitest (cwd =
//                     the checkout; $DMX_VM_NODE is node, $DMX_VM_RESULTS the share)
//   DMX_KERNEL_IMAGE  boot this bzImage instead of building one
//   DMX_KERNEL_NO_ADDON=1  do not require the native addon (for test/kernel/ alone)
//   DMX_VM_KEEP=1     keep the scratch results directory and print its path
//   DMX_VM_PREBUILT=1 do not run the TypeScript build: the caller built dist/ already
//                     (`npm run bench` does, and must not have dist/ rebuilt under it)
// CI, NO_COLOR, FORCE_COLOR, TERM, DMX_TEST_* and VITEST_* are passed into the VM.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const initScript = path.join(here, 'vm-init.sh');
const addon = path.join(repo, 'native', 'build', 'Release', 'dmx_native.node');
const consumerBuild = path.join(repo, 'test', 'consumer', 'build.sh');
// Inside the VM (vm-init.sh mounts the results share there).
const vmResults = '/run/dmx/results';
const qemuBin = 'qemu-system-x86_64';

const env = process.env;
const shellMode = env.DMX_VM_SHELL === '1';
const customCmd = env.DMX_VM_CMD ?? '';
const accelWanted = (env.DMX_VM_ACCEL || 'auto').toLowerCase();
// `max` is the host CPU under KVM and everything TCG can emulate otherwise.
// Without arch-capabilities: nested KVM hosts may advertise that MSR and then
// refuse it, and qemu aborts ("failed to set MSR 0x10a").
const cpuModel = env.DMX_VM_CPU || 'max,-arch-capabilities';
let vitestArgs = process.argv.slice(2);
if (vitestArgs[0] === '--') vitestArgs = vitestArgs.slice(1);

const t0 = Date.now();
const log = (msg) => console.log(`[kernel-suite] ${msg}`);
const secs = (ms) => `${(ms / 1000).toFixed(1)}s`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Single-quote for sh. */
const sq = (s) => `'${String(s).replaceAll("'", `'\\''`)}'`;

// --- cleanup on every way out: qemu never outlives this process ----------------------
let scratch = '';
let qemu = null;
function cleanup() {
  if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
    try {
      qemu.kill('SIGKILL');
    } catch {}
  }
  if (scratch && env.DMX_VM_KEEP !== '1') {
    fs.rmSync(scratch, { recursive: true, force: true });
    scratch = '';
  }
}
process.on('exit', cleanup);
for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
]) {
  process.on(sig, () => {
    console.error(`\n[kernel-suite] ${sig}: stopping qemu`);
    cleanup();
    process.exit(code);
  });
}

function fail(msg) {
  console.error(`[kernel-suite] ERROR: ${msg}`);
  process.exit(1);
}

function positiveInt(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) fail(`${name}=${raw} is not a positive integer`);
  return n;
}
const timeoutSec = positiveInt('DMX_VM_TIMEOUT', 1500);
const bootTimeoutSec = positiveInt('DMX_VM_BOOT_TIMEOUT', 120);
const memMiB = positiveInt('DMX_VM_MEM', 2048);
const cpus = positiveInt('DMX_VM_CPUS', Math.min(os.availableParallelism?.() ?? os.cpus().length, 4));

// --- 0. what the host must provide --------------------------------------------------------
if (!['auto', 'kvm', 'tcg'].includes(accelWanted)) fail(`DMX_VM_ACCEL must be auto, kvm or tcg, not "${accelWanted}"`);
// The init's path goes on the kernel command line, which splits at blanks.
if (!/^\/[\w./+@:,~=-]*$/.test(initScript)) {
  fail(`the checkout's path (${repo}) has characters a kernel command line cannot carry; move the checkout`);
}
if (spawnSync(qemuBin, ['--version'], { stdio: 'ignore' }).error)
  fail(`${qemuBin} not found: apt-get install qemu-system-x86`);
for (const hidden of ['/tmp/', '/run/']) {
  // vm-init.sh mounts tmpfs there, hiding the host's files.
  if (process.execPath.startsWith(hidden)) fail(`node (${process.execPath}) lives under ${hidden}, which the VM hides`);
}
if (!fs.existsSync(addon) && env.DMX_KERNEL_NO_ADDON !== '1' && !customCmd && !shellMode) {
  fail(`${path.relative(repo, addon)} is missing: run \`npm install\` on the host first (the VM cannot build it)`);
}
if (fs.existsSync(consumerBuild)) {
  const r = spawnSync('bash', [consumerBuild], { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) fail(`${path.relative(repo, consumerBuild)} failed (exit ${r.status ?? r.signal})`);
  log(`test tools built: ${r.stdout.trim().split('\n').join(', ')}`);
}

// The agent's end-to-end tests run dist/agent/cli.js; the VM cannot compile it.
if (env.DMX_VM_PREBUILT !== '1') {
  const tsc = path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(repo, 'tsconfig.json')], { cwd: repo, stdio: 'inherit' });
  if (r.status !== 0) fail(`the TypeScript build failed (exit ${r.status ?? r.signal})`);
  log('agent built: dist/');
}

// --- 1. kernel image ------------------------------------------------------------------------
let kernel = env.DMX_KERNEL_IMAGE ?? '';
if (kernel) {
  if (!fs.existsSync(kernel)) fail(`DMX_KERNEL_IMAGE=${kernel} does not exist`);
  log(`kernel image from DMX_KERNEL_IMAGE: ${kernel}`);
} else {
  const build = spawnSync('bash', [path.join(here, 'build-kernel.sh')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (build.status !== 0) fail(`kernel build failed (exit ${build.status ?? build.signal})`);
  kernel = build.stdout.trim().split('\n').pop() ?? '';
  if (!kernel || !fs.existsSync(kernel)) fail(`build-kernel.sh printed no image path (got "${build.stdout.trim()}")`);
}
const tKernel = Date.now();

// --- 2. scratch results share -------------------------------------------------------------
scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'dmx-kernel-'));
const passEnv = Object.entries(env).filter(([k]) => /^(CI|NO_COLOR|FORCE_COLOR|TERM|DMX_TEST_\w+|VITEST_\w+)$/.test(k));
// The VM's output reaches the console through a pipe (see vm-init.sh); keep
// colours when this terminal shows them.
if (process.stdout.isTTY && env.NO_COLOR === undefined && env.FORCE_COLOR === undefined) {
  passEnv.push(['FORCE_COLOR', '1']);
}
function writeVmEnv(vmTimeoutSec) {
  const lines = [
    `DMX_VM_NODE=${sq(process.execPath)}`,
    `DMX_VM_SHELL=${shellMode ? 1 : 0}`,
    `DMX_VM_COLS=${process.stdout.columns || 160}`,
    shellMode ? '' : `DMX_VM_TIMEOUT=${vmTimeoutSec}`,
    ...passEnv.map(([k, v]) => `${k}=${sq(v)}; export ${k}`),
  ];
  fs.writeFileSync(path.join(scratch, 'vm.env'), `${lines.filter(Boolean).join('\n')}\n`);
}
const vitestCmd = [
  '"$DMX_VM_NODE"',
  'node_modules/vitest/vitest.mjs',
  'run',
  '--project conformance-kernel',
  '--reporter=default',
  '--reporter=json',
  `--outputFile=${vmResults}/vitest.json`,
  ...vitestArgs.map(sq),
].join(' ');
fs.writeFileSync(path.join(scratch, 'cmd.sh'), `${customCmd || `exec ${vitestCmd}`}\n`);

// --- 3. which accelerator ----------------------------------------------------------------
/** Why KVM should not be tried, or null. */
function kvmProblem() {
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
  } catch (e) {
    return `/dev/kvm is not usable (${e.code})`;
  }
  // kvm_pvm (Pagetable-based VM) offers /dev/kvm inside VMs without hardware
  // virtualisation; it runs PVM-enabled guest kernels. An ordinary kernel under
  // it spends minutes in its decompressor (seen on this project's machines).
  if (fs.existsSync('/sys/module/kvm_pvm')) return '/dev/kvm is kvm_pvm, which cannot run an ordinary kernel at speed';
  return null;
}
let plan;
if (accelWanted !== 'auto') plan = [accelWanted];
else {
  const why = kvmProblem();
  if (why) log(`using TCG (software emulation): ${why}`);
  // `-accel kvm -accel tcg`: qemu itself falls back when KVM cannot start; the
  // second entry covers a KVM that starts but does not boot in time.
  plan = why ? ['tcg'] : ['auto', 'tcg'];
}
const accelArgs = { auto: ['-accel', 'kvm', '-accel', 'tcg'], kvm: ['-accel', 'kvm'], tcg: ['-accel', 'tcg'] };

// --- 4. boot ------------------------------------------------------------------------------------
const qmpSock = path.join(scratch, 'qmp.sock');
const append = [
  'console=ttyS0',
  'root=rootfs',
  'rootfstype=9p',
  // cache=loose: the guest caches the read-only root (vitest starts ~1.5x faster
  // under TCG); the host's files do not change during a run.
  'rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose',
  'ro',
  'init=/bin/sh',
  'panic=-1',
  'quiet',
  '--',
  initScript,
].join(' ');

function qemuArgs(accel) {
  return [
    ...['-nodefaults', '-no-user-config', '-machine', 'q35', ...accelArgs[accel]],
    ...['-cpu', cpuModel, '-smp', String(cpus), '-m', String(memMiB)],
    // No network card: the VM has loopback only.
    ...['-display', 'none', '-no-reboot', '-nic', 'none'],
    // Serial console on stdio; signal=off hands ^C to the guest in shell mode.
    ...['-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con'],
    ...['-qmp', `unix:${qmpSock},server=on,wait=off`],
    ...['-kernel', kernel, '-append', append],
    ...['-fsdev', 'local,id=root,path=/,security_model=none,readonly=on,multidevs=remap'],
    ...['-device', 'virtio-9p-pci,fsdev=root,mount_tag=rootfs'],
    ...['-fsdev', `local,id=results,path=${scratch},security_model=none`],
    ...['-device', 'virtio-9p-pci,fsdev=results,mount_tag=results'],
  ];
}

/** Calls onLine for every line of a stream, without the serial line's \r. */
function eachLine(stream, onLine) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    buf += chunk;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      onLine(buf.slice(0, i).replace(/\r+$/, ''));
      buf = buf.slice(i + 1);
    }
  });
  stream.on('end', () => {
    if (buf) onLine(buf.replace(/\r+$/, ''));
  });
}

/** Asks qemu which accelerator runs: with `-accel kvm -accel tcg` it falls back quietly. */
async function queryAccel(proc) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && proc.exitCode === null && proc.signalCode === null) {
    try {
      return await new Promise((resolve, reject) => {
        const sock = net.createConnection(qmpSock);
        let buf = '';
        sock.setEncoding('utf8');
        sock.on('error', reject);
        sock.on('close', () => reject(new Error('closed')));
        sock.on('data', (d) => {
          buf += d;
          for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
            const msg = JSON.parse(buf.slice(0, i));
            buf = buf.slice(i + 1);
            if (msg.QMP) sock.write('{"execute":"qmp_capabilities"}\n{"execute":"query-kvm","id":"kvm"}\n');
            else if (msg.id === 'kvm') {
              resolve(msg.return?.enabled ? 'kvm' : 'tcg');
              sock.destroy();
            }
          }
        });
      });
    } catch {
      await sleep(100);
    }
  }
  return 'unknown';
}

const tail = [];
const deadline = Date.now() + timeoutSec * 1000;
async function boot(accel) {
  for (const f of ['devices', 'exit-code', 'vitest.json', 'qmp.sock'])
    fs.rmSync(path.join(scratch, f), { force: true });
  const remaining = Math.round((deadline - Date.now()) / 1000);
  // The command in the VM gives up a minute early, so there is still a report.
  writeVmEnv(Math.max(remaining - 60, 30));
  const run = { accel: 'unknown', timedOut: false, stalled: false, tBoot: Date.now(), tInit: 0, tTests: 0 };
  log(`booting ${kernel} (${cpus} CPUs, ${memMiB} MiB, ${accelArgs[accel].join(' ')}, ${remaining}s left)`);
  const proc = spawn(qemuBin, qemuArgs(accel), {
    stdio: [shellMode ? 'inherit' : 'pipe', shellMode ? 'inherit' : 'pipe', 'pipe'],
  });
  qemu = proc;
  const exited = new Promise((resolve) => {
    proc.on('error', (e) => {
      console.error(`[kernel-suite] cannot start ${qemuBin}: ${e.message}`);
      resolve([null, null]);
    });
    proc.on('exit', (code, signal) => resolve([code, signal]));
  });
  if (!shellMode) {
    eachLine(proc.stdout, (line) => {
      if (!run.tInit && line.startsWith('dmx-vm: kernel ')) run.tInit = Date.now();
      if (!run.tTests && line.startsWith('dmx-vm: running: ')) run.tTests = Date.now();
      tail.push(line);
      if (tail.length > 40) tail.shift();
      process.stdout.write(`[vm] ${line}\n`);
    });
  }
  eachLine(proc.stderr, (line) => process.stderr.write(`[qemu] ${line}\n`));
  queryAccel(proc).then((a) => {
    run.accel = a;
    log(`accelerator: ${{ kvm: 'KVM', tcg: 'TCG (software emulation)' }[a] ?? a}`);
  });

  const stop = (why) => {
    console.error(`[kernel-suite] ${why}: killing qemu`);
    proc.kill('SIGTERM');
    setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
  };
  const timers = [];
  if (!shellMode) {
    timers.push(
      setTimeout(() => {
        run.timedOut = true;
        stop(`wall-clock limit of ${timeoutSec}s reached`);
      }, deadline - Date.now()),
      setTimeout(() => {
        if (run.tInit) return;
        run.stalled = true;
        stop(`no init after ${bootTimeoutSec}s`);
      }, bootTimeoutSec * 1000),
    );
  }
  [run.code, run.signal] = await exited;
  for (const t of timers) clearTimeout(t);
  run.tEnd = Date.now();
  qemu = null;
  return run;
}

let run;
for (const [i, accel] of plan.entries()) {
  run = await boot(accel);
  if (!run.stalled || i === plan.length - 1 || run.accel === 'tcg') break;
  log(`KVM started but the kernel did not reach init in ${bootTimeoutSec}s; retrying with TCG`);
}

// --- 5. verdict ----------------------------------------------------------------------------------
const problems = [];
const read = (f) => {
  try {
    return fs.readFileSync(path.join(scratch, f), 'utf8').trim();
  } catch {
    return null;
  }
};
const devices = read('devices');
const exitText = read('exit-code');
const vmExit = exitText === null ? null : Number(exitText);

console.log('');
const at = (t) => (t ? secs(t - run.tBoot) : '?');
log(
  `accelerator ${run.accel}: boot to init ${at(run.tInit)}, to tests ${at(run.tTests)}, qemu ${secs(run.tEnd - run.tBoot)}` +
    ` (kernel ready after ${secs(tKernel - t0)}, total ${secs(Date.now() - t0)})`,
);
if (run.timedOut) problems.push(`timed out after ${timeoutSec}s`);
else if (run.stalled) problems.push(`the kernel did not reach init within ${bootTimeoutSec}s`);
else if (run.code !== 0) problems.push(`qemu exited with ${run.code ?? run.signal}`);
if (devices === null) problems.push('the VM did not report its devices (did init run?)');
else if (devices !== 'ok') problems.push(`devices ${devices}`);
if (vmExit === null) problems.push('the VM wrote no exit code (kernel panic, or killed?)');
else if (vmExit === 124 || vmExit === 137) problems.push(`the command hit the in-VM time limit (exit ${vmExit})`);
else if (vmExit !== 0) problems.push(`the command in the VM exited with ${vmExit}`);
if (!customCmd && !shellMode) summarize();

if (env.DMX_VM_KEEP === '1') log(`results kept in ${scratch}`);
if (problems.length) {
  if (devices === null || vmExit === null) {
    console.error('[kernel-suite] last console lines:');
    for (const l of tail) console.error(`  | ${l}`);
  }
  for (const p of problems) console.error(`[kernel-suite] FAIL: ${p}`);
  process.exit(1);
}
log(`OK in ${secs(Date.now() - t0)}`);
process.exit(0);

function summarize() {
  const raw = read('vitest.json');
  if (raw === null) {
    problems.push('no vitest.json report');
    return;
  }
  let report;
  try {
    report = JSON.parse(raw);
  } catch (e) {
    problems.push(`vitest.json does not parse: ${e.message}`);
    return;
  }
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  log(
    `tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped` +
      ` (${report.numTotalTests} in ${report.numTotalTestSuites} suites)`,
  );
  const failures = [];
  for (const file of report.testResults ?? []) {
    const rel = path.relative(repo, file.name);
    const failed = (file.assertionResults ?? []).filter((a) => a.status === 'failed');
    for (const a of failed) failures.push(`${rel} > ${a.fullName ?? a.title}`);
    // A file that failed to load or crashed in a hook has no failed test of its own.
    if (file.status === 'failed' && failed.length === 0)
      failures.push(`${rel}: ${(file.message || 'failed').split('\n')[0]}`);
  }
  for (const f of failures) log(`  FAILED ${f}`);
  if (report.numTotalTests === 0) problems.push('zero tests ran');
  else if (report.numPassedTests === 0 && report.numFailedTests === 0) problems.push('every test was skipped');
  if (failures.length || report.numFailedTests > 0) {
    problems.push(`${Math.max(report.numFailedTests, failures.length)} test(s) failed`);
  }
}
