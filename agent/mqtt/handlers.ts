/**
 * What each remote command does, on the controller. Arguments arrive
 * already validated against their schemas (agent/mqtt/command-schemas.ts):
 * the handlers only check what a schema cannot know, such as whether a
 * stream exists, and fail with a CommandError whose code the fleet can act on.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError, loadConfig, readOverrideFile, redactConfig } from '../config/load.js';
import type { AgentConfig, LogLevel } from '../config/types.js';
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
  /** The --config file the agent runs with (undefined: DMX_AGENT_CONFIG or none): config.set validates against it. */
  configFile: string | undefined;
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

/**
 * Sets a dotted key ("health.intervalMs", "streams.hd.pool.count") in the
 * override document. Streams are a list: the first change to one copies the
 * running streams in, and a segment after "streams" is an index or a stream id.
 */
function setDotted(target: Record<string, unknown>, key: string, value: unknown, running: AgentConfig): void {
  const parts = key.split('.');
  if (parts[0] === 'streams' && parts.length > 1 && !Array.isArray(target.streams)) {
    target.streams = structuredClone(running.streams);
  }
  let node: unknown = target;
  for (let i = 0; i < parts.length - 1; i++) {
    const part = parts[i] as string;
    let next: unknown;
    if (Array.isArray(node)) {
      const index = /^\d+$/.test(part) ? Number(part) : node.findIndex((s) => (s as { id?: unknown })?.id === part);
      if (index < 0 || index >= node.length) throw new CommandError('unknown-key', `"${key}": no element "${part}"`);
      next = node[index];
    } else {
      const record = node as Record<string, unknown>;
      if (record[part] === undefined || record[part] === null) record[part] = {};
      next = record[part];
    }
    if (next === null || typeof next !== 'object')
      throw new CommandError('unknown-key', `"${key}": "${part}" is not a section`);
    node = next;
  }
  const last = parts[parts.length - 1] as string;
  if (Array.isArray(node)) {
    if (!/^\d+$/.test(last)) throw new CommandError('unknown-key', `"${key}": "${last}" is not an index`);
    node[Number(last)] = value;
  } else {
    (node as Record<string, unknown>)[last] = value;
  }
}

/** Replaces `path` in one step (write, fsync, rename): a power cut leaves the old file or the new one, never half. */
function writeFileAtomic(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  const fd = openSync(temporary, 'w', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
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

    'config.set': (args) => {
      const path = controller.agentConfig.overrideFile;
      if (!path) {
        throw new CommandError('config-set-disabled', 'overrideFile is not set: this agent takes no remote changes');
      }
      const values = args.values as Record<string, unknown>;
      let document: Record<string, unknown>;
      let next: AgentConfig;
      try {
        document = readOverrideFile(path);
        for (const [key, value] of Object.entries(values)) setDotted(document, key, value, controller.agentConfig);
        // The whole configuration, as the next start would load it, must be valid before anything is written.
        next = loadConfig({ ...(ctx.configFile === undefined ? {} : { file: ctx.configFile }), overrides: document });
      } catch (err) {
        if (err instanceof ConfigError) {
          throw new CommandError('invalid-config', err.problems.map((p) => `${p.key}: ${p.message}`).join('; '));
        }
        throw err;
      }
      writeFileAtomic(path, `${JSON.stringify(document, null, 2)}\n`);
      const { applied, needsRestart } = controller.reload(next);
      return { file: path, keys: Object.keys(values), applied, needsRestart };
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
