/**
 * The JSON Schemas (draft-07, which AsyncAPI 3 schemas extend) of the command
 * contract: the request envelope published to `<prefix>/<deviceId>/cmd/<name>`,
 * the arguments of every command, and the answer envelope. The router validates
 * with exactly these, and the AsyncAPI document is built from them, so the two
 * cannot drift apart.
 *
 * Commands are untrusted input: every object is closed (additionalProperties
 * false) and every string is an id, a key or an enum with a pattern. The one
 * open value is config.set's `values`, which the agent's own config loader
 * validates. A device path ("/dev/dvb/adapter0/demux0", "../x") never matches
 * a stream id, so it cannot reach a handler.
 */

import { MAX_DEMUX_BUFFER_SIZE, MAX_POOL_COUNT, MIN_POOL_COUNT, TS_PACKET_SIZE } from '../native/limits.js';

export type JsonSchema = Readonly<Record<string, unknown>>;

export const COMMAND_NAMES = [
  'status',
  'streams',
  'pool.resize',
  'stream.restart',
  'stream.stop',
  'stream.start',
  'config.get',
  'config.set',
  'probe',
  'diag.dump',
  'log.level',
  'telemetry.interval',
] as const;

export type CommandName = (typeof COMMAND_NAMES)[number];

export function isCommandName(name: string): name is CommandName {
  return (COMMAND_NAMES as readonly string[]).includes(name);
}

/** Same rule as the configuration's stream ids (agent/config/schema.ts): ids become MQTT topic levels. */
export const STREAM_ID_PATTERN = '^[a-z0-9][a-z0-9_-]{0,30}$';

/** Request ids: UUIDs, ULIDs, nanoids and counters fit; no spaces, quotes, slashes or control characters. */
export const REQUEST_ID_PATTERN = '^[A-Za-z0-9._:-]{1,128}$';

/**
 * A configuration key: a top-level key or a dotted path into the configuration
 * ("health.intervalMs", "streams.0.pool.count"). Segments after the first may be
 * array indices or stream ids.
 */
export const CONFIG_KEY_PATTERN = '^[a-zA-Z][a-zA-Z0-9]{0,39}(\\.[a-zA-Z0-9][a-zA-Z0-9_-]{0,39}){0,7}$';

/** Segments that would reach Object.prototype when a key is used to walk an object. */
export const FORBIDDEN_KEY_SEGMENT_PATTERN = '(^|\\.)(__proto__|constructor|prototype)(\\.|$)';

/** An Ed25519 signature (64 bytes) in standard base64 with padding. */
export const SIGNATURE_PATTERN = '^[A-Za-z0-9+/]{86}==$';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Telemetry more often than once a second would hammer the broker across a fleet. */
export const TELEMETRY_INTERVAL_MIN_MS = 1000;
export const TELEMETRY_INTERVAL_MAX_MS = 3_600_000;

/** Epoch milliseconds up to the largest Date (year 275760). */
const EPOCH_MS_SCHEMA = { type: 'integer', minimum: 0, maximum: 8_640_000_000_000_000 } as const;

const STREAM_ID_SCHEMA = {
  type: 'string',
  pattern: STREAM_ID_PATTERN,
  description: 'A configured stream id.',
} as const;

const CONFIG_KEY_SCHEMA = {
  type: 'string',
  pattern: CONFIG_KEY_PATTERN,
  not: { pattern: FORBIDDEN_KEY_SEGMENT_PATTERN },
} as const;

function noArgs(description: string): JsonSchema {
  return { type: 'object', description, properties: {}, additionalProperties: false };
}

function streamArgs(description: string): JsonSchema {
  return {
    type: 'object',
    description,
    required: ['stream'],
    properties: { stream: STREAM_ID_SCHEMA },
    additionalProperties: false,
  };
}

/** The `args` object of each command. */
export const COMMAND_ARGS_SCHEMAS: Readonly<Record<CommandName, JsonSchema>> = {
  status: noArgs('The agent state: version, uptime, streams and their health level.'),
  streams: noArgs('Every stream with its state, pool and health.'),
  'pool.resize': {
    type: 'object',
    description: "Resizes a stream's pool by reopening it (rolled back when the new pool cannot be set up).",
    required: ['stream'],
    // stream and at least one of count, size.
    minProperties: 2,
    properties: {
      stream: STREAM_ID_SCHEMA,
      count: { type: 'integer', minimum: MIN_POOL_COUNT, maximum: MAX_POOL_COUNT, description: 'Buffers.' },
      size: {
        type: 'integer',
        minimum: TS_PACKET_SIZE,
        maximum: MAX_DEMUX_BUFFER_SIZE,
        multipleOf: TS_PACKET_SIZE,
        description: 'Bytes per buffer, a multiple of 188 so TS packets never straddle buffers.',
      },
    },
    additionalProperties: false,
  },
  'stream.restart': streamArgs('Stops and starts a stream.'),
  'stream.stop': streamArgs('Stops a stream until stream.start or a restart of the agent.'),
  'stream.start': streamArgs('Starts a stopped stream.'),
  'config.get': {
    type: 'object',
    description: 'The effective configuration, or the value at one key.',
    properties: { key: CONFIG_KEY_SCHEMA },
    additionalProperties: false,
  },
  'config.set': {
    type: 'object',
    description:
      'Validated by the configuration loader, written atomically to the override file; the answer names the keys that need a restart.',
    required: ['values'],
    properties: {
      values: {
        type: 'object',
        description: 'Keys (top-level or dotted) to their new values.',
        minProperties: 1,
        maxProperties: 64,
        propertyNames: CONFIG_KEY_SCHEMA,
      },
    },
    additionalProperties: false,
  },
  probe: noArgs('Runs the capability probe again and republishes capabilities.'),
  'diag.dump': {
    type: 'object',
    description: 'The buffer ledger and counters, of one stream or all.',
    properties: { stream: STREAM_ID_SCHEMA },
    additionalProperties: false,
  },
  'log.level': {
    type: 'object',
    description: 'Sets the log level until the next restart or reload.',
    required: ['level'],
    properties: { level: { type: 'string', enum: [...LOG_LEVELS] } },
    additionalProperties: false,
  },
  'telemetry.interval': {
    type: 'object',
    description: 'Sets the telemetry interval.',
    required: ['ms'],
    properties: {
      ms: { type: 'integer', minimum: TELEMETRY_INTERVAL_MIN_MS, maximum: TELEMETRY_INTERVAL_MAX_MS },
    },
    additionalProperties: false,
  },
};

/** What each command's handler receives, once its args passed COMMAND_ARGS_SCHEMAS. */
export interface CommandArgs {
  status: Record<string, never>;
  streams: Record<string, never>;
  'pool.resize': { stream: string; count?: number; size?: number };
  'stream.restart': { stream: string };
  'stream.stop': { stream: string };
  'stream.start': { stream: string };
  'config.get': { key?: string };
  'config.set': { values: Record<string, unknown> };
  probe: Record<string, never>;
  'diag.dump': { stream?: string };
  'log.level': { level: (typeof LOG_LEVELS)[number] };
  'telemetry.interval': { ms: number };
}

/**
 * The request envelope. `args` is checked here only as an object; the router
 * then checks it against the command's own schema (commandRequestSchema
 * combines the two for documentation).
 */
export const REQUEST_ENVELOPE_SCHEMA: JsonSchema = {
  type: 'object',
  description: 'A command request, published to <prefix>/<deviceId>/cmd/<name>.',
  required: ['id'],
  properties: {
    id: {
      type: 'string',
      pattern: REQUEST_ID_PATTERN,
      description: 'Unique per request: a repeated id within the dedup window gets the first answer again.',
    },
    args: { type: 'object', description: "The command's arguments; {} when absent." },
    exp: { ...EPOCH_MS_SCHEMA, description: 'Expiry, epoch milliseconds: refused after this.' },
    iat: {
      ...EPOCH_MS_SCHEMA,
      description: 'Issue time, epoch milliseconds; required with sig and within the allowed clock skew.',
    },
    sig: {
      type: 'string',
      pattern: SIGNATURE_PATTERN,
      description:
        'Base64 Ed25519 signature of the UTF-8 canonical JSON (RFC 8785 key order) of [deviceId, name, id, args, iat].',
    },
  },
  additionalProperties: false,
};

/** The full request schema of one command: the envelope with that command's args. */
export function commandRequestSchema(name: CommandName): JsonSchema {
  const envelope = REQUEST_ENVELOPE_SCHEMA as { properties: Record<string, JsonSchema> };
  return {
    ...REQUEST_ENVELOPE_SCHEMA,
    description: `The ${name} command, published to <prefix>/<deviceId>/cmd/${name}.`,
    properties: { ...envelope.properties, args: COMMAND_ARGS_SCHEMAS[name] },
  };
}

const ERROR_CODE_PATTERN = '^[A-Za-z][A-Za-z0-9_.-]{0,63}$';

/**
 * The answer envelope, published to the request's MQTT 5 response topic or to
 * <prefix>/<deviceId>/response/<name>. `data` is command-specific.
 */
export const ANSWER_SCHEMA: JsonSchema = {
  description: 'The answer to a command.',
  oneOf: [
    {
      type: 'object',
      required: ['id', 'status', 'data'],
      properties: {
        id: { type: 'string', pattern: REQUEST_ID_PATTERN },
        status: { const: 'ok' },
        data: { description: "The command's result; null when it has none." },
      },
      additionalProperties: false,
    },
    {
      type: 'object',
      required: ['id', 'status', 'error'],
      properties: {
        id: {
          description: "The request's id, or null when the request had no usable id.",
          anyOf: [{ type: 'string', pattern: REQUEST_ID_PATTERN }, { type: 'null' }],
        },
        status: { const: 'error' },
        error: {
          type: 'object',
          required: ['code', 'message'],
          properties: {
            code: { type: 'string', pattern: ERROR_CODE_PATTERN },
            message: { type: 'string', maxLength: 1000 },
          },
          additionalProperties: false,
        },
      },
      additionalProperties: false,
    },
  ],
};

/** Error codes a handler may put in its answer (CommandError codes, or a DmxError's 'EBUSY'). */
export const ANSWER_ERROR_CODE_PATTERN = ERROR_CODE_PATTERN;
