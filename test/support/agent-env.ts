/**
 * An agent configured against the simulated receiver, for integration tests:
 * a JSON config file written to a temporary folder and loaded by the real
 * loader (so the tests exercise validation too), and a controller whose
 * logs are collected in memory.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { loadConfig } from '../../agent/config/load.js';
import type { AgentConfig } from '../../agent/config/types.js';
import { Controller } from '../../agent/controller.js';
import type { ErrnoEvent } from '../../agent/diagnosis/types.js';
import type { AgentEvents } from '../../agent/event-bus.js';
import type { StreamStateChange } from '../../agent/streams/types.js';
import { backend, ES_PID, SIM_CONFIG, TUNING } from './media-env.js';

/** vim2m's 64x64 RGB24 OUTPUT format: sizeimage 12288, so the pool buffer is 65 x 188 = 12220 bytes. */
export const DECODER_FORMAT = { fourcc: 'RGB3', width: 64, height: 64 } as const;

export function streamJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 'main',
    adapter: 0,
    source: 'demux',
    // vidtv's audio ES (about 460 kbit/s under qemu); the simulation carries one on the same PID.
    filter: { pids: [ES_PID], output: 'tsdemux-tap' },
    tuning: TUNING,
    bitrate: 500_000,
    pool: { count: 6 },
    sink: { type: 'decoder', decoder: 'vim2m', format: DECODER_FORMAT },
    ...overrides,
  };
}

/**
 * A stream whose pool does not fit the decoder: 96 TS packets per buffer (18048 bytes) against
 * vim2m's 12288-byte sizeimage for 64x64 RGB24, so every import is refused with EINVAL
 * (import-bytesused-above-sizeimage). Run it with MISFIT_SUPERVISION, or the agent refuses the
 * pool before any ioctl.
 */
export function misfitStreamJson(id = 'misfit'): Record<string, unknown> {
  return streamJson({ id, pool: { count: 4, size: 96 * 188 } });
}

/** Supervision that lets a misfit pool reach the driver (preventKnownBad off), retrying every few seconds. */
export const MISFIT_SUPERVISION = {
  backoffInitialMs: 500,
  backoffMaxMs: 5000,
  deviceWaitMs: 100,
  decoderRetryMs: 500,
  preventKnownBad: false,
} as const;

export function writeConfig(json: Record<string, unknown>): { file: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'dmx-agent-test-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(json, null, 2));
  return { file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A configuration for the backend under test: the simulation on the host, the kernel in the VM. */
export function simConfigJson(streams: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}) {
  return {
    backend,
    deviceId: 'test-stb',
    log: { level: 'debug', pretty: 'never' },
    health: { intervalMs: 200 },
    supervision: { backoffInitialMs: 100, backoffMaxMs: 1000, deviceWaitMs: 100, decoderRetryMs: 100 },
    statusLine: 'never',
    // No broker unless a test brings one (test/mqtt/ starts a real mosquitto).
    mqtt: { enabled: false },
    sim: SIM_CONFIG,
    streams,
    ...extra,
  };
}

export function loadSimConfig(streams: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}) {
  const written = writeConfig(simConfigJson(streams, extra));
  try {
    return loadConfig({ file: written.file, env: {} });
  } finally {
    written.cleanup();
  }
}

export interface AgentHarness {
  controller: Controller;
  config: AgentConfig;
  logs: Array<Record<string, unknown>>;
  states: StreamStateChange[];
  errnoEvents: ErrnoEvent[];
  notes: AgentEvents['streamNote'][0][];
  logger: Logger;
}

export function startAgent(config: AgentConfig, options: { configFile?: string } = {}): AgentHarness {
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(line: string) {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  const controller = new Controller({ config, logger, env: {}, ...options });
  const harness: AgentHarness = { controller, config, logs, states: [], errnoEvents: [], notes: [], logger };
  const owner = {};
  controller.bus.on('streamState', owner, (c) => harness.states.push(c));
  controller.bus.on('errnoEvent', owner, (e) => harness.errnoEvents.push(e));
  controller.bus.on('streamNote', owner, (n) => harness.notes.push(n));
  controller.start();
  return harness;
}
