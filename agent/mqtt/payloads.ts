/**
 * The payloads of the MQTT contract (agent/mqtt/asyncapi.yaml), as TypeScript
 * types, and validators compiled from the JSON Schemas in agent/mqtt/schemas/:
 * the very files the AsyncAPI document references, so what the agent checks
 * and what the contract documents cannot drift apart. test/mqtt/contract.test.ts
 * holds the types and the schemas together.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AnySchemaObject, ValidateFunction } from 'ajv';
import type { ErrnoEvent } from '../diagnosis/types.js';
import type { AgentHealth, HealthLevel, StreamHealth, Watermark } from '../health/types.js';
import type { ProbeResult } from '../probe.js';
import type { StreamState, StreamStateChange, StreamStatus } from '../streams/types.js';
import { contractAjv } from './contract-ajv.js';

// ---------------------------------------------------------------- status and capabilities

/** Retained on `status`. */
export interface StatusPayload {
  state: 'online' | 'offline';
  version?: string;
  /** When the agent process started, ISO 8601. */
  bootTime?: string;
  /** SHA-256 hex of the effective configuration. */
  configDigest?: string;
  deviceId?: string;
}

/** The Last Will, byte for byte (also what a clean shutdown publishes). */
export const OFFLINE_STATUS_JSON = '{"state":"offline"}';

/** Retained on `capabilities`: the probe as it is. */
export type CapabilitiesPayload = ProbeResult;

// ---------------------------------------------------------------- telemetry

export interface TelemetryAgent {
  uptimeSeconds: number;
  rssBytes: number;
  heapUsedBytes: number;
  eventLoopLagMs: { mean: number; p99: number; max: number };
  /** -1 when /proc cannot tell. */
  openFds: number;
}

/** A stream's health fields: all present together, or none (field docs: telemetry.schema.json). */
export interface TelemetryStreamHealth {
  level: HealthLevel;
  watermark: Watermark;
  /** Only when level is not ok. */
  reasons?: string[];
  windowMs: number;
  pool: [count: number, size: number];
  ledger: [kernel: number, agent: number, decoder: number, consumer: number];
  /** bits/s in the window. */
  bps: number;
  /** Buffers/s in the window. */
  bufps: number;
  fill: number | null;
  ccGaps: number;
  ccGapsTotal: number;
  zeroQueuedMs: number;
  lossBytes: number;
  sinkP99Ms: number | null;
  /** Failed data-path ioctls, in total. */
  errors: number;
  exportedFds: number;
  /** Buffers stuck in the sink. */
  stuck: number;
}

export type TelemetryStream =
  | { state: StreamState; pool?: [count: number, size: number] }
  | ({ state: StreamState } & TelemetryStreamHealth);

/** On `telemetry`, QoS 0. */
export interface Telemetry {
  /** Epoch ms. */
  t: number;
  agent: TelemetryAgent;
  /** By stream id. */
  streams: Record<string, TelemetryStream>;
}

// ---------------------------------------------------------------- events

export { describeValidationErrors } from './contract-ajv.js';
export { EVENT_KINDS, type EventKind } from './event-kinds.js';

export interface WatermarkEventPayload {
  stream: string;
  /** null on the stream's first report. */
  from: Watermark | null;
  to: Watermark;
  level: HealthLevel;
  reasons: string[];
  atMs: number;
}

export interface LedgerEventPayload {
  stream: string;
  anomalies: StreamHealth['anomalies'];
  atMs: number;
}

export interface CommandRejectedEventPayload {
  /** The name from the topic, as received. */
  name: string;
  id: string | null;
  code: string;
  message: string;
  atMs: number;
}

export interface QueueOverflowEventPayload {
  dropped: number;
  droppedBytes: number;
  /** When the first of them was dropped, epoch ms. */
  since: number;
}

/** What goes on `events/<kind>`, by kind. */
export interface EventPayloads {
  errno: ErrnoEvent;
  watermark: WatermarkEventPayload;
  'stream-state': StreamStateChange;
  ledger: LedgerEventPayload;
  'command-rejected': CommandRejectedEventPayload;
  'queue-overflow': QueueOverflowEventPayload;
}

// ---------------------------------------------------------------- commands

/** On `cmd/<name>`. The args are checked afterwards against the command's own schema. */
export interface CommandRequest {
  id: string;
  args?: Record<string, unknown>;
  /** Epoch ms. */
  exp?: number;
  /** Epoch ms. */
  iat?: number;
  /** Ed25519, base64. */
  sig?: string;
}

/** On the MQTT 5 response topic, or `response/<name>`. */
export type CommandResponse =
  | { id: string; status: 'ok'; data: unknown }
  | { id: string | null; status: 'error'; error: { code: string; message: string } };

// ---------------------------------------------------------------- schemas and validators

export interface Payloads extends EventPayloads {
  status: StatusPayload;
  capabilities: CapabilitiesPayload;
  telemetry: Telemetry;
  command: CommandRequest;
  response: CommandResponse;
}

export type PayloadName = keyof Payloads;

/** Each payload's schema file in agent/mqtt/schemas/. */
export const PAYLOAD_SCHEMA_FILES: Readonly<Record<PayloadName, string>> = {
  status: 'status.schema.json',
  capabilities: 'capabilities.schema.json',
  telemetry: 'telemetry.schema.json',
  errno: 'event-errno.schema.json',
  watermark: 'event-watermark.schema.json',
  'stream-state': 'event-stream-state.schema.json',
  ledger: 'event-ledger.schema.json',
  'command-rejected': 'event-command-rejected.schema.json',
  'queue-overflow': 'event-queue-overflow.schema.json',
  command: 'command-request.schema.json',
  response: 'command-response.schema.json',
};

export const PAYLOAD_NAMES = Object.keys(PAYLOAD_SCHEMA_FILES) as PayloadName[];

/**
 * agent/mqtt/schemas/ next to this module when it runs from the sources; from
 * dist/agent/mqtt/ (tsc copies no JSON) the repository's agent/mqtt/schemas/.
 */
export function payloadSchemaDirectory(): string {
  const candidates = [new URL('./schemas/', import.meta.url), new URL('../../../agent/mqtt/schemas/', import.meta.url)];
  for (const candidate of candidates) {
    const path = fileURLToPath(candidate);
    if (existsSync(`${path}${PAYLOAD_SCHEMA_FILES.status}`)) return path;
  }
  throw new Error(
    `the MQTT payload schemas are missing (looked in ${candidates.map((c) => fileURLToPath(c)).join(', ')})`,
  );
}

export function loadPayloadSchema(name: PayloadName, directory = payloadSchemaDirectory()): AnySchemaObject {
  return JSON.parse(readFileSync(`${directory}${PAYLOAD_SCHEMA_FILES[name]}`, 'utf8')) as AnySchemaObject;
}

export type PayloadValidators = { readonly [K in PayloadName]: ValidateFunction<Payloads[K]> };

/** One validator per payload, compiled by the contract's Ajv (contract-ajv.ts). */
export function compilePayloadValidators(): PayloadValidators {
  const ajv = contractAjv();
  const directory = payloadSchemaDirectory();
  const compile = <K extends PayloadName>(name: K): ValidateFunction<Payloads[K]> =>
    ajv.compile<Payloads[K]>(loadPayloadSchema(name, directory));
  return {
    status: compile('status'),
    capabilities: compile('capabilities'),
    telemetry: compile('telemetry'),
    errno: compile('errno'),
    watermark: compile('watermark'),
    'stream-state': compile('stream-state'),
    ledger: compile('ledger'),
    'command-rejected': compile('command-rejected'),
    'queue-overflow': compile('queue-overflow'),
    command: compile('command'),
    response: compile('response'),
  };
}

// ---------------------------------------------------------------- toTelemetry

function roundTo(value: number, decimals: number): number {
  if (!Number.isFinite(value)) return 0;
  const scale = 10 ** decimals;
  return Math.round(value * scale) / scale;
}

/** A non-negative integer (NaN and infinities become 0, so the payload stays valid JSON numbers). */
function count(value: number): number {
  return Number.isFinite(value) ? Math.max(0, Math.round(value)) : 0;
}

function streamTelemetry(status: StreamStatus, health: StreamHealth | null): TelemetryStream {
  if (health === null) {
    return status.pool
      ? { state: status.state, pool: [count(status.pool.count), count(status.pool.size)] }
      : { state: status.state };
  }
  const notOk = health.level !== 'ok';
  return {
    state: status.state,
    level: health.level,
    watermark: health.watermark,
    // The health level comes from its reasons, so a level that is not ok has some; the fallback keeps the contract.
    ...(notOk ? { reasons: health.reasons.length > 0 ? health.reasons : [`health is ${health.level}`] } : {}),
    windowMs: count(health.windowMs),
    pool: [count(health.pool.count), count(health.pool.size)],
    ledger: [
      count(health.ledger.kernel),
      count(health.ledger.agent),
      count(health.ledger.decoder),
      count(health.ledger.consumer),
    ],
    bps: count(health.rate.bitsPerSecond),
    bufps: Math.max(0, roundTo(health.rate.buffersPerSecond, 1)),
    fill: health.fillRatio === null ? null : Math.min(1, Math.max(0, roundTo(health.fillRatio, 3))),
    ccGaps: count(health.ccGaps.window),
    ccGapsTotal: count(health.ccGaps.total),
    zeroQueuedMs: count(health.zeroQueued.windowMs),
    lossBytes: count(health.zeroQueued.estimatedLossBytes),
    sinkP99Ms: health.sinkLatencyMs === null ? null : Math.max(0, roundTo(health.sinkLatencyMs.p99, 1)),
    errors: count(Object.values(health.errors).reduce((sum, n) => sum + n, 0)),
    exportedFds: count(health.exportedFds),
    stuck: health.anomalies.length,
  };
}

/**
 * The compact telemetry payload from the agent's health and each stream's
 * status and latest health sample (null while it has none).
 */
export function toTelemetry(
  agent: AgentHealth,
  streams: ReadonlyArray<{ status: StreamStatus; health: StreamHealth | null }>,
  atMs: number,
): Telemetry {
  const entries: Record<string, TelemetryStream> = {};
  for (const { status, health } of streams) entries[status.stream] = streamTelemetry(status, health);
  const lag = agent.eventLoopLagMs;
  return {
    t: count(atMs),
    agent: {
      uptimeSeconds: count(agent.uptimeSeconds),
      rssBytes: count(agent.rssBytes),
      heapUsedBytes: count(agent.heapUsedBytes),
      eventLoopLagMs: {
        mean: Math.max(0, roundTo(lag.mean, 2)),
        p99: Math.max(0, roundTo(lag.p99, 2)),
        max: Math.max(0, roundTo(lag.max, 2)),
      },
      openFds: Number.isFinite(agent.openFds) ? Math.max(-1, Math.round(agent.openFds)) : -1,
    },
    streams: entries,
  };
}
