#!/usr/bin/env node
/**
 * The dmx-agent command. This first cut offers the capability probe; the
 * long-running `run` command arrives with the agent (stream supervision).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Simulation } from './native/index.js';
import { probe } from './probe.js';

const USAGE = `Usage: dmx-agent <command> [options]

Commands:
  probe          print what the media path can use here (JSON); exit 0 when usable, 1 when not

Options:
  --sim          probe a simulated receiver instead of the kernel
  -h, --help     show this help
  -v, --version  print the version
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const OPTIONS = {
  sim: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
}

function main(argv: string[]): number {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    process.stderr.write(`dmx-agent: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const command = positionals[0] ?? 'probe';
  if (command !== 'probe') {
    process.stderr.write(`dmx-agent: unknown command '${command}'\n\n${USAGE}`);
    return 2;
  }
  const simulation = values.sim ? new Simulation() : undefined;
  try {
    const result = probe(simulation ? { simulation } : {});
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return result.mediaPathUsable ? 0 : 1;
  } finally {
    simulation?.close();
  }
}

process.exitCode = main(process.argv.slice(2));
