#!/usr/bin/env node
/**
 * The fleet scale run: `node test/fleet/scale-run.mjs --devices 10000` from the repository root
 * (options: see test/fleet/scale.ts). Each device and the broker hold one socket per device, so the
 * open-file limit is raised first when it is too low (as root, through prlimit; otherwise run
 * `ulimit -n <N>` before). The TypeScript (the simulator and the agent's MQTT layer it uses) is
 * compiled by the repository's tsc into a temporary directory, never into dist/.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const args = process.argv.slice(2);
const devicesAt = args.indexOf('--devices');
const devices = Number(devicesAt >= 0 ? args[devicesAt + 1] : 500);
// One socket per device in this process and in the broker, plus room for everything else.
const needed = devices + 2048;

function limits() {
  const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const value = (text) => (text === 'unlimited' ? Number.POSITIVE_INFINITY : Number(text));
  return { soft: value(line?.[1] ?? '1024'), hard: value(line?.[2] ?? '1024') };
}

const { soft, hard } = limits();
if (soft < needed) {
  if (process.env.DMX_FLEET_RAISED === '1') {
    console.error(`[fleet] the open file limit is still ${soft}, below ${needed}`);
    process.exit(2);
  }
  const canRaiseHard = process.getuid?.() === 0;
  if (!canRaiseHard && hard < needed) {
    console.error(
      `[fleet] open file limit ${soft} (hard ${hard}) is below ${needed}: run 'ulimit -n ${needed}' as root first`,
    );
    process.exit(2);
  }
  const newHard = Math.max(needed, Number.isFinite(hard) ? hard : needed);
  console.log(`[fleet] raising the open file limit from ${soft} to ${needed} (prlimit)`);
  const child = spawnSync(
    'prlimit',
    [`--nofile=${needed}:${newHard}`, '--', process.execPath, fileURLToPath(import.meta.url), ...args],
    { stdio: 'inherit', cwd: root, env: { ...process.env, DMX_FLEET_RAISED: '1' } },
  );
  if (child.error) {
    console.error(`[fleet] prlimit failed (${child.error.message}): run 'ulimit -n ${needed}' first`);
    process.exit(2);
  }
  process.exit(child.status ?? 1);
}

const build = mkdtempSync(join(tmpdir(), 'dmx-fleet-'));
try {
  const tsc = spawnSync(
    process.execPath,
    [
      join(root, 'node_modules/typescript/bin/tsc'),
      ...['--outDir', build, '--rootDir', root, '--module', 'nodenext', '--moduleResolution', 'nodenext'],
      ...['--target', 'es2022', '--strict', '--skipLibCheck', '--types', 'node', '--noUncheckedIndexedAccess'],
      join(root, 'test/fleet/scale.ts'),
    ],
    { stdio: 'inherit', cwd: root },
  );
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);
  // The compiled modules find the repository's packages, its default configuration and the payload
  // schemas where they look for them: beside a package.json above them.
  symlinkSync(join(root, 'node_modules'), join(build, 'node_modules'), 'dir');
  symlinkSync(join(root, 'config'), join(build, 'config'), 'dir');
  symlinkSync(join(root, 'package.json'), join(build, 'package.json'));
  cpSync(join(root, 'agent/mqtt/schemas'), join(build, 'agent/mqtt/schemas'), { recursive: true });
  process.chdir(root);
  const { main } = await import(pathToFileURL(join(build, 'test/fleet/scale.js')).href);
  process.exitCode = await main(args);
} finally {
  rmSync(build, { recursive: true, force: true });
}
