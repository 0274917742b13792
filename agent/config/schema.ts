/**
 * The configuration schema. The fixed keys are a convict schema whose
 * defaults come from config/default.json (read once, so the file is the one
 * source of truth), with their environment variables, types and ranges. The
 * two lists convict describes poorly, streams (whose sinks are a tagged
 * union) and the simulated receiver, have readers here that check every
 * element and name each problem by its key, such as `streams[1].pool.size`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type convict from 'convict';
import type { FrontendTuning, SimulationConfig } from '../native/index.js';
import { MAX_POOL_COUNT, MIN_POOL_COUNT, poolCountProblem, poolSizeProblem } from '../streams/sizing.js';
import type { DecoderFormatConfig, PoolConfig, PoolGrowthConfig, SinkConfig, StreamConfig } from './types.js';

// ---------------------------------------------------------------------------
// Problems

export interface ConfigProblem {
  /** The key at fault, as written in a config file: `mqtt.url`, `streams[1].pool.size`. */
  key: string;
  /** What is wrong, with the numbers, and the fix. */
  message: string;
}

/** Problems collected while reading a config: all of them are reported, not just the first. */
export class ProblemList {
  readonly items: ConfigProblem[] = [];

  add(key: string, message: string): void {
    this.items.push({ key, message });
  }

  /** Whether any problem was found at `key` or below it. */
  under(key: string): boolean {
    return this.items.some(
      (problem) => problem.key === key || problem.key.startsWith(`${key}.`) || problem.key.startsWith(`${key}[`),
    );
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A value as a message shows it: short JSON, or its kind. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') return typeof value;
  const json = JSON.stringify(value);
  return json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** "unknown key 'x'" with a guess at the intended one and the keys allowed there. */
export function unknownKeyMessage(name: string, allowed: readonly string[]): string {
  const guess = allowed.find((candidate) => editDistance(name.toLowerCase(), candidate.toLowerCase()) <= 2);
  const hint = guess !== undefined ? ` (did you mean '${guess}'?)` : '';
  const known = allowed.length > 0 ? `the keys here are ${allowed.join(', ')}` : 'nothing is allowed here';
  return `unknown key '${name}'${hint}: remove it; ${known}`;
}

const quoteAll = (values: readonly string[]): string => values.map((value) => `'${value}'`).join(', ');

// ---------------------------------------------------------------------------
// Reading one object of a list, field by field

interface NumberRange {
  min: number;
  max: number;
  /** min itself is not allowed (a positive number). */
  minExclusive?: boolean;
  integer?: boolean;
}

function rangeText(range: NumberRange): string {
  const kind = range.integer ? 'an integer' : 'a number';
  if (range.minExclusive) return `${kind} above ${range.min} and at most ${range.max}`;
  return `${kind} from ${range.min} to ${range.max}`;
}

function inRange(value: unknown, range: NumberRange): value is number {
  if (typeof value !== 'number' || !Number.isFinite(value)) return false;
  if (range.integer && !Number.isInteger(value)) return false;
  if (range.minExclusive ? value <= range.min : value < range.min) return false;
  return value <= range.max;
}

/**
 * Reads the fields of one config object, recording a problem (keyed by the
 * field's path, worded with the owner's label) for each bad or missing one
 * and returning its default, or a placeholder for a missing required field,
 * so reading goes on and every problem is found.
 */
export class ObjectReader {
  private constructor(
    private readonly value: Record<string, unknown>,
    readonly key: string,
    private readonly label: string,
    private readonly problems: ProblemList,
  ) {}

  /** Null (with a problem recorded) when `value` is not an object. `allowed` null: check keys later. */
  static open(
    value: unknown,
    key: string,
    label: string,
    problems: ProblemList,
    what: string,
    allowed: readonly string[] | null,
  ): ObjectReader | null {
    if (!isPlainObject(value)) {
      problems.add(key, `${label}must be an object (${what}), got ${describeValue(value)}`);
      return null;
    }
    const reader = new ObjectReader(value, key, label, problems);
    if (allowed !== null) reader.checkKeys(allowed);
    return reader;
  }

  checkKeys(allowed: readonly string[]): void {
    for (const name of Object.keys(this.value)) {
      if (!allowed.includes(name)) this.problems.add(this.keyOf(name), this.label + unknownKeyMessage(name, allowed));
    }
  }

  keyOf(name: string): string {
    return `${this.key}.${name}`;
  }

  raw(name: string): unknown {
    return this.value[name];
  }

  has(name: string): boolean {
    return this.value[name] !== undefined;
  }

  fail(name: string, message: string): void {
    this.problems.add(this.keyOf(name), this.label + message);
  }

  private missing(name: string, expected: string): void {
    this.fail(name, `${name} is required: ${expected}`);
  }

  number(name: string, range: NumberRange, fallback?: number): number {
    const value = this.value[name];
    if (value === undefined) {
      if (fallback !== undefined) return fallback;
      this.missing(name, `give ${rangeText(range)}`);
      return range.min;
    }
    if (!inRange(value, range)) {
      this.fail(name, `${name} must be ${rangeText(range)}, got ${describeValue(value)}`);
      return fallback ?? range.min;
    }
    return value;
  }

  integer(name: string, min: number, max: number, fallback?: number): number {
    return this.number(name, { min, max, integer: true }, fallback);
  }

  /** An integer or null; null when absent. */
  integerOrNull(name: string, min: number, max: number): number | null {
    const value = this.value[name];
    if (value === undefined || value === null) return null;
    if (!inRange(value, { min, max, integer: true })) {
      this.fail(name, `${name} must be null or an integer from ${min} to ${max}, got ${describeValue(value)}`);
      return null;
    }
    return value;
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.value[name];
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') {
      this.fail(name, `${name} must be true or false, got ${describeValue(value)}`);
      return fallback;
    }
    return value;
  }

  /** `check` returns why a string is not acceptable (with the fix), or null. */
  string(name: string, fallback?: string, check?: (value: string) => string | null): string {
    const value = this.value[name];
    if (value === undefined) {
      if (fallback !== undefined) return fallback;
      this.missing(name, 'give a string');
      return '';
    }
    if (typeof value !== 'string') {
      this.fail(name, `${name} must be a string, got ${describeValue(value)}`);
      return fallback ?? '';
    }
    const problem = check?.(value) ?? null;
    if (problem !== null) {
      this.fail(name, `${name} ${problem}`);
      return fallback ?? '';
    }
    return value;
  }

  oneOf<T extends string>(name: string, values: readonly T[], fallback?: T): T {
    const value = this.value[name];
    if (value === undefined) {
      if (fallback !== undefined) return fallback;
      this.missing(name, `give one of ${quoteAll(values)}`);
      return values[0]!;
    }
    if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
      this.fail(name, `${name} must be one of ${quoteAll(values)}, got ${describeValue(value)}`);
      return fallback ?? values[0]!;
    }
    return value as T;
  }

  /** An array field: the array, or null (with a problem recorded when present but not an array). */
  array(name: string, required: string | null): unknown[] | null {
    const value = this.value[name];
    if (value === undefined && required === null) return null;
    if (!Array.isArray(value)) {
      this.fail(
        name,
        value === undefined
          ? `${name} is required: ${required}`
          : `${name} must be a list, got ${describeValue(value)}`,
      );
      return null;
    }
    return value;
  }
}

// ---------------------------------------------------------------------------
// Streams

/** TS PIDs run 0..0x1fff; 0x2000 asks a PES filter for every PID. */
export const MAX_PID = 0x2000;
/** [a-z0-9][a-z0-9_-]*, at most 31 characters: ids become MQTT topic levels and consumer stream ids. */
export const STREAM_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,30}$/;
const MAX_BITRATE = 1_000_000_000;
/** Delivery systems the native Frontend.tune knows (native/src/frontend.cc). */
export const DELIVERY_SYSTEMS = [
  'DVBT',
  'DVBT2',
  'DVBC',
  'DVBC/ANNEX_A',
  'DVBC/ANNEX_B',
  'DVBC/ANNEX_C',
  'DVBS',
  'DVBS2',
  'ATSC',
  'ISDBT',
  'ISDBS',
  'DTMB',
] as const;
const OPTIONAL_TUNING_KEYS = [
  'modulation',
  'symbolRate',
  'bandwidthHz',
  'innerFec',
  'inversion',
  'guardInterval',
  'transmissionMode',
  'hierarchy',
  'pilot',
  'rolloff',
  'streamId',
  'voltage',
  'tone',
] as const;
const UINT32_MAX = 0xffff_ffff;
const FILTER_OUTPUTS = ['tsdemux-tap', 'ts-tap', 'tap'] as const;
const SINK_TYPES = ['decoder', 'consumer', 'discard'] as const;
/** sockaddr_un.sun_path holds 108 bytes with the terminating NUL. */
const MAX_SOCKET_PATH = 107;

/** Defaults of the keys of each element of `streams` (shown by describeConfigKeys). */
export const STREAM_DEFAULTS = {
  adapter: 0,
  source: 'demux',
  demux: 0,
  tuning: null,
  pool: {
    count: null,
    size: null,
    latencyMs: 40,
    bufferingMs: 500,
    growth: { enabled: false, maxCount: MAX_POOL_COUNT, sustainMs: 10_000 },
  },
  sink: { type: 'discard' },
  decoder: { captureFormat: null, captureCount: 4, sizeimage: null },
  consumer: { maxInFlight: 0, holdTimeoutMs: 2000 },
} as const;

const STREAM_KEYS = ['id', 'adapter', 'source', 'demux', 'filter', 'tuning', 'bitrate', 'pool', 'sink'] as const;
const FILTER_KEYS = ['pids', 'output'] as const;
const POOL_KEYS = ['count', 'size', 'latencyMs', 'bufferingMs', 'growth'] as const;
const GROWTH_KEYS = ['enabled', 'maxCount', 'sustainMs'] as const;
const FORMAT_KEYS = ['fourcc', 'width', 'height', 'sizeimage'] as const;
const SINK_KEYS: Readonly<Record<SinkConfig['type'], readonly string[]>> = {
  decoder: ['type', 'decoder', 'format', 'captureFormat', 'captureCount'],
  consumer: ['type', 'socketPath', 'maxInFlight', 'holdTimeoutMs'],
  discard: ['type'],
};

function streamIdProblem(id: string): string | null {
  if (STREAM_ID_PATTERN.test(id)) return null;
  return (
    `'${id}' is not a valid stream id: use 1 to 31 characters of a-z, 0-9, '_' and '-', starting with a letter ` +
    `or digit (ids become MQTT topic levels)`
  );
}

function readFilter(
  value: unknown,
  key: string,
  label: string,
  problems: ProblemList,
  source: StreamConfig['source'],
): StreamConfig['filter'] {
  // Without an explicit output the source decides: the DVR receives only DMX_OUT_TS_TAP data.
  const defaultOutput = source === 'dvr' ? 'ts-tap' : 'tsdemux-tap';
  const filter: StreamConfig['filter'] = { pids: [], output: defaultOutput };
  const reader = ObjectReader.open(value, key, label, problems, 'with pids and output', FILTER_KEYS);
  if (reader === null) return filter;
  const pids = reader.array('pids', `list the PIDs to pass (0 to ${MAX_PID}; ${MAX_PID} passes every PID)`) ?? [];
  if (Array.isArray(reader.raw('pids')) && pids.length === 0) reader.fail('pids', 'pids must list at least one PID');
  pids.forEach((pid, index) => {
    const pidKey = `${key}.pids[${index}]`;
    if (!inRange(pid, { min: 0, max: MAX_PID, integer: true })) {
      problems.add(
        pidKey,
        `${label}PID ${describeValue(pid)} is outside 0..${MAX_PID} (0x0000..0x${MAX_PID.toString(16)}): ` +
          `use a TS PID from 0 to 8191, or ${MAX_PID} for every PID`,
      );
    } else if (filter.pids.includes(pid)) {
      problems.add(pidKey, `${label}PID ${pid} is listed twice: list each PID once`);
    } else {
      filter.pids.push(pid);
    }
  });
  if (filter.pids.includes(MAX_PID) && pids.length > 1) {
    reader.fail('pids', `PID ${MAX_PID} already passes every PID: list it alone, or list the PIDs without it`);
  }
  filter.output = reader.oneOf('output', FILTER_OUTPUTS, defaultOutput);
  return filter;
}

function readTuning(value: unknown, key: string, label: string, problems: ProblemList): FrontendTuning | null {
  if (value === undefined || value === null) return null;
  const allowed = ['deliverySystem', 'frequency', ...OPTIONAL_TUNING_KEYS];
  const reader = ObjectReader.open(value, key, label, problems, 'frontend tuning, or null', allowed);
  if (reader === null) return null;
  const tuning: FrontendTuning = {
    deliverySystem: reader.oneOf('deliverySystem', DELIVERY_SYSTEMS),
    frequency: reader.integer('frequency', 1, UINT32_MAX),
  };
  for (const name of OPTIONAL_TUNING_KEYS) {
    if (reader.has(name)) tuning[name] = reader.integer(name, 0, UINT32_MAX);
  }
  return tuning;
}

function readGrowth(value: unknown, key: string, label: string, problems: ProblemList): PoolGrowthConfig {
  const defaults = STREAM_DEFAULTS.pool.growth;
  if (value === undefined) return { ...defaults };
  const reader = ObjectReader.open(value, key, label, problems, 'pool growth settings', GROWTH_KEYS);
  if (reader === null) return { ...defaults };
  return {
    enabled: reader.boolean('enabled', defaults.enabled),
    maxCount: reader.integer('maxCount', MIN_POOL_COUNT, MAX_POOL_COUNT, defaults.maxCount),
    sustainMs: reader.integer('sustainMs', 0, 3_600_000, defaults.sustainMs),
  };
}

function readPool(value: unknown, key: string, label: string, problems: ProblemList): PoolConfig {
  const defaults = STREAM_DEFAULTS.pool;
  const pool: PoolConfig = {
    count: defaults.count,
    size: defaults.size,
    latencyMs: defaults.latencyMs,
    bufferingMs: defaults.bufferingMs,
    growth: { ...defaults.growth },
  };
  if (value === undefined) return pool;
  const reader = ObjectReader.open(value, key, label, problems, 'pool settings', POOL_KEYS);
  if (reader === null) return pool;
  // Count and size are checked by the sizing policy's own rules, so the messages match the runtime's.
  for (const name of ['count', 'size'] as const) {
    const raw = reader.raw(name);
    if (raw === undefined || raw === null) continue;
    if (typeof raw !== 'number') {
      reader.fail(name, `${name} must be null (derive it) or a number, got ${describeValue(raw)}`);
      continue;
    }
    const problem = name === 'count' ? poolCountProblem(raw) : poolSizeProblem(raw);
    if (problem !== null) reader.fail(name, problem);
    else pool[name] = raw;
  }
  pool.latencyMs = reader.number('latencyMs', { min: 0, max: 60_000, minExclusive: true }, defaults.latencyMs);
  pool.bufferingMs = reader.number('bufferingMs', { min: 0, max: 600_000, minExclusive: true }, defaults.bufferingMs);
  pool.growth = readGrowth(reader.raw('growth'), reader.keyOf('growth'), label, problems);
  return pool;
}

function readFormat(value: unknown, key: string, label: string, problems: ProblemList): DecoderFormatConfig {
  const format: DecoderFormatConfig = { fourcc: '', width: 0, height: 0, sizeimage: null };
  const reader = ObjectReader.open(
    value,
    key,
    label,
    problems,
    "a V4L2 format such as { fourcc: 'RGB3', width: 128, height: 160 }",
    FORMAT_KEYS,
  );
  if (reader === null) return format;
  format.fourcc = reader.string('fourcc', undefined, (fourcc) =>
    /^[\x20-\x7e]{4}$/.test(fourcc) ? null : `must be four printable characters (such as 'RGB3'), got '${fourcc}'`,
  );
  format.width = reader.integer('width', 1, 16_384);
  format.height = reader.integer('height', 1, 16_384);
  format.sizeimage = reader.integerOrNull('sizeimage', 1, 64 * 1024 * 1024);
  return format;
}

function socketPathProblem(path: string): string | null {
  if (path.length === 0) return 'must not be empty: give a filesystem path or @name (an abstract socket)';
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    return `is ${Buffer.byteLength(path)} bytes long; a unix socket path holds at most ${MAX_SOCKET_PATH}: use a shorter one`;
  }
  return null;
}

function decoderNameProblem(name: string): string | null {
  if (name.startsWith('/dev/')) return null;
  if (name.length >= 1 && name.length <= 31 && !name.includes('/')) return null;
  return `'${name}' is neither a /dev/videoN path nor a driver name (1 to 31 characters, as in /sys/class/video4linux/*/name)`;
}

function readSink(value: unknown, key: string, label: string, problems: ProblemList): SinkConfig {
  if (value === undefined) return { type: 'discard' };
  const reader = ObjectReader.open(value, key, label, problems, "with type 'decoder', 'consumer' or 'discard'", null);
  if (reader === null) return { type: 'discard' };
  const type = reader.oneOf('type', SINK_TYPES);
  // The keys allowed depend on the type; with no valid type there is nothing to check them against.
  if ((SINK_TYPES as readonly unknown[]).includes(reader.raw('type'))) reader.checkKeys(SINK_KEYS[type]);
  switch (type) {
    case 'decoder': {
      const defaults = STREAM_DEFAULTS.decoder;
      const captureFormat = reader.raw('captureFormat');
      return {
        type,
        decoder: reader.string('decoder', undefined, decoderNameProblem),
        format: readFormat(reader.raw('format'), reader.keyOf('format'), label, problems),
        captureFormat:
          captureFormat === undefined || captureFormat === null
            ? defaults.captureFormat
            : readFormat(captureFormat, reader.keyOf('captureFormat'), label, problems),
        captureCount: reader.integer('captureCount', 1, MAX_POOL_COUNT, defaults.captureCount),
      };
    }
    case 'consumer': {
      const defaults = STREAM_DEFAULTS.consumer;
      return {
        type,
        socketPath: reader.string('socketPath', undefined, socketPathProblem),
        maxInFlight: reader.integer('maxInFlight', 0, 65_535, defaults.maxInFlight),
        holdTimeoutMs: reader.integer('holdTimeoutMs', 1, 3_600_000, defaults.holdTimeoutMs),
      };
    }
    case 'discard':
      return { type };
  }
}

/**
 * Reads streams[index], filling in defaults. Problems are added to `problems`;
 * the result always has every field (defaults or placeholders where the input
 * was bad), so the caller decides from `problems.under(key)` what to trust.
 */
export function readStream(value: unknown, index: number, problems: ProblemList): StreamConfig {
  const key = `streams[${index}]`;
  const givenId = isPlainObject(value) && typeof value.id === 'string' ? value.id : null;
  const label = givenId !== null ? `stream '${givenId}': ` : `stream ${index}: `;
  const stream: StreamConfig = {
    id: givenId ?? '',
    adapter: STREAM_DEFAULTS.adapter,
    source: STREAM_DEFAULTS.source,
    demux: STREAM_DEFAULTS.demux,
    filter: { pids: [], output: 'tsdemux-tap' },
    tuning: STREAM_DEFAULTS.tuning,
    bitrate: 0,
    pool: readPool(undefined, '', label, problems),
    sink: { type: 'discard' },
  };
  const reader = ObjectReader.open(value, key, label, problems, 'a stream', STREAM_KEYS);
  if (reader === null) return stream;
  stream.id = reader.string('id', undefined, streamIdProblem);
  stream.adapter = reader.integer('adapter', 0, 255, STREAM_DEFAULTS.adapter);
  stream.source = reader.oneOf('source', ['demux', 'dvr'], STREAM_DEFAULTS.source);
  stream.demux = reader.integer('demux', 0, 255, STREAM_DEFAULTS.demux);
  if (reader.has('filter')) {
    stream.filter = readFilter(reader.raw('filter'), reader.keyOf('filter'), label, problems, stream.source);
  } else {
    reader.fail('filter', 'filter is required: give { "pids": [...] } with the PIDs to pass');
  }
  stream.tuning = readTuning(reader.raw('tuning'), reader.keyOf('tuning'), label, problems);
  stream.bitrate = reader.number('bitrate', { min: 0, max: MAX_BITRATE, minExclusive: true });
  stream.pool = readPool(reader.raw('pool'), reader.keyOf('pool'), label, problems);
  stream.sink = readSink(reader.raw('sink'), reader.keyOf('sink'), label, problems);
  return stream;
}

// ---------------------------------------------------------------------------
// The simulated receiver

const SIM_KEYS = ['adapters', 'decoders'] as const;
const SIM_ADAPTER_KEYS = ['adapter', 'mmap', 'exportable', 'requireTune', 'tuneDelayMs', 'tscheck', 'source'] as const;
const SIM_SOURCE_KEYS = { synthetic: ['kind', 'bitrate', 'programs'], file: ['kind', 'path', 'bitrate'] } as const;
const SIM_PROGRAM_KEYS = ['number', 'pmtPid', 'streams'] as const;
const SIM_ES_KEYS = ['pid', 'type', 'share'] as const;
const SIM_DECODER_KEYS = ['name', 'processingDelayMs', 'compressedFormats', 'contiguous', 'outputMemory'] as const;
const SIM_MAX_BITRATE = 10_000_000_000;

function readSimSource(value: unknown, key: string, label: string, problems: ProblemList): void {
  if (value === undefined) return;
  const reader = ObjectReader.open(value, key, label, problems, "with kind 'synthetic' or 'file'", null);
  if (reader === null) return;
  const kind = reader.oneOf('kind', ['synthetic', 'file']);
  reader.checkKeys(SIM_SOURCE_KEYS[kind]);
  reader.integer('bitrate', 1, SIM_MAX_BITRATE, 0);
  if (kind === 'file') {
    reader.string('path', undefined, (path) => (path.length > 0 ? null : 'must not be empty'));
    return;
  }
  const programs = reader.array('programs', null);
  if (programs === null) return;
  if (programs.length === 0) reader.fail('programs', 'programs must hold at least one program, or be left out');
  const numbers = new Set<number>();
  const pids = new Set<number>();
  let share = 0;
  programs.forEach((program, p) => {
    const programKey = `${key}.programs[${p}]`;
    const programReader = ObjectReader.open(program, programKey, label, problems, 'a program', SIM_PROGRAM_KEYS);
    if (programReader === null) return;
    const number = programReader.integer('number', 1, 65_535);
    if (numbers.has(number)) programReader.fail('number', `program number ${number} is used twice`);
    numbers.add(number);
    const pmtPid = programReader.integer('pmtPid', 0x10, 0x1ffe);
    if (pids.has(pmtPid)) programReader.fail('pmtPid', `PID ${pmtPid} is used twice on this adapter`);
    pids.add(pmtPid);
    const streams = programReader.array('streams', 'list the elementary streams') ?? [];
    if (Array.isArray(programReader.raw('streams')) && streams.length === 0) {
      programReader.fail('streams', 'streams must not be empty');
    }
    streams.forEach((es, s) => {
      const esReader = ObjectReader.open(es, `${programKey}.streams[${s}]`, label, problems, 'a stream', SIM_ES_KEYS);
      if (esReader === null) return;
      const pid = esReader.integer('pid', 0x10, 0x1ffe);
      if (pids.has(pid)) esReader.fail('pid', `PID ${pid} is used twice on this adapter`);
      pids.add(pid);
      esReader.oneOf('type', ['video', 'audio', 'data']);
      share += esReader.number('share', { min: 0, max: 1 });
    });
  });
  if (share > 1 + 1e-9) {
    reader.fail('programs', `the stream shares add up to ${Number(share.toFixed(4))}, more than 1 (the whole bitrate)`);
  }
}

/**
 * Checks the simulated receiver (the shape of SimulationConfig, with the
 * native parser's ranges) and returns it unchanged. Absent fields keep the
 * simulation's own defaults (adapter N = its index, 8 Mbit/s, vim2m).
 */
export function readSim(value: unknown, problems: ProblemList): SimulationConfig {
  const reader = ObjectReader.open(value, 'sim', '', problems, 'the simulated receiver', SIM_KEYS);
  if (reader === null) return {};
  const adapters = reader.array('adapters', null) ?? [];
  const numbers = new Set<number>();
  adapters.forEach((adapter, index) => {
    const key = `sim.adapters[${index}]`;
    const adapterReader = ObjectReader.open(adapter, key, '', problems, 'a simulated adapter', SIM_ADAPTER_KEYS);
    if (adapterReader === null) return;
    const number = adapterReader.integer('adapter', 0, 255, index);
    if (numbers.has(number)) adapterReader.fail('adapter', `adapter ${number} is used twice: number each adapter once`);
    numbers.add(number);
    for (const name of ['mmap', 'exportable', 'requireTune', 'tscheck'] as const) adapterReader.boolean(name, true);
    adapterReader.integer('tuneDelayMs', 0, 60_000, 0);
    readSimSource(adapterReader.raw('source'), `${key}.source`, '', problems);
  });
  const decoders = reader.array('decoders', null) ?? [];
  decoders.forEach((decoder, index) => {
    const key = `sim.decoders[${index}]`;
    const decoderReader = ObjectReader.open(decoder, key, '', problems, 'a simulated decoder', SIM_DECODER_KEYS);
    if (decoderReader === null) return;
    decoderReader.string('name', 'vim2m', (name) =>
      name.length >= 1 && name.length <= 31 ? null : 'must be 1 to 31 characters',
    );
    decoderReader.integer('processingDelayMs', 0, 10_001, 0);
    decoderReader.boolean('contiguous', false);
    const formats = decoderReader.array('compressedFormats', null) ?? [];
    formats.forEach((format, f) => {
      const formatReader = ObjectReader.open(format, `${key}.compressedFormats[${f}]`, '', problems, 'a format', [
        'fourcc',
        'sizeimage',
      ]);
      formatReader?.string('fourcc', undefined, (fourcc) => (fourcc.length === 4 ? null : 'must be four characters'));
      formatReader?.integer('sizeimage', 1, 16 * 1024 * 1024);
    });
    const memory = decoderReader.array('outputMemory', null) ?? [];
    memory.forEach((type, m) => {
      if (type !== 'dmabuf' && type !== 'mmap' && type !== 'userptr') {
        problems.add(
          `${key}.outputMemory[${m}]`,
          `must be one of 'dmabuf', 'mmap', 'userptr', got ${describeValue(type)}`,
        );
      }
    });
  });
  // Checked field by field above; the native layer takes the object as it is.
  return structuredClone(value) as SimulationConfig;
}

/** The adapters a simulated receiver has, as the native simulation numbers them. */
export function simAdapters(sim: SimulationConfig): Array<{ adapter: number; requireTune: boolean }> {
  if (sim.adapters === undefined) return [{ adapter: 0, requireTune: true }];
  return sim.adapters.map((adapter, index) => ({
    adapter: adapter.adapter ?? index,
    requireTune: adapter.requireTune !== false,
  }));
}

/** The names of a simulated receiver's decoders. */
export function simDecoderNames(sim: SimulationConfig): string[] {
  if (sim.decoders === undefined) return ['vim2m'];
  return sim.decoders.map((decoder) => decoder.name ?? 'vim2m');
}

// ---------------------------------------------------------------------------
// The convict schema of the fixed keys

/** A convict format: throws an Error whose message says what is expected. */
type Format = (value: unknown) => void;

class Leaf {
  constructor(
    readonly doc: string,
    readonly format: Format,
    readonly env: string | null = null,
    readonly sensitive = false,
  ) {}
}

interface Section {
  readonly [key: string]: Leaf | Section;
}

function expect(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

function oneOfFormat(values: readonly string[]): Format {
  return (value) => expect(typeof value === 'string' && values.includes(value), `must be one of ${quoteAll(values)}`);
}

function numberFormat(range: NumberRange): Format {
  return (value) => expect(inRange(value, range), `must be ${rangeText(range)}`);
}

const integerFormat = (min: number, max: number): Format => numberFormat({ min, max, integer: true });

const stringFormat: Format = (value) => expect(typeof value === 'string', 'must be a string');

const booleanFormat: Format = (value) => expect(typeof value === 'boolean', 'must be true or false');

const deviceIdFormat: Format = (value) =>
  expect(
    typeof value === 'string' && (value === '' || /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value)),
    "must be empty (the hostname) or 1 to 64 characters of letters, digits, '.', '_' and '-' " +
      '(it becomes an MQTT topic level)',
  );

export const MQTT_PROTOCOLS = ['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'] as const;

const mqttUrlFormat: Format = (value) => {
  if (value === 'embedded') return;
  let url: URL | null = null;
  try {
    url = typeof value === 'string' ? new URL(value) : null;
  } catch {
    url = null;
  }
  expect(
    url !== null && (MQTT_PROTOCOLS as readonly string[]).includes(url.protocol) && url.hostname !== '',
    "must be a broker URL such as mqtt://localhost:1883 (mqtt, mqtts, tcp, ssl, ws or wss), or 'embedded'",
  );
};

const topicPrefixFormat: Format = (value) =>
  expect(
    typeof value === 'string' && value.length > 0 && value.split('/').every((level) => /^[^+#\s\0]+$/.test(level)),
    "must be one or more MQTT topic levels separated by '/' (no empty level, '+', '#' or spaces), such as 'stb'",
  );

const objectFormat: Format = (value) => expect(isPlainObject(value), 'must be an object');

const stringListFormat: Format = (value) =>
  expect(
    Array.isArray(value) && value.every((v) => typeof v === 'string' && /^[a-z][a-z0-9.]{0,63}$/.test(v)),
    "must be a list of command names such as ['status', 'pool.resize']",
  );

const arrayFormat: Format = (value) => expect(Array.isArray(value), 'must be a list of streams');

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const TRI_STATE = ['auto', 'always', 'never'] as const;
const MS_HOUR = 3_600_000;

/** Every fixed key: doc, format, environment variable. Defaults come from config/default.json. */
const SPEC: Section = {
  overrideFile: new Leaf(
    'Where the remote config.set command writes its changes (JSON layered over --config, read at start and ' +
      'on SIGHUP); empty: config.set is refused.',
    stringFormat,
  ),
  deviceId: new Leaf(
    "Identifies the receiver in MQTT topics and logs; empty means the client certificate's CN when mqtt.tls.cert is set (a fleet broker's ACL names the box by it), else the hostname.",
    deviceIdFormat,
    'DMX_AGENT_DEVICE_ID',
  ),
  backend: new Leaf(
    "'kernel': the real devices; 'sim': the simulated receiver described by `sim`.",
    oneOfFormat(['kernel', 'sim']),
    'DMX_AGENT_BACKEND',
  ),
  log: {
    level: new Leaf('Log level (pino).', oneOfFormat(LOG_LEVELS), 'DMX_AGENT_LOG_LEVEL'),
    pretty: new Leaf(
      "Human-readable logs: 'auto' (when stdout is a terminal), 'always' or 'never' (JSON lines).",
      oneOfFormat(TRI_STATE),
      'DMX_AGENT_LOG_PRETTY',
    ),
  },
  mqtt: {
    url: new Leaf(
      "The MQTT broker; 'embedded': an in-process MQTT 3.1.1 broker on 127.0.0.1 (development only).",
      mqttUrlFormat,
      'DMX_AGENT_MQTT_URL',
      true,
    ),
    embedded: {
      port: new Leaf("The embedded broker's MQTT port (mqtt.url 'embedded').", integerFormat(1, 65535)),
      wsPort: new Leaf("The embedded broker's WebSocket port.", integerFormat(1, 65535)),
    },
    username: new Leaf('MQTT user name; empty for none.', stringFormat, 'DMX_AGENT_MQTT_USERNAME'),
    password: new Leaf(
      'MQTT password; empty for none. Redacted in logs and print-config.',
      stringFormat,
      'DMX_AGENT_MQTT_PASSWORD',
      true,
    ),
    topicPrefix: new Leaf('First topic level(s): topics are <topicPrefix>/<deviceId>/...', topicPrefixFormat),
    enabled: new Leaf('Connect to the broker at all (false: local only).', booleanFormat, 'DMX_AGENT_MQTT_ENABLED'),
    protocolVersion: new Leaf(
      '5 (MQTT 5, default) or 4 (MQTT 3.1.1: responses correlate by the payload id only).',
      (value) => expect(value === 5 || value === 4, 'must be 5 or 4'),
    ),
    clientId: new Leaf('MQTT client id; empty: dmx-agent-<deviceId>.', stringFormat),
    keepaliveSec: new Leaf('MQTT keepalive.', integerFormat(5, 3600)),
    sessionExpirySec: new Leaf(
      'How long the broker keeps the session (subscriptions, QoS 1 commands) while the box is offline.',
      integerFormat(0, 30 * 86_400),
    ),
    reconnect: {
      baseMs: new Leaf(
        'First reconnect delay bound (full jitter: a random delay below it).',
        integerFormat(100, MS_HOUR),
      ),
      capMs: new Leaf('Largest reconnect delay bound.', integerFormat(1000, 24 * MS_HOUR)),
      stableMs: new Leaf('Connected this long, the backoff starts again from baseMs.', integerFormat(0, 24 * MS_HOUR)),
    },
    offlineQueue: {
      maxEvents: new Leaf('Events kept while offline (oldest dropped first).', integerFormat(0, 1_000_000)),
      maxBytes: new Leaf('Bytes of events kept while offline.', integerFormat(0, 1 << 30)),
    },
    telemetryIntervalMs: new Leaf(
      'Telemetry period (also sent at once when a stream changes health level).',
      integerFormat(1000, 24 * MS_HOUR),
    ),
    tls: {
      ca: new Leaf('CA certificate file (PEM) for mqtts; empty: the system CAs.', stringFormat),
      cert: new Leaf(
        'Client certificate file (PEM); empty: none. The TLS files are read again before every reconnect, so replacing them rotates the certificate.',
        stringFormat,
      ),
      key: new Leaf(
        'Client key file (PEM); the agent refuses a key readable by group or others.',
        stringFormat,
        null,
        true,
      ),
    },
    commands: {
      allow: new Leaf('Commands allowed to run; empty: every known command.', stringListFormat),
      maxBytes: new Leaf('Largest command payload accepted.', integerFormat(256, 1 << 20)),
      dedupWindowMs: new Leaf(
        'A command id seen within this window is answered again without running twice.',
        integerFormat(0, 24 * MS_HOUR),
      ),
      publicKeyFile: new Leaf(
        'Ed25519 public key (PEM file); when set, only commands signed with its private key run.',
        stringFormat,
      ),
    },
  },
  health: {
    intervalMs: new Leaf('How often buffer health is sampled and reported.', integerFormat(100, MS_HOUR)),
    stuckBufferMs: new Leaf('A buffer held by a sink longer than this is a ledger anomaly.', integerFormat(1, MS_HOUR)),
    watermark: {
      low: new Leaf(
        'Share of the pool out of the kernel at or below which the watermark is low.',
        numberFormat({ min: 0, max: 1 }),
      ),
      high: new Leaf(
        'Share of the pool out of the kernel at or above which it is high.',
        numberFormat({ min: 0, max: 1 }),
      ),
      hysteresis: new Leaf('A level is left only this far past its threshold.', numberFormat({ min: 0, max: 0.5 })),
      minDurationMs: new Leaf(
        'A new level must hold this long before it is reported (overflow is reported at once).',
        integerFormat(0, MS_HOUR),
      ),
      noDataMs: new Leaf('No buffer for this long is "no data".', integerFormat(1, MS_HOUR)),
    },
    lossShareCritical: new Leaf(
      'A stream is critical when the time with zero buffers queued in the kernel exceeds this share of the window.',
      numberFormat({ min: 0, max: 1 }),
    ),
  },
  diagnosis: {
    coalesceWindowMs: new Leaf(
      'Identical errno events within this window are reported once, with a count.',
      integerFormat(1, MS_HOUR),
    ),
  },
  supervision: {
    backoffInitialMs: new Leaf(
      'First retry delay after a failure (doubling up to backoffMaxMs).',
      integerFormat(1, MS_HOUR),
    ),
    backoffMaxMs: new Leaf('Longest retry delay.', integerFormat(1, 24 * MS_HOUR)),
    deviceWaitMs: new Leaf(
      'How often a missing device (ENOENT, ENODEV) is looked for again.',
      integerFormat(10, MS_HOUR),
    ),
    decoderRetryMs: new Leaf(
      'How often a lost decoder is looked for again while the pool keeps cycling.',
      integerFormat(10, MS_HOUR),
    ),
    shutdownTimeoutMs: new Leaf(
      'SIGTERM must finish within this; past it the agent exits non-zero.',
      integerFormat(100, 600_000),
    ),
    preventKnownBad: new Leaf(
      'Refuse calls known to fail (a pool the decoder cannot import) before the kernel sees them, reporting ' +
        "them as prevented; false lets the kernel's own EINVAL happen (diagnosis tests, new-board bring-up).",
      booleanFormat,
    ),
  },
  systemd: {
    readyTimeoutMs: new Leaf(
      'READY=1 is sent when every stream is up, or after this long with STATUS= naming the rest.',
      integerFormat(0, MS_HOUR),
    ),
  },
  sim: new Leaf(
    'The simulated receiver when backend is sim: { adapters: [...], decoders: [...] } (SimulationConfig); ' +
      'empty: one adapter 0 at 8 Mbit/s and a vim2m decoder.',
    objectFormat,
  ),
  statusLine: new Leaf(
    "The live one-line-per-stream health summary: 'auto' (when stdout is a terminal), 'always' or 'never'.",
    oneOfFormat(TRI_STATE),
    'DMX_AGENT_STATUS_LINE',
  ),
  streams: new Leaf("The streams to run; each element's keys are listed as streams[].<key>.", arrayFormat),
};

/** Stream element keys for the README table: [key, default, doc]. */
const STREAM_KEY_DOCS: ReadonlyArray<[string, unknown, string]> = [
  ['id', undefined, 'Required. [a-z0-9][a-z0-9_-]*, at most 31 characters; used in MQTT topics and log fields.'],
  ['adapter', STREAM_DEFAULTS.adapter, 'N of /dev/dvb/adapterN.'],
  [
    'source',
    STREAM_DEFAULTS.source,
    "'demux': the pool is on demuxN; 'dvr': the filter on demuxN, the pool on dvr0 (one stream per adapter).",
  ],
  ['demux', STREAM_DEFAULTS.demux, 'N of demuxN, where the filter is set.'],
  ['filter.pids', undefined, 'Required. PIDs to pass, 0 to 8191, or [8192] for every PID.'],
  [
    'filter.output',
    null,
    "'tsdemux-tap' (TS on the demux fd), 'ts-tap' (TS to the DVR) or 'tap' (PES); default by source.",
  ],
  [
    'tuning',
    STREAM_DEFAULTS.tuning,
    "Tune frontend0 first: { deliverySystem: 'DVBT', frequency: 474000000, ... }, or null.",
  ],
  ['bitrate', undefined, 'Required. Expected bits per second of the filtered data: sizes the pool.'],
  ['pool.count', STREAM_DEFAULTS.pool.count, 'Buffers, 2 to 32; null derives it from bufferingMs (4 to 32).'],
  [
    'pool.size',
    STREAM_DEFAULTS.pool.size,
    'Bytes per buffer, a multiple of 188 up to 770048; null derives it (latency or decoder).',
  ],
  [
    'pool.latencyMs',
    STREAM_DEFAULTS.pool.latencyMs,
    'Longest time one buffer takes to fill (buffers complete only when full).',
  ],
  ['pool.bufferingMs', STREAM_DEFAULTS.pool.bufferingMs, 'Data the whole pool holds while the sink is slow.'],
  [
    'pool.growth.enabled',
    STREAM_DEFAULTS.pool.growth.enabled,
    'Grow the count under sustained pressure (by reopening).',
  ],
  [
    'pool.growth.maxCount',
    STREAM_DEFAULTS.pool.growth.maxCount,
    'Largest count growth may reach; not below the count.',
  ],
  [
    'pool.growth.sustainMs',
    STREAM_DEFAULTS.pool.growth.sustainMs,
    'How long pressure must last before the pool grows.',
  ],
  ['sink.type', STREAM_DEFAULTS.sink.type, "'decoder', 'consumer' or 'discard'."],
  ['sink.decoder', undefined, 'Decoder sinks, required: a name under /sys/class/video4linux or a /dev/videoN path.'],
  [
    'sink.format',
    undefined,
    'Decoder sinks, required: the OUTPUT format { fourcc, width, height, sizeimage? }; its sizeimage must fit the pool.',
  ],
  [
    'sink.captureFormat',
    STREAM_DEFAULTS.decoder.captureFormat,
    'Decoder sinks: the CAPTURE format; null uses the OUTPUT format.',
  ],
  ['sink.captureCount', STREAM_DEFAULTS.decoder.captureCount, 'Decoder sinks: CAPTURE buffers.'],
  ['sink.socketPath', undefined, 'Consumer sinks, required: the unix socket a player connects to (@name: abstract).'],
  [
    'sink.maxInFlight',
    STREAM_DEFAULTS.consumer.maxInFlight,
    'Consumer sinks: buffers the player may hold; 0: pool count - 2.',
  ],
  [
    'sink.holdTimeoutMs',
    STREAM_DEFAULTS.consumer.holdTimeoutMs,
    'Consumer sinks: a player holding a buffer longer is disconnected.',
  ],
];

/** The package root: where config/default.json lives, from the sources or from dist/. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'config', 'default.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('dmx-agent: cannot find config/default.json beside a package.json');
}

/** A file of config/ by name ('default', 'development'). */
export function configFilePath(name: string): string {
  return join(packageRoot(), 'config', `${name}.json`);
}

export type ConvictShape = Record<string, unknown>;

interface BuiltSchema {
  schema: convict.Schema<ConvictShape>;
  defaults: Record<string, unknown>;
  /** Environment variable by dotted key. */
  envByKey: Map<string, string>;
  sensitive: Set<string>;
}

let built: BuiltSchema | null = null;

/**
 * The convict schema with its defaults from config/default.json. Read once;
 * a key in one and not the other is a packaging error and throws.
 */
export function agentSchema(): BuiltSchema {
  if (built !== null) return built;
  const path = configFilePath('default');
  const defaults: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!isPlainObject(defaults)) throw new Error(`${path} must hold a JSON object`);
  const envByKey = new Map<string, string>();
  const sensitive = new Set<string>();

  const build = (section: Section, values: Record<string, unknown>, prefix: string): Record<string, unknown> => {
    for (const name of Object.keys(values)) {
      if (!(name in section)) throw new Error(`${path} has ${prefix}${name}, which the schema lacks`);
    }
    const out: Record<string, unknown> = {};
    for (const [name, node] of Object.entries(section)) {
      const key = `${prefix}${name}`;
      if (!(name in values)) throw new Error(`${path} lacks ${key}, a key of the schema`);
      const value = values[name];
      if (node instanceof Leaf) {
        if (node.env !== null) envByKey.set(key, node.env);
        if (node.sensitive) sensitive.add(key);
        out[name] = {
          doc: node.doc,
          format: node.format,
          default: value,
          ...(node.env !== null ? { env: node.env } : {}),
          ...(node.sensitive ? { sensitive: true } : {}),
        };
      } else {
        if (!isPlainObject(value)) throw new Error(`${path}: ${key} must be an object`);
        out[name] = build(node, value, `${key}.`);
      }
    }
    return out;
  };

  const schema = build(SPEC, defaults, '') as convict.Schema<ConvictShape>;
  built = { schema, defaults, envByKey, sensitive };
  return built;
}

/**
 * What the fixed schema has at `path`, for checking a file before convict
 * sees it: a section (an object of keys), a leaf with the check of its
 * value (the message, or null when the value is good), or nothing.
 */
export function schemaNode(
  path: readonly string[],
): { kind: 'section' } | { kind: 'leaf'; check: (value: unknown) => string | null } | null {
  let node: Leaf | Section = SPEC;
  for (const name of path) {
    if (node instanceof Leaf || !Object.hasOwn(node, name)) return null;
    node = node[name]!;
  }
  if (!(node instanceof Leaf)) return { kind: 'section' };
  const { format } = node;
  return {
    kind: 'leaf',
    check: (value) => {
      try {
        format(value);
        return null;
      } catch (err) {
        return (err as Error).message;
      }
    },
  };
}

/** The keys of a section of the fixed schema. */
export function sectionKeys(path: readonly string[]): string[] {
  let node: Leaf | Section | undefined = SPEC;
  for (const name of path) {
    if (node === undefined || node instanceof Leaf) return [];
    node = node[name];
  }
  return node === undefined || node instanceof Leaf ? [] : Object.keys(node);
}

export interface ConfigKeyDescription {
  key: string;
  env: string | null;
  default: unknown;
  doc: string;
}

/** Every config key with its environment variable, default and meaning (for the README table). */
export function describeConfigKeys(): ConfigKeyDescription[] {
  const { defaults } = agentSchema();
  const rows: ConfigKeyDescription[] = [];
  const walk = (section: Section, values: Record<string, unknown>, prefix: string): void => {
    for (const [name, node] of Object.entries(section)) {
      const value = values[name];
      if (node instanceof Leaf) {
        rows.push({ key: `${prefix}${name}`, env: node.env, default: structuredClone(value), doc: node.doc });
      } else if (isPlainObject(value)) {
        walk(node, value, `${prefix}${name}.`);
      }
    }
  };
  walk(SPEC, defaults, '');
  for (const [key, value, doc] of STREAM_KEY_DOCS) {
    rows.push({ key: `streams[].${key}`, env: null, default: value, doc });
  }
  return rows;
}
