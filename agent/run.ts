/**
 * `dmx-agent run`: the long-running process around the controller. Wires
 * the logger and the terminal status, and the signals: SIGTERM/SIGINT stop
 * everything and exit 0 within supervision.shutdownTimeoutMs (1 past it),
 * SIGHUP reloads the configuration where it can. An exception nobody caught
 * is logged and ends the process with 1 so systemd restarts it clean.
 */
import { loadConfig } from './config/load.js';
import type { AgentConfig } from './config/types.js';
import { Controller } from './controller.js';
import { createLogger } from './log/logger.js';
import { formatStreamLine, TerminalStatus } from './log/status-line.js';

export interface RunOptions {
  /** The --config file, read again on SIGHUP; undefined: DMX_AGENT_CONFIG or the defaults. */
  configFile: string | undefined;
}

export function runAgent(config: AgentConfig, options: RunOptions): Promise<number> {
  const terminal = new TerminalStatus({
    stream: process.stdout,
    enabled: config.statusLine === 'always' || (config.statusLine === 'auto' && process.stdout.isTTY === true),
  });
  const logger = createLogger({ level: config.log.level, pretty: config.log.pretty, lineSink: terminal });
  const controller = new Controller({
    config,
    logger,
    ...(options.configFile !== undefined ? { configFile: options.configFile } : {}),
    onStatusLines: (lines) => {
      const streamWidth = Math.max(5, ...lines.map((l) => l.status.stream.length));
      terminal.update(
        lines.map(({ status, health }) =>
          formatStreamLine(
            {
              stream: status.stream,
              state: status.state,
              health,
              // A stream that is not up says why instead of its numbers.
              sink: health ? `${status.sink.type}${status.sink.attached ? '' : ' (detached)'}` : status.reason,
            },
            { colour: terminal.colour, columns: terminal.columns, streamWidth },
          ),
        ),
      );
    },
  });

  return new Promise<number>((resolve) => {
    let exiting = false;
    const finish = (code: number) => {
      terminal.stop();
      logger.flush();
      resolve(code);
    };
    const shutdown = (signal: string) => {
      if (exiting) return;
      exiting = true;
      // A reload racing the stop would reopen streams already closed; without any handler, though,
      // SIGHUP would kill the process mid-shutdown.
      process.off('SIGHUP', reload);
      process.on('SIGHUP', ignoreHup);
      logger.info({ signal }, 'shutting down');
      // Each native close is short (every fd is O_NONBLOCK; a pump joins within one 200 ms tick), and the
      // controller yields between streams so this bound can fire; a kernel that hangs in close() is left to
      // systemd's TimeoutStopSec.
      const bound = setTimeout(() => {
        logger.error({ timeoutMs: config.supervision.shutdownTimeoutMs }, 'shutdown did not finish in time');
        finish(1);
        process.exit(1);
      }, config.supervision.shutdownTimeoutMs);
      controller
        .stopGracefully()
        .catch((err: unknown) => logger.error({ err }, 'shutdown failed'))
        .finally(() => {
          clearTimeout(bound);
          removeHandlers();
          finish(0);
        });
    };
    const reload = () => {
      logger.info({ file: options.configFile }, 'SIGHUP: reloading the configuration');
      try {
        controller.reload(loadConfig(options.configFile === undefined ? {} : { file: options.configFile }));
      } catch (err) {
        // A bad file on disk must not take down a running receiver.
        logger.error({ err }, 'the new configuration is not valid; keeping the running one');
      }
    };
    const ignoreHup = () => logger.warn('SIGHUP ignored: shutting down');
    const onTerm = () => shutdown('SIGTERM');
    const onInt = () => shutdown('SIGINT');
    const onUncaught = (err: unknown) => {
      logger.fatal({ err }, 'uncaught exception');
      try {
        controller.stop();
      } finally {
        finish(1);
        process.exit(1);
      }
    };
    const onRejection = (reason: unknown) => logger.error({ err: reason }, 'unhandled promise rejection');
    const removeHandlers = () => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      process.off('SIGHUP', reload);
      process.off('SIGHUP', ignoreHup);
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onRejection);
    };
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGHUP', reload);
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onRejection);
    try {
      controller.start();
    } catch (err) {
      logger.fatal({ err }, 'start-up failed');
      controller.stop();
      removeHandlers();
      finish(1);
    }
  });
}
