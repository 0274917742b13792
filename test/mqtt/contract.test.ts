// The MQTT contract: the AsyncAPI document parses and validates offline, every
// payload schema compiles strictly, accepts its examples and refuses broken
// payloads, agrees with the agent's own types and constants, and toTelemetry
// turns real health into a small payload that matches its schema.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DiagnosticSeverity, fromFile, Parser } from '@asyncapi/parser';
import { Ajv, type AnySchemaObject } from 'ajv';
import { beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { STREAM_ID_PATTERN } from '../../agent/config/schema.js';
import { CAUSES } from '../../agent/diagnosis/causes.js';
import { diagnose } from '../../agent/diagnosis/diagnose.js';
import type { AgentHealth, StreamHealth } from '../../agent/health/types.js';
import type { CommandAnswer } from '../../agent/mqtt/command-router.js';
import {
  ANSWER_SCHEMA,
  COMMAND_ARGS_SCHEMAS,
  COMMAND_NAMES,
  REQUEST_ENVELOPE_SCHEMA,
} from '../../agent/mqtt/command-schemas.js';
import {
  type CommandResponse,
  compilePayloadValidators,
  describeValidationErrors,
  EVENT_KINDS,
  type EventPayloads,
  loadPayloadSchema,
  OFFLINE_STATUS_JSON,
  PAYLOAD_NAMES,
  PAYLOAD_SCHEMA_FILES,
  type PayloadName,
  type Payloads,
  type PayloadValidators,
  payloadSchemaDirectory,
  type Telemetry,
  toTelemetry,
} from '../../agent/mqtt/payloads.js';
import { Simulation } from '../../agent/native/index.js';
import { probe } from '../../agent/probe.js';
import { STREAM_STATES, type StreamStatus } from '../../agent/streams/types.js';
import { nativeError, VIDEO } from '../diagnosis/native-errors.js';
import { SIM_CONFIG } from '../support/media-env.js';

const ASYNCAPI_PATH = fileURLToPath(new URL('../../agent/mqtt/asyncapi.yaml', import.meta.url));
const PACKAGE_JSON = fileURLToPath(new URL('../../package.json', import.meta.url));
const asyncapiText = readFileSync(ASYNCAPI_PATH, 'utf8');

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function clone<T>(value: T): T {
  return structuredClone(value);
}

const validators: PayloadValidators = compilePayloadValidators();

function validate(name: PayloadName, payload: unknown): boolean {
  return validators[name](payload);
}

function expectValid(name: PayloadName, payload: unknown): void {
  const ok = validate(name, payload);
  expect(ok, `${name}: ${describeValidationErrors(validators[name].errors)}`).toBe(true);
}

function schemaExamples(name: PayloadName): JsonObject[] {
  return (loadPayloadSchema(name).examples ?? []) as JsonObject[];
}

// ---------------------------------------------------------------- the AsyncAPI document

describe('asyncapi.yaml', () => {
  let diagnostics: Awaited<ReturnType<ReturnType<typeof fromFile>['parse']>>['diagnostics'];
  let document: Awaited<ReturnType<ReturnType<typeof fromFile>['parse']>>['document'];
  /** Every http(s) $ref the resolver was asked for: answered with {} instead of a download. */
  const remoteRefs: string[] = [];

  beforeAll(async () => {
    const refuseRemote = (schema: 'http' | 'https') => ({
      schema,
      // Ahead of the parser's own http(s) readers, which are never reached: a string ends the chain.
      order: 1,
      read: (uri: { toString(): string }) => {
        remoteRefs.push(uri.toString());
        return '{}';
      },
    });
    const parser = new Parser({
      __unstable: { resolver: { resolvers: [refuseRemote('http'), refuseRemote('https')] } },
    });
    // An absolute source: the relative $refs (./schemas/*.schema.json) resolve against it with the file reader.
    ({ diagnostics, document } = await fromFile(parser, ASYNCAPI_PATH).parse());
  });

  it('parses and validates with the AsyncAPI parser: no error or warning, nothing fetched', () => {
    const problems = diagnostics
      .filter((d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning)
      .map((d) => `${d.code} ${d.message} at ${d.path.join('.')}`);
    expect(problems).toEqual([]);
    expect(document).toBeDefined();
    expect(document?.version()).toBe('3.0.0');
    expect(remoteRefs).toEqual([]);
  });

  it("has info.title dmx-agent and package.json's version", () => {
    const pkg = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string };
    expect(document?.info().title()).toBe('dmx-agent');
    expect(document?.info().version()).toBe(pkg.version);
  });

  it('resolves every message payload to its schema file, and references every schema file', () => {
    const referenced = [...asyncapiText.matchAll(/\$ref: ['"]\.\/schemas\/([^'"]+)['"]/g)].map((m) => m[1]);
    const files = readdirSync(payloadSchemaDirectory()).filter((f) => f.endsWith('.schema.json'));
    expect([...referenced].sort()).toEqual([...files].sort());
    expect([...Object.values(PAYLOAD_SCHEMA_FILES)].sort()).toEqual([...files].sort());

    const messages = document?.allMessages().all() ?? [];
    expect(messages.length).toBe(files.length);
    for (const message of messages) {
      const payload = message.payload();
      // Resolved, not a dangling $ref: the payload has the file's properties and required list.
      const title = payload?.title();
      const name = PAYLOAD_NAMES.find((n) => loadPayloadSchema(n).title === title);
      expect(name, `message ${message.id()} payload titled ${title}`).toBeDefined();
      const schema = loadPayloadSchema(name!);
      expect(Object.keys(payload?.properties() ?? {}).sort()).toEqual(Object.keys(schema.properties).sort());
      expect(payload?.required()).toEqual(schema.required);
    }
  });

  it('has the topic tree, the MQTT bindings and the directions of the contract', () => {
    const addresses = Object.fromEntries(
      (document?.channels().all() ?? []).map((channel) => [channel.id(), channel.address()]),
    );
    expect(addresses).toEqual({
      status: '{prefix}/{deviceId}/status',
      capabilities: '{prefix}/{deviceId}/capabilities',
      telemetry: '{prefix}/{deviceId}/telemetry',
      events: '{prefix}/{deviceId}/events/{kind}',
      command: '{prefix}/{deviceId}/cmd/{name}',
      response: '{prefix}/{deviceId}/response/{name}',
    });
    const operations = Object.fromEntries(
      (document?.operations().all() ?? []).map((op) => {
        const mqtt = op.bindings().get('mqtt')?.value() as { qos: number; retain: boolean };
        return [op.id(), { action: op.action(), channel: op.channels().all()[0]?.id(), ...mqtt }];
      }),
    );
    expect(operations).toMatchObject({
      sendStatus: { action: 'send', channel: 'status', qos: 1, retain: true },
      sendCapabilities: { action: 'send', channel: 'capabilities', qos: 1, retain: true },
      sendTelemetry: { action: 'send', channel: 'telemetry', qos: 0, retain: false },
      sendEvent: { action: 'send', channel: 'events', qos: 1, retain: false },
      receiveCommand: { action: 'receive', channel: 'command', qos: 1, retain: false },
      sendResponse: { action: 'send', channel: 'response', qos: 1, retain: false },
    });
    const reply = document?.operations().get('receiveCommand')?.reply();
    expect(reply?.channel()?.id()).toBe('response');
  });

  it('declares the Last Will as exactly the offline status, retained', () => {
    const fleet = document?.servers().get('fleet');
    const mqtt = fleet?.bindings().get('mqtt')?.value() as { lastWill: { message: string; retain: boolean } };
    expect(mqtt.lastWill.message).toBe(OFFLINE_STATUS_JSON);
    expect(mqtt.lastWill.retain).toBe(true);
    expect(validate('status', JSON.parse(OFFLINE_STATUS_JSON))).toBe(true);
  });

  it('names the event kinds and the commands of the agent', () => {
    const parameters = (channel: string) => document?.channels().get(channel)?.parameters();
    // The parser presents an AsyncAPI 3 parameter's enum as a schema.
    expect(parameters('events')?.get('kind')?.schema()?.enum()).toEqual([...EVENT_KINDS]);
    expect(parameters('command')?.get('name')?.schema()?.enum()).toEqual([...COMMAND_NAMES]);
    expect(parameters('response')?.get('name')?.schema()?.enum()).toEqual([...COMMAND_NAMES]);
    for (const name of COMMAND_NAMES) {
      expect(asyncapiText, `command ${name}`).toContain(`\`${name}\``);
      // Each argument is listed with its command.
      const line = asyncapiText.split('\n').find((l) => l.trimStart().startsWith(`- \`${name}\``));
      const args = Object.keys((COMMAND_ARGS_SCHEMAS[name] as { properties?: object }).properties ?? {});
      for (const arg of args) expect(line, `${name} argument ${arg}`).toMatch(new RegExp(`\\b${arg}\\b`));
    }
  });
});

// ---------------------------------------------------------------- the schemas

describe('payload schemas', () => {
  it('every schema compiles in strict mode, also on its own', () => {
    for (const name of PAYLOAD_NAMES) {
      const ajv = new Ajv({ strict: true, allErrors: true });
      ajv.addFormat('date-time', true);
      expect(() => ajv.compile(loadPayloadSchema(name)), name).not.toThrow();
    }
  });

  it('every schema documents every field and closes its objects', () => {
    const walk = (schema: AnySchemaObject, path: string): string[] => {
      const problems: string[] = [];
      if (schema.type === 'object' && schema.properties && schema.additionalProperties !== false) {
        problems.push(`${path} is open`);
      }
      for (const [key, child] of Object.entries((schema.properties ?? {}) as Record<string, AnySchemaObject>)) {
        if (typeof child === 'object' && !child.description) problems.push(`${path}.${key} has no description`);
      }
      for (const child of Object.values((schema.definitions ?? {}) as Record<string, AnySchemaObject>)) {
        problems.push(...walk(child, `${path}#`));
      }
      return problems;
    };
    for (const name of PAYLOAD_NAMES) expect(walk(loadPayloadSchema(name), name)).toEqual([]);
  });

  it.each(PAYLOAD_NAMES)('%s: its examples are valid', (name) => {
    const examples = schemaExamples(name);
    expect(examples.length).toBeGreaterThan(0);
    for (const example of examples) expectValid(name, example);
  });

  it.each(PAYLOAD_NAMES)('%s: refuses the example without any one required field', (name) => {
    const example = schemaExamples(name)[0]!;
    const required = (loadPayloadSchema(name).required ?? []) as string[];
    expect(required.length).toBeGreaterThan(0);
    for (const key of required) {
      const broken = clone(example);
      delete broken[key];
      expect(validate(name, broken), `${name} without ${key}`).toBe(false);
    }
  });

  it.each(PAYLOAD_NAMES)('%s: refuses a wrong type in any field, and an extra property', (name) => {
    const example = schemaExamples(name)[0]!;
    const wrongType = (value: Json): Json =>
      typeof value === 'string'
        ? 42
        : typeof value === 'number'
          ? '42'
          : typeof value === 'boolean'
            ? 'true'
            : Array.isArray(value)
              ? { 0: value[0] ?? null }
              : value === null
                ? []
                : 'an object';
    for (const [key, value] of Object.entries(example)) {
      if (name === 'response' && key === 'data') continue; // any JSON value
      const broken = clone(example);
      broken[key] = wrongType(value);
      expect(validate(name, broken), `${name}.${key} as ${JSON.stringify(broken[key])}`).toBe(false);
    }
    expect(validate(name, { ...example, unexpected: 1 })).toBe(false);
    expect(validate(name, [example])).toBe(false);
    expect(validate(name, null)).toBe(false);
  });

  it('status: online with identity, offline bare; bad digests and dates refused', () => {
    expectValid('status', { state: 'online' });
    expect(validate('status', { state: 'rebooting' })).toBe(false);
    expect(validate('status', { state: 'online', configDigest: 'ABC' })).toBe(false);
    expect(validate('status', { state: 'online', configDigest: 'F'.repeat(64) })).toBe(false);
    expect(validate('status', { state: 'online', bootTime: 'yesterday' })).toBe(false);
    expect(validate('status', { state: 'online', bootTime: '2025-02-30T10:00:00Z' })).toBe(true); // Date rolls it over
    expect(validate('status', { state: 'online', bootTime: '2025-13-01T10:00:00Z' })).toBe(false);
    expect(validate('status', { state: 'online', deviceId: 'stb/0042' })).toBe(false);
    expect(validate('status', { state: 'online', deviceId: 'stb+' })).toBe(false);
  });

  it('telemetry: health fields come all together, reasons exactly when the level is not ok', () => {
    const example = schemaExamples('telemetry')[0]!;
    const streams = example.streams as JsonObject;
    const main = streams.main as JsonObject;
    const withMain = (stream: JsonObject) => ({ ...example, streams: { main: stream } });

    expectValid('telemetry', withMain({ state: 'opening' }));
    expectValid('telemetry', withMain({ state: 'allocating', pool: [8, 48128] }));
    expect(validate('telemetry', withMain({ state: 'streaming', level: 'ok' })), 'level alone').toBe(false);
    const { bps: _bps, ...withoutBps } = main;
    expect(validate('telemetry', withMain(withoutBps)), 'one health field missing').toBe(false);
    expect(validate('telemetry', withMain({ ...main, reasons: ['why'] })), 'reasons with ok').toBe(false);
    expect(validate('telemetry', withMain({ ...main, level: 'degraded' })), 'degraded without reasons').toBe(false);
    expectValid('telemetry', withMain({ ...main, level: 'degraded', reasons: ['High watermark'] }));
    expect(validate('telemetry', withMain({ ...main, level: 'degraded', reasons: [] }))).toBe(false);
    expect(validate('telemetry', withMain({ state: 'failed', reasons: ['x'] }))).toBe(false);
    expect(validate('telemetry', withMain({ ...main, ledger: [1, 2, 3] })), 'ledger of 3').toBe(false);
    expect(validate('telemetry', withMain({ ...main, ledger: [1, 2, 3, 4, 5] })), 'ledger of 5').toBe(false);
    expect(validate('telemetry', withMain({ ...main, pool: [8, -1] }))).toBe(false);
    expect(validate('telemetry', withMain({ ...main, bps: 1.5 })), 'fractional bps').toBe(false);
    expect(validate('telemetry', withMain({ ...main, fill: 1.2 }))).toBe(false);
    expectValid('telemetry', withMain({ ...main, fill: null, sinkP99Ms: null }));
    expect(validate('telemetry', withMain({ ...main, state: 'running' }))).toBe(false);
    expect(validate('telemetry', { ...example, streams: { 'Main/0': main } }), 'stream id').toBe(false);
  });

  it('events: unknown causes, states and watermarks are refused', () => {
    const errno = schemaExamples('errno')[0]!;
    expect(validate('errno', { ...errno, cause: 'bad-luck' })).toBe(false);
    expect(validate('errno', { ...errno, errnoNumber: 22 })).toBe(false);
    expect(validate('errno', { ...errno, errno: 'einval' })).toBe(false);
    expect(validate('errno', { ...errno, args: { index: 'zero' } })).toBe(false);
    expect(validate('errno', { ...errno, count: 0 })).toBe(false);
    const state = schemaExamples('stream-state')[0]!;
    expect(validate('stream-state', { ...state, to: 'running' })).toBe(false);
    const watermark = schemaExamples('watermark')[0]!;
    expectValid('watermark', { ...watermark, from: null });
    expect(validate('watermark', { ...watermark, to: null })).toBe(false);
    expect(validate('watermark', { ...watermark, to: 'full' })).toBe(false);
    const ledger = schemaExamples('ledger')[0]!;
    expectValid('ledger', { ...ledger, anomalies: [] });
    expect(
      validate('ledger', { ...ledger, anomalies: [{ kind: 'stuck-buffer', index: -1, owner: 'decoder', heldMs: 1 }] }),
    ).toBe(false);
    const rejected = schemaExamples('command-rejected')[0]!;
    expectValid('command-rejected', { ...rejected, id: null });
    expect(validate('command-rejected', { ...rejected, code: '' })).toBe(false);
    expect(validate('queue-overflow', { dropped: 0, droppedBytes: 0, since: 1 })).toBe(false);
  });

  it('command requests: the envelope only, with its id, expiry and signature rules', () => {
    expectValid('command', { id: '1' });
    expectValid('command', { id: 'a'.repeat(128), args: {} });
    expect(validate('command', { id: '' })).toBe(false);
    expect(validate('command', { id: 'a'.repeat(129) })).toBe(false);
    expect(validate('command', { id: 'has space' })).toBe(false);
    expect(validate('command', { id: 'x/y' })).toBe(false);
    expect(validate('command', { id: 7 })).toBe(false);
    expect(validate('command', { args: {} })).toBe(false);
    expect(validate('command', { id: '1', args: 'stream=main' })).toBe(false);
    expect(validate('command', { id: '1', args: [] })).toBe(false);
    expect(validate('command', { id: '1', exp: 1.5 })).toBe(false);
    expect(validate('command', { id: '1', exp: -1 })).toBe(false);
    expect(validate('command', { id: '1', iat: '1741944413589' })).toBe(false);
    expect(validate('command', { id: '1', sig: 'not base64!' })).toBe(false);
    expect(validate('command', { id: '1', sig: 'AAAA' })).toBe(false); // not 64 bytes
    expect(validate('command', { id: '1', name: 'pool.resize' })).toBe(false);
  });

  it('command responses: ok has data and no error, error has error and no data', () => {
    expectValid('response', { id: '1', status: 'ok', data: null });
    expectValid('response', { id: '1', status: 'ok', data: [1, 'two'] });
    expectValid('response', { id: null, status: 'error', error: { code: 'malformed-json', message: 'x' } });
    expect(validate('response', { id: '1', status: 'ok' }), 'ok without data').toBe(false);
    expect(validate('response', { id: null, status: 'ok', data: 1 }), 'ok without id').toBe(false);
    expect(
      validate('response', { id: '1', status: 'ok', data: 1, error: { code: 'x', message: 'y' } }),
      'ok with error',
    ).toBe(false);
    expect(validate('response', { id: '1', status: 'error' }), 'error without error').toBe(false);
    expect(
      validate('response', { id: '1', status: 'error', data: 1, error: { code: 'x', message: 'y' } }),
      'error with data',
    ).toBe(false);
    expect(validate('response', { id: '1', status: 'error', error: { code: 'x' } })).toBe(false);
    expect(validate('response', { id: '1', status: 'error', error: { code: 'x', message: 'y', stack: 'z' } })).toBe(
      false,
    );
    expect(validate('response', { id: '1', status: 'maybe', data: 1 })).toBe(false);
  });
});

// ---------------------------------------------------------------- schemas and the agent's own definitions

/** The schema without its annotations: what constrains, only. */
function constraints(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(constraints);
  if (schema === null || typeof schema !== 'object') return schema;
  const annotations = new Set(['$schema', 'title', 'description', 'examples', '$comment']);
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([key]) => !annotations.has(key))
      .map(([key, value]) => [key, key === 'properties' ? constraintsOfEach(value) : constraints(value)]),
  );
}

function constraintsOfEach(properties: object): object {
  return Object.fromEntries(Object.entries(properties).map(([key, value]) => [key, constraints(value)]));
}

describe('schemas and the agent agree', () => {
  it("the errno cause enum is the diagnosis catalog's, in order", () => {
    expect(loadPayloadSchema('errno').properties.cause.enum).toEqual(Object.keys(CAUSES));
  });

  it("stream states, stream ids and watermark levels are the agent's", () => {
    expect(loadPayloadSchema('stream-state').definitions.state.enum).toEqual([...STREAM_STATES]);
    expect(loadPayloadSchema('telemetry').definitions.stream.properties.state.enum).toEqual([...STREAM_STATES]);
    for (const name of ['stream-state', 'watermark', 'ledger'] as const) {
      expect(loadPayloadSchema(name).properties.stream.pattern, name).toBe(STREAM_ID_PATTERN.source);
    }
    expect(loadPayloadSchema('telemetry').properties.streams.propertyNames.pattern).toBe(STREAM_ID_PATTERN.source);
  });

  it("the request envelope constrains exactly what the command router's does", () => {
    expect(constraints(loadPayloadSchema('command'))).toEqual(constraints(REQUEST_ENVELOPE_SCHEMA));
  });

  it("the response schema judges answers as the command router's answer schema does", () => {
    const routers = new Ajv({ strict: false }).compile(ANSWER_SCHEMA);
    const answers: unknown[] = [
      ...schemaExamples('response'),
      { id: '1', status: 'ok', data: null },
      { id: '1', status: 'ok', data: { nested: [1] } },
      { id: '1', status: 'ok' },
      { id: null, status: 'ok', data: 1 },
      { id: 'bad id', status: 'ok', data: 1 },
      { id: '1', status: 'ok', data: 1, error: { code: 'x', message: 'y' } },
      { id: null, status: 'error', error: { code: 'expired', message: 'too late' } },
      { id: '1', status: 'error', error: { code: '-x', message: 'y' } },
      { id: '1', status: 'error', error: { code: 'x', message: 'y'.repeat(1001) } },
      { id: '1', status: 'error', data: 1, error: { code: 'x', message: 'y' } },
      { id: '1', status: 'error' },
      { id: '1', status: 'done', data: 1 },
      { status: 'ok', data: 1 },
    ];
    for (const answer of answers) {
      expect(validate('response', answer), JSON.stringify(answer)).toBe(routers(answer));
    }
    expectTypeOf<CommandAnswer>().toEqualTypeOf<CommandResponse>();
  });

  it("a real diagnosed EINVAL (import below the decoder's sizeimage) is a valid errno event as it is", () => {
    const event: EventPayloads['errno'] = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'VIDIOC_QBUF',
        path: VIDEO,
        args: { index: 0, fd: 23, bytesused: 3008, dmabufSize: 4096, sizeimage: 6144 },
      }),
      { stream: 'main', decoder: { path: VIDEO, outputSizeimage: 6144 } },
      1_741_944_413_589,
    );
    expect(event.cause).toBe('import-dmabuf-below-sizeimage');
    expectValid('errno', JSON.parse(JSON.stringify(event)));
  });

  it('the capability probe of the simulated receiver is a valid capabilities payload', () => {
    const simulation = new Simulation(SIM_CONFIG);
    try {
      const result: Payloads['capabilities'] = probe({ simulation });
      expect(result.decoders.length).toBeGreaterThan(0);
      expectValid('capabilities', JSON.parse(JSON.stringify(result)));
    } finally {
      simulation.close();
    }
  });

  it('typed payloads built by the agent validate', () => {
    const typed: { [K in Exclude<PayloadName, 'errno' | 'capabilities' | 'telemetry'>]: Payloads[K] } = {
      status: { state: 'online', version: '0.1.0', bootTime: new Date(T0).toISOString(), deviceId: 'stb-0042' },
      watermark: { stream: 'main', from: null, to: 'normal', level: 'ok', reasons: [], atMs: T0 },
      'stream-state': { stream: 'main', from: 'allocating', to: 'streaming', reason: 'pump started', atMs: T0 },
      ledger: { stream: 'sub', anomalies: SUB_HEALTH.anomalies, atMs: T0 },
      'command-rejected': { name: 'no.such', id: 'r-1', code: 'unknown-command', message: 'no such command', atMs: T0 },
      'queue-overflow': { dropped: 3, droppedBytes: 2048, since: T0 - 60_000 },
      command: { id: 'r-2', args: { stream: 'main', count: 8 }, exp: T0 + 30_000 },
      response: { id: 'r-2', status: 'ok', data: { outcome: 'applied' } },
    };
    for (const [name, payload] of Object.entries(typed)) expectValid(name as PayloadName, payload);
  });

  it('the validators also load from the built dist/ (tsc copies no JSON)', async () => {
    const built = (await import(
      fileURLToPath(new URL('../../dist/agent/mqtt/payloads.js', import.meta.url))
    )) as typeof import('../../agent/mqtt/payloads.js');
    for (const name of PAYLOAD_NAMES) expect(built.loadPayloadSchema(name), name).toEqual(loadPayloadSchema(name));
    expect(built.compilePayloadValidators().status({ state: 'offline' })).toBe(true);
  });
});

// ---------------------------------------------------------------- toTelemetry

const T0 = 1_741_944_413_589;
const FLAGS_ZERO = { total: 0, window: 0 };

const AGENT_HEALTH: AgentHealth = {
  atMs: T0,
  uptimeSeconds: 86_412.734,
  rssBytes: 61_341_696,
  heapUsedBytes: 18_874_368,
  eventLoopLagMs: { mean: 0.4213, p99: 3.0981, max: 7.8456 },
  openFds: 41,
  streams: { total: 4, streaming: 1, degraded: 1, failed: 1, other: 1 },
};

/** 16 Mbit/s into 8 buffers of 256 TS packets, flowing well. */
const MAIN_HEALTH: StreamHealth = {
  stream: 'main',
  atMs: T0,
  windowMs: 1000,
  pool: { count: 8, size: 48_128 },
  ledger: { kernel: 5, agent: 0, decoder: 3, consumer: 0 },
  fillRatio: 1,
  rate: { bytesPerSecond: 1_999_872, buffersPerSecond: 41.553, bitsPerSecond: 15_998_976 },
  totals: { buffers: 3_590_112, bytes: 172_785_870_336 },
  flags: {
    crc32Discard: FLAGS_ZERO,
    tei: FLAGS_ZERO,
    packetCounterMismatch: { total: 2, window: 0 },
    discontinuityDetected: { total: 2, window: 0 },
    discontinuityIndicator: FLAGS_ZERO,
  },
  ts: { syncErrors: 0, teiPackets: 0 },
  ccGaps: { total: 2, window: 0, byPid: { '0x0100': 1, '0x0101': 0, '0x0111': 1, '0x0112': 0 } },
  zeroQueued: { totalMs: 0, windowMs: 0, share: 0, episodes: 0, estimatedLossBytes: 0 },
  sinkLatencyMs: { p50: 20.5, p95: 41.7, p99: 48.23, max: 52.1, mean: 22.41 },
  errors: {},
  exportedFds: 8,
  anomalies: [],
  watermark: 'normal',
  level: 'ok',
  reasons: [],
};

/** A consumer that stalls: a stuck buffer and data lost while nothing was queued. */
const SUB_HEALTH: StreamHealth = {
  stream: 'sub',
  atMs: T0,
  windowMs: 1002,
  pool: { count: 4, size: 12_032 },
  ledger: { kernel: 0, agent: 1, decoder: 0, consumer: 3 },
  fillRatio: 0.98765,
  rate: { bytesPerSecond: 48_032.1, buffersPerSecond: 4.0, bitsPerSecond: 384_256.8 },
  totals: { buffers: 90_211, bytes: 1_085_418_752 },
  flags: {
    crc32Discard: FLAGS_ZERO,
    tei: FLAGS_ZERO,
    packetCounterMismatch: { total: 9, window: 3 },
    discontinuityDetected: { total: 9, window: 3 },
    discontinuityIndicator: FLAGS_ZERO,
  },
  ts: { syncErrors: 0, teiPackets: 0 },
  ccGaps: { total: 9, window: 3, byPid: { '0x0200': 7, '0x0201': 2 } },
  zeroQueued: { totalMs: 1420, windowMs: 120, share: 0.1198, episodes: 4, estimatedLossBytes: 7500 },
  sinkLatencyMs: { p50: 180, p95: 2200, p99: 2450.04, max: 2450.04, mean: 402.7 },
  errors: { 'DMX_QBUF:EINVAL': 1, 'VIDIOC_QBUF:EINVAL': 2 },
  exportedFds: 4,
  anomalies: [{ kind: 'stuck-buffer', index: 2, owner: 'consumer', heldMs: 2450 }],
  watermark: 'overflow',
  level: 'critical',
  reasons: [
    'Data lost: no buffer queued in the kernel for 120 ms of the last 1.0 s (12.0%), about 7.3 KB lost at 500 kbit/s',
    'Buffer 2 held by the consumer for 2.45 s (limit 2 s)',
    '3 continuity-counter gaps in the last 1.0 s (PID 0x0200: 2, PID 0x0201: 1)',
  ],
};

function status(stream: string, state: StreamStatus['state'], pool: StreamStatus['pool']): StreamStatus {
  return {
    stream,
    state,
    reason: state === 'failed' ? 'device /dev/dvb/adapter1/demux0 missing: waiting' : 'ok',
    sinceMs: T0 - 5000,
    pool,
    sink: { type: 'decoder', attached: true, detail: '/dev/video0 (vim2m)' },
    failures: state === 'failed' ? 3 : 0,
    retryAtMs: state === 'failed' ? T0 + 4000 : null,
  };
}

const STREAMS = [
  { status: status('main', 'streaming', { count: 8, size: 48_128 }), health: MAIN_HEALTH },
  { status: status('sub', 'degraded', { count: 4, size: 12_032 }), health: SUB_HEALTH },
  { status: status('radio', 'failed', null), health: null },
  { status: status('epg', 'allocating', { count: 4, size: 3008 }), health: null },
];

describe('toTelemetry', () => {
  const telemetry: Telemetry = toTelemetry(AGENT_HEALTH, STREAMS, T0);

  it('produces a payload the telemetry schema accepts', () => {
    expectValid('telemetry', JSON.parse(JSON.stringify(telemetry)));
  });

  it('maps every field, rounded, with the health fields only where there is health', () => {
    expect(telemetry.t).toBe(T0);
    expect(telemetry.agent).toEqual({
      uptimeSeconds: 86_413,
      rssBytes: 61_341_696,
      heapUsedBytes: 18_874_368,
      eventLoopLagMs: { mean: 0.42, p99: 3.1, max: 7.85 },
      openFds: 41,
    });
    expect(telemetry.streams.main).toEqual({
      state: 'streaming',
      level: 'ok',
      watermark: 'normal',
      windowMs: 1000,
      pool: [8, 48_128],
      ledger: [5, 0, 3, 0],
      bps: 15_998_976,
      bufps: 41.6,
      fill: 1,
      ccGaps: 0,
      ccGapsTotal: 2,
      zeroQueuedMs: 0,
      lossBytes: 0,
      sinkP99Ms: 48.2,
      errors: 0,
      exportedFds: 8,
      stuck: 0,
    });
    expect(telemetry.streams.sub).toEqual({
      state: 'degraded',
      level: 'critical',
      watermark: 'overflow',
      reasons: SUB_HEALTH.reasons,
      windowMs: 1002,
      pool: [4, 12_032],
      ledger: [0, 1, 0, 3],
      bps: 384_257,
      bufps: 4,
      fill: 0.988,
      ccGaps: 3,
      ccGapsTotal: 9,
      zeroQueuedMs: 120,
      lossBytes: 7500,
      sinkP99Ms: 2450,
      errors: 3,
      exportedFds: 4,
      stuck: 1,
    });
    expect(telemetry.streams.radio).toEqual({ state: 'failed' });
    expect(telemetry.streams.epg).toEqual({ state: 'allocating', pool: [4, 3008] });
  });

  it('is less than half the size of the raw health it comes from', () => {
    const compact = JSON.stringify(telemetry).length;
    const raw = JSON.stringify({ agent: AGENT_HEALTH, streams: [MAIN_HEALTH, SUB_HEALTH] }).length;
    expect(compact).toBeLessThan(raw / 2);
  });

  it('keeps the contract on edge values: no sample in the window, NaN rates, a level without reasons', () => {
    const idle: StreamHealth = {
      ...MAIN_HEALTH,
      fillRatio: null,
      sinkLatencyMs: null,
      rate: { bytesPerSecond: Number.NaN, buffersPerSecond: Number.POSITIVE_INFINITY, bitsPerSecond: Number.NaN },
      level: 'degraded',
      reasons: [],
    };
    const payload = toTelemetry(
      { ...AGENT_HEALTH, openFds: -1 },
      [{ status: status('main', 'degraded', { count: 8, size: 48_128 }), health: idle }],
      T0,
    );
    expect(payload.streams.main).toMatchObject({ fill: null, sinkP99Ms: null, bps: 0, bufps: 0 });
    expect(payload.agent.openFds).toBe(-1);
    expectValid('telemetry', JSON.parse(JSON.stringify(payload)));
  });
});
