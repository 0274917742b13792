/**
 * Loads the agent's configuration: schema defaults (config/default.json),
 * then a JSON file, then DMX_AGENT_* environment variables; checks it
 * strictly (unknown keys, types, ranges, and combinations that cannot work
 * on the kernel) and reports every problem at once, each by its key.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { hostname as systemHostname } from 'node:os';
import convict from 'convict';
import {
  configuredSizeimage,
  type PoolPlan,
  planStreamPool,
  rawSizeimage,
  SizingError,
  type SizingKey,
} from '../streams/sizing.js';
import {
  agentSchema,
  type ConfigProblem,
  type ConvictShape,
  describeValue,
  isPlainObject,
  ProblemList,
  readSim,
  readStream,
  schemaNode,
  sectionKeys,
  simAdapters,
  simDecoderNames,
  unknownKeyMessage,
} from './schema.js';
import type { AgentConfig, StreamConfig } from './types.js';

export type { ConfigKeyDescription, ConfigProblem } from './schema.js';
export { configFilePath, describeConfigKeys } from './schema.js';

/** The environment variable naming the config file when no file is given. */
export const CONFIG_FILE_ENV = 'DMX_AGENT_CONFIG';
export const REDACTED = '[redacted]';

/** Every problem of a configuration; the message lists them one per line. */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[];

  constructor(problems: ConfigProblem[], file: string | null) {
    const where = file !== null ? ` (${file})` : '';
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    const lines = problems.map((problem) => `  ${problem.key}: ${problem.message}`);
    super(`invalid configuration${where}, ${count}:\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadConfigOptions {
  /** A JSON file; undefined: the one DMX_AGENT_CONFIG names, if any; null: none. */
  file?: string | null;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** What an empty deviceId becomes; default os.hostname(). */
  hostname?: string;
  /** Layered over the file instead of reading overrideFile (config.set checks a change before writing it). */
  overrides?: Record<string, unknown>;
}

function readConfigFile(path: string, origin: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new ConfigError([{ key: origin, message: `cannot read the config file ${path}: ${reason}` }], path);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(
      [{ key: origin, message: `the config file ${path} is not valid JSON: ${(err as Error).message}` }],
      path,
    );
  }
  if (!isPlainObject(parsed)) {
    throw new ConfigError(
      [{ key: origin, message: `the config file ${path} must hold a JSON object, got ${describeValue(parsed)}` }],
      path,
    );
  }
  return parsed;
}

/** The override file's contents; a file not written yet is no change. */
export function readOverrideFile(path: string): Record<string, unknown> {
  try {
    readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
  }
  return readConfigFile(path, 'overrideFile');
}

/**
 * The file's fixed keys checked against the schema before convict sees them:
 * unknown keys, sections that are not objects and values of the wrong type
 * become problems and are left out. (Convict would coerce a string such as
 * "fast" into a number, NaN, and merge an object into a list; a file must
 * give the right types. Only environment variables, always strings, are
 * coerced.)
 */
function fileChecked(
  value: Record<string, unknown>,
  path: string[],
  sensitive: ReadonlySet<string>,
  problems: ProblemList,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, child] of Object.entries(value)) {
    const childPath = [...path, name];
    const key = childPath.join('.');
    const node = schemaNode(childPath);
    if (node === null) {
      problems.add(key, unknownKeyMessage(name, sectionKeys(path)));
    } else if (node.kind === 'section') {
      if (isPlainObject(child)) out[name] = fileChecked(child, childPath, sensitive, problems);
      else {
        const keys = sectionKeys(childPath).join(', ');
        problems.add(key, `must be an object with the keys ${keys}, got ${describeValue(child)}`);
      }
    } else {
      const problem = node.check(child);
      if (problem === null) out[name] = child;
      else problems.add(key, sensitive.has(key) ? problem : `${problem}, got ${describeValue(child)}`);
    }
  }
  return out;
}

/** A URL with the password of its userinfo replaced, or the string unchanged when it has none. */
export function redactUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return text;
  }
  if (url.password === '') return text;
  // Replaced in the text itself: URL's own serialisation would percent-encode the brackets.
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:)[^@/?#]*@/i, `$1${REDACTED}@`);
}

/** Convict's error lines turned into problems named by key, with the environment variable that set the value. */
function convictProblems(
  message: string,
  config: convict.Config<ConvictShape>,
  env: NodeJS.ProcessEnv,
  problems: ProblemList,
): void {
  const { envByKey, sensitive } = agentSchema();
  for (const line of message.split('\n')) {
    const undeclared = /^configuration param '(.+)' not declared in the schema$/.exec(line);
    if (undeclared) {
      problems.add(undeclared[1]!, 'unknown key: remove it');
      continue;
    }
    const missing = /^configuration param '(.+)' missing from config/.exec(line);
    if (missing) {
      problems.add(missing[1]!, 'missing: its section was replaced by something else');
      continue;
    }
    const invalid = /^([\w.]+): (.*?)(?:: value was .*)?$/.exec(line);
    if (!invalid) {
      problems.add('(config)', line);
      continue;
    }
    const key = invalid[1]!;
    let text = invalid[2]!;
    const value: unknown = config.has(key) ? config.get(key) : undefined;
    if (!sensitive.has(key)) text += `, got ${describeValue(value)}`;
    else if (typeof value === 'string' && key.endsWith('url')) text += `, got ${describeValue(redactUrl(value))}`;
    const variable = envByKey.get(key);
    if (variable !== undefined && env[variable] !== undefined) text += ` (set by ${variable})`;
    problems.add(key, text);
  }
}

const SIZING_KEYS: Readonly<Record<SizingKey, string>> = {
  size: 'pool.size',
  count: 'pool.count',
  latencyMs: 'pool.latencyMs',
  bufferingMs: 'pool.bufferingMs',
  bitrate: 'bitrate',
  decoder: 'sink.format',
};

function tuningText(stream: StreamConfig): string {
  return JSON.stringify(stream.tuning);
}

function sameTuning(a: StreamConfig, b: StreamConfig): boolean {
  const canonical = (stream: StreamConfig): string =>
    JSON.stringify(Object.entries(stream.tuning ?? {}).sort(([x], [y]) => x.localeCompare(y)));
  return canonical(a) === canonical(b);
}

/** The checks within one stream that need several of its fields. */
function checkStream(stream: StreamConfig, key: string, problems: ProblemList, preventKnownBad: boolean): void {
  const label = `stream '${stream.id}': `;
  if (!problems.under(`${key}.source`) && !problems.under(`${key}.filter`)) {
    if (stream.source === 'dvr' && stream.filter.output !== 'ts-tap') {
      problems.add(
        `${key}.filter.output`,
        `${label}a stream with source 'dvr' needs output 'ts-tap' (only DMX_OUT_TS_TAP data reaches the DVR), ` +
          `got '${stream.filter.output}': set filter.output to 'ts-tap' or leave it out`,
      );
    } else if (stream.source === 'demux' && stream.filter.output === 'ts-tap') {
      problems.add(
        `${key}.filter.output`,
        `${label}output 'ts-tap' sends the data to the DVR, not to demux${stream.demux} where this stream's pool ` +
          `is: use 'tsdemux-tap', or set source to 'dvr'`,
      );
    }
  }

  const { sink } = stream;
  if (sink.type === 'decoder' && !problems.under(`${key}.sink.format`) && sink.format.sizeimage !== null) {
    const { fourcc, width, height, sizeimage } = sink.format;
    const computed = rawSizeimage(fourcc, width, height);
    if (computed !== null && computed !== sizeimage) {
      problems.add(
        `${key}.sink.format.sizeimage`,
        `${label}sizeimage ${sizeimage} is given, but ${fourcc} ${width}x${height} is ${computed} bytes and the ` +
          `driver computes a raw format's sizeimage itself: remove sizeimage or set it to ${computed}`,
      );
    }
  }

  // The pool needs a good bitrate, pool and sink; a problem elsewhere in the stream does not hide its own.
  if (problems.under(`${key}.bitrate`) || problems.under(`${key}.pool`) || problems.under(`${key}.sink`)) return;
  // A compressed format without sizeimage: only the driver knows it, and the supervisor sizes the pool from
  // the sizeimage the driver grants. Nothing to check before that unless the size is fixed.
  if (sink.type === 'decoder' && configuredSizeimage(stream) === null && stream.pool.size === null) return;
  let plan: PoolPlan;
  try {
    // With prevention off, a pool the decoder cannot import is allowed on purpose (the kernel's own EINVAL
    // is the point); the pool itself must still be sound.
    plan = preventKnownBad ? planStreamPool(stream) : planStreamPool({ ...stream, sink: { type: 'discard' } });
  } catch (err) {
    if (!(err instanceof SizingError)) throw err;
    let sizingKey = SIZING_KEYS[err.key];
    if (err.key === 'decoder' && sink.type === 'decoder' && sink.format.sizeimage !== null) {
      sizingKey = 'sink.format.sizeimage';
    }
    problems.add(`${key}.${sizingKey}`, label + err.message);
    return;
  }
  const { growth } = stream.pool;
  if (growth.maxCount < plan.count) {
    const origin = stream.pool.count !== null ? 'pool.count' : 'derived from bufferingMs';
    problems.add(
      `${key}.pool.growth.maxCount`,
      `${label}growth.maxCount ${growth.maxCount} is below the pool count ${plan.count} (${origin}): raise ` +
        `maxCount to at least ${plan.count}, or lower the count`,
    );
  }
  if (sink.type === 'consumer' && sink.maxInFlight >= plan.count) {
    problems.add(
      `${key}.sink.maxInFlight`,
      `${label}maxInFlight ${sink.maxInFlight} lets the player hold all ${plan.count} buffers, leaving none queued ` +
        `in the kernel, which then drops data silently: use at most ${Math.max(1, plan.count - 2)}, or 0 for ` +
        'the pool count minus two',
    );
  }
}

/** The checks across streams, and against the simulated receiver. */
function checkStreams(
  streams: StreamConfig[],
  backend: AgentConfig['backend'],
  sim: AgentConfig['sim'],
  problems: ProblemList,
  preventKnownBad: boolean,
): void {
  const ids = new Map<string, number>();
  const dvrUsers = new Map<number, number>();
  const tuners = new Map<number, number>();
  const sockets = new Map<string, number>();
  const simulated = simAdapters(sim);
  const simDecoders = simDecoderNames(sim);
  const tunedAdapters = new Set(streams.filter((stream) => stream.tuning !== null).map((stream) => stream.adapter));
  const untunedReported = new Set<number>();

  streams.forEach((stream, index) => {
    const key = `streams[${index}]`;
    const label = `stream '${stream.id}': `;
    checkStream(stream, key, problems, preventKnownBad);

    if (!problems.under(`${key}.id`)) {
      const first = ids.get(stream.id);
      if (first !== undefined) {
        problems.add(
          `${key}.id`,
          `id '${stream.id}' is already used by streams[${first}]: give each stream its own id`,
        );
      } else {
        ids.set(stream.id, index);
      }
    }
    const adapterKnown = !problems.under(`${key}.adapter`);
    if (adapterKnown && stream.source === 'dvr' && !problems.under(`${key}.source`)) {
      const first = dvrUsers.get(stream.adapter);
      if (first !== undefined) {
        problems.add(
          `${key}.source`,
          `${label}adapter ${stream.adapter}'s DVR is already used by streams[${first}] ('${streams[first]!.id}'): ` +
            "the DVR node allows one O_RDWR opener and its pool needs O_RDWR; use source 'demux', or another adapter",
        );
      } else {
        dvrUsers.set(stream.adapter, index);
      }
    }
    if (adapterKnown && stream.tuning !== null && !problems.under(`${key}.tuning`)) {
      const first = tuners.get(stream.adapter);
      if (first === undefined) tuners.set(stream.adapter, index);
      else if (!sameTuning(streams[first]!, stream)) {
        problems.add(
          `${key}.tuning`,
          `${label}adapter ${stream.adapter}'s frontend is tuned to ${tuningText(streams[first]!)} by ` +
            `streams[${first}]; one frontend receives one multiplex: use the same tuning, null (the other stream ` +
            'tunes), or another adapter',
        );
      }
    }
    if (stream.sink.type === 'consumer' && !problems.under(`${key}.sink.socketPath`)) {
      const first = sockets.get(stream.sink.socketPath);
      if (first !== undefined) {
        problems.add(
          `${key}.sink.socketPath`,
          `${label}socket ${stream.sink.socketPath} is already used by streams[${first}]: give each consumer its own`,
        );
      } else {
        sockets.set(stream.sink.socketPath, index);
      }
    }

    if (backend !== 'sim' || problems.under('sim')) return;
    const adapter = simulated.find((candidate) => candidate.adapter === stream.adapter);
    if (adapterKnown && adapter === undefined) {
      const have = simulated.map((candidate) => candidate.adapter).join(', ') || 'none';
      problems.add(
        `${key}.adapter`,
        `${label}backend is 'sim' and the simulated receiver has no adapter ${stream.adapter} (it has ${have}): ` +
          'add it to sim.adapters, or use one it has',
      );
    }
    if (
      adapter?.requireTune &&
      !tunedAdapters.has(stream.adapter) &&
      !untunedReported.has(stream.adapter) &&
      !problems.under(`${key}.tuning`)
    ) {
      untunedReported.add(stream.adapter);
      problems.add(
        `${key}.tuning`,
        `${label}simulated adapter ${stream.adapter} sends nothing until its frontend is tuned (requireTune) and no ` +
          'stream on it has tuning: add tuning such as { "deliverySystem": "DVBT", "frequency": 474000000 }, or set ' +
          'requireTune false for that adapter in sim.adapters',
      );
    }
    const { sink } = stream;
    if (
      sink.type === 'decoder' &&
      !sink.decoder.startsWith('/dev/') &&
      !problems.under(`${key}.sink.decoder`) &&
      !simDecoders.includes(sink.decoder)
    ) {
      problems.add(
        `${key}.sink.decoder`,
        `${label}backend is 'sim' and the simulated receiver has no decoder '${sink.decoder}' (it has ` +
          `${simDecoders.join(', ') || 'none'}): add it to sim.decoders, or use one it has`,
      );
    }
  });
}

function checkFixedKeys(config: AgentConfig, problems: ProblemList): void {
  const { watermark } = config.health;
  if (!problems.under('health.watermark')) {
    if (watermark.low >= watermark.high) {
      problems.add(
        'health.watermark.high',
        `high ${watermark.high} must be above low ${watermark.low}: raise high or lower low`,
      );
    } else if (watermark.hysteresis >= watermark.high - watermark.low) {
      problems.add(
        'health.watermark.hysteresis',
        `hysteresis ${watermark.hysteresis} must be less than high - low (${Number((watermark.high - watermark.low).toFixed(4))}), ` +
          'or the level could never leave low or high: lower it',
      );
    }
  }
  const { backoffInitialMs, backoffMaxMs } = config.supervision;
  if (!problems.under('supervision') && backoffInitialMs > backoffMaxMs) {
    problems.add(
      'supervision.backoffMaxMs',
      `backoffMaxMs ${backoffMaxMs} is below backoffInitialMs ${backoffInitialMs}: raise it to at least ${backoffInitialMs}`,
    );
  }
  checkMqtt(config.mqtt, problems);
}

function checkMqtt(mqtt: AgentConfig['mqtt'], problems: ProblemList): void {
  if (problems.under('mqtt')) return;
  if (mqtt.reconnect.baseMs > mqtt.reconnect.capMs) {
    problems.add(
      'mqtt.reconnect.capMs',
      `capMs ${mqtt.reconnect.capMs} is below baseMs ${mqtt.reconnect.baseMs}: raise it to at least ${mqtt.reconnect.baseMs}`,
    );
  }
  if ((mqtt.tls.cert === '') !== (mqtt.tls.key === '')) {
    problems.add('mqtt.tls.key', 'a client certificate needs its key and a key its certificate: set both or neither');
  }
  for (const key of ['ca', 'cert', 'key'] as const) {
    const file = mqtt.tls[key];
    if (file === '') continue;
    let mode: number;
    try {
      mode = statSync(file).mode;
    } catch (err) {
      problems.add(`mqtt.tls.${key}`, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      continue;
    }
    // A private key others can read is a key someone else may already hold.
    if (key === 'key' && (mode & 0o077) !== 0) {
      problems.add(
        'mqtt.tls.key',
        `${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}): chmod 600 it (or 400)`,
      );
    }
  }
  if (mqtt.commands.publicKeyFile !== '') {
    try {
      statSync(mqtt.commands.publicKeyFile);
    } catch (err) {
      problems.add(
        'mqtt.commands.publicKeyFile',
        `cannot read ${mqtt.commands.publicKeyFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
    }
  }
}

/**
 * The agent's configuration: schema defaults, then the file (JSON), then the
 * environment. Throws ConfigError naming every problem by its key.
 */
export function loadConfig(options: LoadConfigOptions = {}): AgentConfig {
  const env = options.env ?? process.env;
  const fromEnv = options.file === undefined;
  const file = fromEnv ? env[CONFIG_FILE_ENV] || null : options.file;
  const origin = fromEnv ? CONFIG_FILE_ENV : '--config';
  const problems = new ProblemList();
  const fileValues = file !== null && file !== undefined ? readConfigFile(file, origin) : {};

  const { schema, sensitive } = agentSchema();
  const config = convict<ConvictShape>(schema, { env, args: [] });
  config.load(fileChecked(fileValues, [], sensitive, problems));
  // Remote changes (config.set) over the file, under the environment.
  const overridePath =
    typeof fileValues.overrideFile === 'string' ? fileValues.overrideFile : config.get('overrideFile');
  const overrides = options.overrides ?? (overridePath ? readOverrideFile(String(overridePath)) : {});
  if ('overrideFile' in overrides) {
    problems.add('overrideFile', `the override file may not move itself: remove overrideFile from ${overridePath}`);
  } else {
    config.load(fileChecked(overrides, [], sensitive, problems));
  }
  try {
    config.validate({ allowed: 'strict' });
  } catch (err) {
    convictProblems((err as Error).message, config, env, problems);
  }

  const values = config.getProperties();
  // Every fixed key has passed its format (or its problem is recorded); sim and streams are read next.
  const loaded = { ...values, sim: {}, streams: [] } as unknown as AgentConfig;
  if (!problems.under('sim')) loaded.sim = readSim(values.sim, problems);
  if (Array.isArray(values.streams)) {
    loaded.streams = values.streams.map((stream, index) => readStream(stream, index, problems));
  }
  checkStreams(loaded.streams, loaded.backend, loaded.sim, problems, loaded.supervision.preventKnownBad);
  checkFixedKeys(loaded, problems);

  if (loaded.deviceId === '' && !problems.under('deviceId')) {
    const fromCertificate = loaded.mqtt.tls.cert !== '' && !problems.under('mqtt.tls');
    const name = fromCertificate ? certificateCommonName(loaded.mqtt.tls.cert) : (options.hostname ?? systemHostname());
    const from = fromCertificate ? "the client certificate's CN" : 'the hostname';
    if (name !== null && DEVICE_ID_PATTERN.test(name)) loaded.deviceId = name;
    else {
      problems.add(
        'deviceId',
        `is empty, so ${from} would be used, but ${name === null ? 'there is none' : describeValue(name)}` +
          ' is not a valid MQTT topic level: set deviceId (or DMX_AGENT_DEVICE_ID)',
      );
    }
  }

  if (problems.items.length > 0) throw new ConfigError(problems.items, file ?? null);
  return loaded;
}

/** What an empty deviceId may become: one MQTT topic level, no wildcards or separators. */
const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The subject CN of a PEM certificate, or null. With a fleet broker that uses the certificate's identity
 * as the user name (deploy/mosquitto), the ACL confines the box to stb/<CN>/: the CN is its device id.
 */
function certificateCommonName(file: string): string | null {
  try {
    const subject = new X509Certificate(readFileSync(file)).subject;
    const names = subject.split('\n').filter((line) => line.startsWith('CN='));
    return names.length === 1 ? names[0]!.slice(3) : null;
  } catch {
    return null;
  }
}

/**
 * A deep copy of the config safe to print or log: passwords, and passwords in
 * the userinfo of any URL, are replaced by '[redacted]'. Empty passwords stay
 * empty (that none is set is no secret).
 */
export function redactConfig(config: AgentConfig): unknown {
  const redact = (value: unknown, name: string | null): unknown => {
    if (typeof value === 'string') {
      if (name !== null && /password|secret|token/i.test(name) && value !== '') return REDACTED;
      return redactUrl(value);
    }
    if (Array.isArray(value)) return value.map((item) => redact(item, null));
    if (isPlainObject(value)) {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, redact(item, key)]));
    }
    return value;
  };
  return redact(config, null);
}
