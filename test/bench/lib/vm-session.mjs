/**
 * The VM part of rows 1 and 2: one boot of the real-kernel VM
 * (test/kernel/run-kernel-suite.mjs, vidtv + vim2m, the kernel image built
 * or reused by test/kernel/build-kernel.sh) that runs vm-data-path.mjs and
 * hands its samples back. Both rows read the same session: the first to ask
 * starts it, the other awaits the same promise.
 *
 * The samples come back through the runner's results share: with
 * DMX_VM_KEEP=1 it stays on the host, and with TMPDIR pointing at a
 * directory of ours it is the one dmx-kernel-* directory in there.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTools } from './data-path.mjs';
import { REPO_ROOT, tempDir } from './env.mjs';

const RUNNER = join(REPO_ROOT, 'test', 'kernel', 'run-kernel-suite.mjs');
const DRIVER = 'test/bench/lib/vm-data-path.mjs';

/** What rows 1 and 2 ask the VM for; the same for both, so one session serves them. */
export function vmOptions({ smoke = false, rounds } = {}) {
  return smoke
    ? { rounds: 1, warmupMs: 1000, measureMs: 3000 }
    : { rounds: rounds ?? 5, warmupMs: 1500, measureMs: 8000 };
}

let session = null;

/** The VM's samples ({ kernel, cpus, rounds, samples: { pump, 'c-mmap', 'c-read' }, accel }). */
export function vmDataPath(options) {
  session ??= runSession(options);
  return session;
}

async function runSession(options) {
  // The VM cannot compile: the C loop is built on the host, where the VM sees it.
  buildTools();
  const { dir, cleanup } = tempDir('vm');
  try {
    process.stderr.write('  booting the real-kernel VM (vidtv + vim2m) for rows 1 and 2...\n');
    const { code, output } = await runVm(dir, options);
    const accel = /accelerator: (.+)$/m.exec(output)?.[1] ?? 'unknown';
    let document = null;
    for (const entry of readdirSync(dir)) {
      if (!entry.startsWith('dmx-kernel-')) continue;
      try {
        document = JSON.parse(readFileSync(join(dir, entry, 'data-path.json'), 'utf8'));
      } catch {
        // no samples: the run failed, said below
      }
    }
    if (code !== 0 || document === null) {
      const tail = output.trim().split('\n').slice(-30).join('\n');
      throw new Error(`the VM run failed (exit ${code}${document === null ? ', no samples' : ''}):\n${tail}`);
    }
    return { ...document, accel };
  } finally {
    cleanup();
  }
}

function runVm(dir, options) {
  const command = `exec "$DMX_VM_NODE" ${DRIVER} '${JSON.stringify(options)}'`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUNNER], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        TMPDIR: dir,
        DMX_VM_CMD: command,
        DMX_VM_KEEP: '1',
        // `npm run bench` built dist/ already; nothing may rebuild it under a running benchmark.
        DMX_VM_PREBUILT: '1',
        // One vCPU unless told otherwise: under software emulation a second vCPU thread competes with the first
        // for the host's cores, and the guest counts the time its vCPU was off the host as run time (seen: the
        // same loop at 3 to 5 times its one-vCPU figure, and twice as scattered).
        DMX_VM_CPUS: process.env.DMX_VM_CPUS ?? '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const collect = (chunk) => {
      output += chunk.toString();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? signal, output }));
  });
}
