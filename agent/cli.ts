#!/usr/bin/env node
/**
 * The dmx-agent command: `run` (the default) keeps the configured streams
 * alive until SIGTERM; `probe`, `check-config` and `print-config` answer and
 * exit. Exit statuses: 0 ok, 1 failure (probe: media path not usable), 2
 * usage, 78 (EX_CONFIG) bad configuration, so systemd can refuse to restart
 * a receiver whose config cannot work (RestartPreventExitStatus=78).
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, redactConfig } from './config/load.js';
import type { AgentConfig } from './config/types.js';
import { Simulation } from './native/index.js';
import { probe } from './probe.js';
import { runAgent } from './run.js';
import { agentVersion } from './version.js';

export const EXIT = { ok: 0, failure: 1, usage: 2, config: 78 } as const;

const USAGE = `Usage: dmx-agent [command] [options]

Commands:
  run            keep the configured streams alive until SIGTERM (the default)
  probe          print what the media path can use here (JSON); exit 0 when usable, 1 when not
  check-config   validate the configuration; exit 78 naming every problem by its key
  print-config   print the effective configuration (secrets redacted)

Options:
  -c, --config FILE  configuration file (JSON) over the defaults; also DMX_AGENT_CONFIG
  --sim              probe: a simulated receiver instead of the kernel
  -h, --help         show this help
  -v, --version      print the version

Environment: DMX_AGENT_BACKEND (kernel|sim), DMX_AGENT_DEVICE_ID, DMX_AGENT_MQTT_URL,
DMX_AGENT_LOG_LEVEL, ... (README: Configuration).
`;

const COMMANDS = ['run', 'probe', 'check-config', 'print-config'] as const;
type Command = (typeof COMMANDS)[number];

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  sim: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
}

function isCommand(value: string): value is Command {
  return (COMMANDS as readonly string[]).includes(value);
}

/** Loads the configuration or prints every problem; null means "exit with EX_CONFIG". */
function configOrReport(file: string | undefined): AgentConfig | null {
  try {
    // undefined (no --config) lets the loader take DMX_AGENT_CONFIG.
    return loadConfig(file === undefined ? {} : { file });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`dmx-agent: the configuration is not valid:\n`);
      for (const p of err.problems) process.stderr.write(`  ${p.key}: ${p.message}\n`);
      return null;
    }
    process.stderr.write(`dmx-agent: ${(err as Error).message}\n`);
    return null;
  }
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    process.stderr.write(`dmx-agent: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (values.version) {
    process.stdout.write(`${agentVersion()}\n`);
    return EXIT.ok;
  }
  const command = positionals[0] ?? 'run';
  if (!isCommand(command) || positionals.length > 1) {
    process.stderr.write(`dmx-agent: unknown command '${positionals.join(' ')}'\n\n${USAGE}`);
    return EXIT.usage;
  }

  switch (command) {
    case 'probe': {
      const simulation = values.sim ? new Simulation() : undefined;
      try {
        const result = probe(simulation ? { simulation } : {});
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return result.mediaPathUsable ? EXIT.ok : EXIT.failure;
      } finally {
        simulation?.close();
      }
    }
    case 'check-config': {
      const config = configOrReport(values.config);
      if (!config) return EXIT.config;
      process.stdout.write(
        `configuration valid: backend ${config.backend}, ${config.streams.length} stream(s)` +
          `${config.streams.length ? `: ${config.streams.map((s) => s.id).join(', ')}` : ''}\n`,
      );
      return EXIT.ok;
    }
    case 'print-config': {
      const config = configOrReport(values.config);
      if (!config) return EXIT.config;
      process.stdout.write(`${JSON.stringify(redactConfig(config), null, 2)}\n`);
      return EXIT.ok;
    }
    case 'run': {
      const config = configOrReport(values.config);
      if (!config) return EXIT.config;
      return runAgent(config, { configFile: values.config });
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`dmx-agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = EXIT.failure;
  },
);
