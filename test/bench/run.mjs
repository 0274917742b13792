/**
 * `npm run bench`: runs every benchmark of issue 7 in turn, prints the table
 * and writes the figures to build/bench/latest.json. Needs dist/ (the npm
 * script builds it first) and mosquitto; rows 1 and 2 also valgrind, a C
 * compiler and the real-kernel VM (qemu). Nothing here fails on a figure; the
 * exit code is non-zero only when a benchmark could not run at all.
 *
 *   node test/bench/run.mjs [--smoke] [--only 3,4] [--out FILE]
 */

import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './lib/env.mjs';
import { formatReadings, formatTable, writeJson } from './lib/harness.mjs';

/**
 * Every row, in the order. Rows 1 and 2 run on the host and in the
 * real-kernel VM (one boot for both, lib/vm-session.mjs); they need valgrind,
 * a C compiler and qemu.
 */
export const BENCHMARKS = [
  { id: 1, title: 'Data-path cost per buffer', load: () => import('./data-path.mjs') },
  { id: 2, title: 'Zero copy against read() + memcpy', load: () => import('./zero-copy.mjs') },
  { id: 3, title: 'Event-loop independence', load: () => import('./event-loop.mjs') },
  { id: 4, title: 'Footprint', load: () => import('./footprint.mjs') },
  { id: 5, title: 'Start-up', load: () => import('./startup.mjs') },
  { id: 6, title: 'Commands', load: () => import('./commands.mjs') },
  { id: 7, title: 'Telemetry cost', load: () => import('./telemetry.mjs') },
  { id: 8, title: 'Pool sizing', load: () => import('./pool-sizing.mjs') },
];

function argument(args, name) {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}

export function machine() {
  let model = cpus()[0]?.model ?? 'unknown';
  try {
    model = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? model;
  } catch {
    // not Linux: os.cpus() said it
  }
  return {
    nproc: cpus().length,
    cpu: model.trim(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

async function main(args) {
  const smoke = args.includes('--smoke');
  const only = argument(args, '--only')?.split(',').map(Number);
  const out = argument(args, '--out') ?? join(REPO_ROOT, 'build', 'bench', smoke ? 'smoke.json' : 'latest.json');
  const started = Date.now();
  const results = [];
  let failed = false;
  for (const bench of BENCHMARKS) {
    if (only && !only.includes(bench.id)) continue;
    process.stderr.write(`bench ${bench.id}: ${bench.title}...\n`);
    const t0 = Date.now();
    try {
      const { run } = await bench.load();
      const result = await run({ smoke, rounds: smoke ? 1 : undefined });
      results.push({ ...result, durationMs: Date.now() - t0 });
    } catch (err) {
      failed = true;
      process.stderr.write(`bench ${bench.id} could not run: ${err instanceof Error ? err.stack : err}\n`);
      results.push({
        id: bench.id,
        title: bench.title,
        rounds: 0,
        baseline: '',
        metrics: [],
        reading: '',
        notes: [`could not run: ${err instanceof Error ? err.message : err}`],
      });
    }
  }
  const document = {
    date: new Date().toISOString(),
    machine: machine(),
    smoke,
    durationMs: Date.now() - started,
    results,
  };
  writeJson(out, document);
  const { nproc, cpu, node } = document.machine;
  process.stdout.write(
    `\n${document.date.slice(0, 10)} on ${nproc} x ${cpu}, Node ${node}${smoke ? ' (smoke: one short round each)' : ''}\n\n` +
      `${formatTable(results)}\n\n${formatReadings(results)}\n\nJSON: ${out}\n`,
  );
  return failed ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
  // The native addon and MQTT clients are closed by now; nothing should keep the process, but a stray handle must not.
  setTimeout(() => process.exit(), 1000).unref();
}
