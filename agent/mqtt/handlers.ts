/**
 * What each remote command does, on the controller. Arguments arrive
 * already validated against their schemas (agent/mqtt/command-schemas.ts):
 * the handlers only check what a schema cannot know, such as whether a
 * stream exists, and fail with a CommandError whose code the fleet can act on.
 */
import { redactConfig } from '../config/load.js';
import type { LogLevel } from '../config/types.js';
import type { Controller } from '../controller.js';
import type { StreamSupervisor } from '../streams/supervisor.js';
import { CommandError, type CommandHandler } from './command-router.js';

export interface HandlerContext {
  controller: Controller;
  version: string;
  bootTime: string;
  /** The capability probe (kept from start-up; `probe` runs it again). */
  probe: () => unknown;
  setLogLevel: (level: LogLevel) => void;
  setTelemetryInterval: (ms: number) => void;
}

function streamOf(controller: Controller, id: unknown): StreamSupervisor {
  const stream = typeof id === 'string' ? controller.stream(id) : undefined;
  if (!stream) throw new CommandError('unknown-stream', `no stream "${String(id)}" is configured`);
  return stream;
}

function streamSummary(s: StreamSupervisor) {
  return { ...s.status(), health: s.health };
}

/** Reads a dotted key ("mqtt.url", "streams") out of the redacted configuration. */
function configAt(config: unknown, key: string): unknown {
  let node: unknown = config;
  for (const part of key.split('.')) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) {
      throw new CommandError('unknown-key', `the configuration has no key "${key}"`);
    }
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

export function commandHandlers(ctx: HandlerContext): Record<string, CommandHandler> {
  const { controller } = ctx;
  return {
    status: () => ({
      deviceId: controller.agentConfig.deviceId,
      version: ctx.version,
      bootTime: ctx.bootTime,
      health: controller.health,
      streams: controller.streams().map((s) => s.status()),
    }),

    streams: () => controller.streams().map(streamSummary),

    'pool.resize': (args) => {
      const stream = streamOf(controller, args.stream);
      const result = stream.resize(
        {
          ...(typeof args.count === 'number' ? { count: args.count } : {}),
          ...(typeof args.size === 'number' ? { size: args.size } : {}),
        },
        'remote command',
      );
      if (result.outcome === 'applied') return result;
      throw new CommandError(result.outcome === 'refused' ? 'resize-refused' : 'resize-rolled-back', result.reason);
    },

    'stream.restart': (args) => {
      const stream = streamOf(controller, args.stream);
      stream.stop('remote restart');
      stream.start();
      return stream.status();
    },

    'stream.stop': (args) => {
      const stream = streamOf(controller, args.stream);
      stream.stop('remote stop');
      return stream.status();
    },

    'stream.start': (args) => {
      const stream = streamOf(controller, args.stream);
      stream.start();
      return stream.status();
    },

    'config.get': (args) => {
      const config = redactConfig(controller.agentConfig);
      return typeof args.key === 'string' ? { key: args.key, value: configAt(config, args.key) } : config;
    },

    probe: () => ctx.probe(),

    'diag.dump': (args) => {
      const streams = typeof args.stream === 'string' ? [streamOf(controller, args.stream)] : controller.streams();
      return { health: controller.health, streams: streams.map((s) => s.diagnostics()) };
    },

    'log.level': (args) => {
      const level = args.level as LogLevel;
      ctx.setLogLevel(level);
      return { level };
    },

    'telemetry.interval': (args) => {
      const ms = args.ms as number;
      ctx.setTelemetryInterval(ms);
      return { ms };
    },
  };
}
