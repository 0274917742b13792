/**
 * Turns one command message (topic name, payload bytes, MQTT 5 properties) into
 * exactly one answer. It knows nothing of the MQTT client: the link passes each
 * message to handle() and publishes what respond() is given, so the whole
 * pipeline is testable without a broker.
 *
 * Commands are untrusted, so a request passes these checks in order, and the
 * first that fails answers with its code (and is reported through onRejected):
 *   payload-too-large  more than maxBytes (before any parsing)
 *   malformed-json     not UTF-8, or not JSON
 *   invalid-request    not an envelope { id, args?, exp?, iat?, sig? }, nested too
 *                      deeply, a key such as "__proto__", or a wildcard response topic
 *   unknown-command    no handler for the name
 *   not-allowed        not in the allow-list
 *   unsigned           signatures required but no sig or iat
 *   bad-signature      the signature does not verify for this device, command, id, args and iat
 *   duplicate-id       the id was already used within the window by another command or other args
 *   expired            exp in the past, or (signed) iat further than maxSkewMs from now
 *   invalid-args       args do not match the command's schema
 * then the handler runs; a throw answers with the error's own code when it
 * carries a usable one (CommandError, DmxError's 'EBUSY'), else handler-error.
 *
 * Duplicates: an accepted request (authentic, fresh, valid) stores its answer by
 * id for dedupWindowMs. The same id again gets that answer, sent to its own
 * response target, and the handler does not run again, even while the first run
 * is still going. Only accepted requests enter the store, so nobody without the
 * key can evict or pre-empt a signed command's entry. The duplicate check comes
 * before the freshness check: a QoS 1 redelivery of a command that already ran
 * gets its real answer rather than "expired".
 *
 * Signing (when requireSignature is set): the client signs, with Ed25519, the
 * UTF-8 bytes of canonicalJson([deviceId, name, id, args, iat]), where args is
 * {} when the request has none, and sends the signature as standard base64 in
 * `sig`. canonicalJson is JSON.stringify with object keys sorted by UTF-16 code
 * units and no whitespace (RFC 8785 for the values a request can hold).
 * `exp` is not signed: the signed iat, within maxSkewMs of the device clock,
 * bounds how long a captured command can be replayed, and the dedup store
 * refuses to run it twice inside that time (keep dedupWindowMs >= 2 * maxSkewMs).
 *
 * Answers go to the MQTT 5 response topic (with the correlation data) when the
 * request has one, else to defaultResponseTopic(name). A response topic with a
 * wildcard or control character is refused (answered on the fallback topic). A
 * name that is not a plain topic level, with no response topic, cannot be
 * answered: it is only reported.
 *
 * MQTT 5 message expiry needs nothing here: the broker discards an expired
 * message, also one queued for an offline persistent session, before delivery.
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import {
  ANSWER_ERROR_CODE_PATTERN,
  COMMAND_ARGS_SCHEMAS,
  type CommandArgs,
  type CommandName,
  type JsonSchema,
  REQUEST_ENVELOPE_SCHEMA,
  REQUEST_ID_PATTERN,
} from './command-schemas.js';

export const ROUTER_ERROR_CODES = [
  'payload-too-large',
  'malformed-json',
  'invalid-request',
  'unknown-command',
  'not-allowed',
  'unsigned',
  'bad-signature',
  'duplicate-id',
  'expired',
  'invalid-args',
  'handler-error',
  'internal-error',
] as const;

export type RouterErrorCode = (typeof ROUTER_ERROR_CODES)[number];

/** Thrown by a handler to answer with its own code: new CommandError('unknown-stream', 'no stream "x"'). */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type CommandAnswer =
  | { id: string; status: 'ok'; data: unknown }
  | { id: string | null; status: 'error'; error: { code: string; message: string } };

export interface ResponseTarget {
  topic: string;
  /** The request's MQTT 5 correlation data, sent back unchanged. */
  correlationData?: Buffer;
}

export interface CommandRejection {
  name: string;
  id: string | null;
  code: string;
  message: string;
  /** 'router' for a refused request, 'handler' for a handler that failed. */
  source: 'router' | 'handler';
}

export interface CommandContext {
  name: string;
  id: string;
  /** True when the request carried a verified signature. */
  signed: boolean;
  /** The router's clock when the request arrived. */
  receivedAt: number;
}

/** A handler's return value (or what its promise resolves to) becomes `data`; undefined becomes null. */
export type CommandHandler<Args = Record<string, unknown>> = (args: Args, context: CommandContext) => unknown;

/** Handlers of the contract's commands, typed by their args; other names are accepted with their own schema. */
export type CommandHandlers = { readonly [K in CommandName]?: CommandHandler<CommandArgs[K]> } & {
  readonly [name: string]: CommandHandler<never> | undefined;
};

export interface MessageProperties {
  responseTopic?: string;
  correlationData?: Buffer;
  messageExpiryInterval?: number;
}

export interface SignatureRequirement {
  /** SPKI PEM of the Ed25519 key that signs commands. */
  publicKeyPem: string;
  /** This device's id, part of the signed data so a command signed for one box is refused by another. */
  deviceId: string;
  /** How far iat may be from the device clock, either way. */
  maxSkewMs: number;
}

export interface CommandRouterOptions {
  handlers: CommandHandlers;
  /** Args schema per command name; default COMMAND_ARGS_SCHEMAS. Every handler needs one. */
  argsSchemas?: Readonly<Record<string, JsonSchema>>;
  /** Only these commands run; default every command with a handler. */
  allow?: readonly string[];
  /** Default 16384. */
  maxBytes?: number;
  /** Default 10 minutes. */
  dedupWindowMs?: number;
  /** Answers kept at most; the oldest go first. Default 1000. */
  dedupMax?: number;
  requireSignature?: SignatureRequirement;
  /** Default Date.now. */
  now?: () => number;
  respond: (target: ResponseTarget, answer: CommandAnswer) => void;
  onRejected: (rejection: CommandRejection) => void;
  /** Where to answer without an MQTT 5 response topic: <prefix>/<deviceId>/response/<name>. */
  defaultResponseTopic: (name: string) => string;
  /** Failures of respond or onRejected themselves (logged by the caller); default ignored. */
  onInternalError?: (err: unknown, what: string) => void;
}

/** Deeper JSON is refused before anything recursive (signature, fingerprint) walks it. */
export const MAX_JSON_DEPTH = 32;
const MAX_MESSAGE_CHARS = 300;
const MAX_RESPONSE_TOPIC_BYTES = 1024;
/** Keys that reach Object.prototype when an object is walked or merged by key. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
/** A name that is safe as one topic level of the fallback response topic. */
const SAFE_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const ID = new RegExp(REQUEST_ID_PATTERN);
const ERROR_CODE = new RegExp(ANSWER_ERROR_CODE_PATTERN);

/**
 * JSON with object keys sorted by UTF-16 code units and no whitespace: the
 * signed form of a command. Numbers and strings are JSON.stringify's, as in
 * RFC 8785. Only for JSON values (what JSON.parse returns).
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const members = Object.keys(record)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The bytes a command's Ed25519 signature covers (see the module comment). */
export function commandSigningBytes(
  deviceId: string,
  name: string,
  id: string,
  args: Record<string, unknown>,
  iat: number,
): Buffer {
  return Buffer.from(canonicalJson([deviceId, name, id, args, iat]), 'utf8');
}

interface Envelope {
  id: string;
  args?: Record<string, unknown>;
  exp?: number;
  iat?: number;
  sig?: string;
}

interface DedupEntry {
  /** Command and canonical args: the same id with anything else is not a duplicate but a conflict. */
  fingerprint: string;
  name: string;
  expiresAt: number;
  answer: Promise<CommandAnswer>;
}

/** A refusal on its way to an answer; thrown only inside the synchronous checks. */
class Refusal {
  constructor(
    readonly code: RouterErrorCode,
    readonly message: string,
    readonly id: string | null,
  ) {}
}

/** The one Ajv of the process, made on first use; only compiledValidator() touches it. */
let sharedAjv: Ajv | null = null;
/** Validators by schema object: schemas are Readonly and treated as immutable once compiled. */
const compiledValidators = new WeakMap<JsonSchema, ValidateFunction>();

/**
 * The validator of a schema, compiled once per process and shared by every
 * router: compiling is nearly all of a router's construction (milliseconds and
 * tens of KB per router), and a fleet simulator builds thousands of routers from
 * the same schema objects. Sharing is safe because a router calls a validator
 * and reads its `errors` synchronously, with nothing in between.
 * `addUsedSchema: false`: a schema's $id is not registered in the shared
 * instance, so two routers given different schemas with the same $id do not
 * collide as they would in one Ajv (the contract's schemas have no $id).
 */
export function compiledValidator(schema: JsonSchema): ValidateFunction {
  let validate = compiledValidators.get(schema);
  if (validate === undefined) {
    sharedAjv ??= new Ajv({ strict: true, allErrors: false, addUsedSchema: false });
    validate = sharedAjv.compile(schema);
    compiledValidators.set(schema, validate);
  }
  return validate;
}

export class CommandRouter {
  private readonly validateEnvelope: ValidateFunction;
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly handlers = new Map<string, CommandHandler>();
  private readonly allowed: ReadonlySet<string>;
  private readonly maxBytes: number;
  private readonly dedupWindowMs: number;
  private readonly dedupMax: number;
  private readonly publicKey: KeyObject | null;
  private readonly now: () => number;
  /** Insertion order is age order: eviction takes from the front. */
  private readonly answers = new Map<string, DedupEntry>();
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(private readonly options: CommandRouterOptions) {
    const schemas: Readonly<Record<string, JsonSchema>> = options.argsSchemas ?? COMMAND_ARGS_SCHEMAS;
    this.validateEnvelope = compiledValidator(REQUEST_ENVELOPE_SCHEMA);
    for (const [name, handler] of Object.entries(options.handlers)) {
      if (!handler) continue;
      if (!SAFE_NAME.test(name)) throw new RangeError(`command name "${name}" is not usable as a topic level`);
      const schema = Object.hasOwn(schemas, name) ? schemas[name] : undefined;
      // A handler without a schema would run on unchecked input.
      if (!schema) throw new RangeError(`command "${name}" has a handler but no args schema`);
      this.validators.set(name, compiledValidator(schema));
      // The args were validated against this command's schema before the call.
      this.handlers.set(name, handler as CommandHandler);
    }
    const allow = options.allow ?? [...this.handlers.keys()];
    for (const name of allow) {
      if (!this.handlers.has(name)) throw new RangeError(`allow-list names "${name}", which has no handler`);
    }
    this.allowed = new Set(allow);
    this.maxBytes = positiveInteger(options.maxBytes ?? 16_384, 'maxBytes');
    this.dedupWindowMs = positiveInteger(options.dedupWindowMs ?? 10 * 60_000, 'dedupWindowMs');
    this.dedupMax = positiveInteger(options.dedupMax ?? 1000, 'dedupMax');
    this.now = options.now ?? Date.now;
    this.publicKey = null;
    if (options.requireSignature) {
      const { publicKeyPem, deviceId, maxSkewMs } = options.requireSignature;
      positiveInteger(maxSkewMs, 'requireSignature.maxSkewMs');
      if (!deviceId) throw new RangeError('requireSignature.deviceId is empty');
      const key = createPublicKey(publicKeyPem);
      if (key.asymmetricKeyType !== 'ed25519') {
        throw new RangeError(`the command public key must be Ed25519, not ${key.asymmetricKeyType ?? 'unknown'}`);
      }
      this.publicKey = key;
    }
  }

  /** Answers kept for duplicates right now (for diagnostics and tests). */
  get dedupSize(): number {
    return this.answers.size;
  }

  /** Handles one message; never throws, always answers once (unless the answer has nowhere to go). */
  async handle(name: string, payload: Buffer, properties: MessageProperties = {}): Promise<void> {
    let target: ResponseTarget | null = null;
    let id: string | null = null;
    try {
      const receivedAt = this.now();
      const resolved = this.responseTarget(name, properties);
      target = resolved.target;
      if (resolved.problem) {
        id = peekId(payload, this.maxBytes);
        throw new Refusal('invalid-request', resolved.problem, id);
      }
      const accepted = this.check(name, payload, receivedAt);
      id = accepted.id;
      const answer = await accepted.answer;
      if (target) this.send(target, answer);
    } catch (err) {
      const refusal =
        err instanceof Refusal
          ? err
          : new Refusal('internal-error', `the command could not be handled: ${safeString(err)}`, id);
      this.reject(name, refusal.id, refusal.code, refusal.message, 'router');
      if (target) this.send(target, errorAnswer(refusal.id, refusal.code, refusal.message));
    }
  }

  /**
   * Every check up to the handler, synchronously, so that a duplicate arriving
   * while the first is being checked cannot slip past the dedup store.
   */
  private check(name: string, payload: Buffer, receivedAt: number): { id: string; answer: Promise<CommandAnswer> } {
    if (payload.length > this.maxBytes) {
      throw new Refusal(
        'payload-too-large',
        `the payload is ${payload.length} bytes, more than the limit of ${this.maxBytes}`,
        null,
      );
    }
    const request = this.parse(payload);
    const envelope = this.envelope(request);
    const { id } = envelope;
    const handler = this.handlers.get(name);
    if (!handler) throw new Refusal('unknown-command', `unknown command "${clip(name, 64)}"`, id);
    if (!this.allowed.has(name))
      throw new Refusal('not-allowed', `command "${name}" is not allowed on this device`, id);
    const args = envelope.args ?? {};
    const signed = this.verifySignature(name, envelope, args);

    const fingerprint = canonicalJson([name, args]);
    this.evictExpired(receivedAt);
    const earlier = this.answers.get(id);
    if (earlier) {
      if (earlier.fingerprint !== fingerprint) {
        const what = earlier.name === name ? 'with other args' : `by command "${earlier.name}"`;
        throw new Refusal('duplicate-id', `id "${id}" was already used ${what}; use a new id`, id);
      }
      return { id, answer: earlier.answer };
    }

    this.checkFreshness(envelope, receivedAt);
    const validate = this.validators.get(name)!;
    if (!validate(args)) throw new Refusal('invalid-args', describeErrors(validate.errors, 'args'), id);

    const answer = this.run(name, handler, args, { name, id, signed, receivedAt });
    this.answers.set(id, { fingerprint, name, expiresAt: receivedAt + this.dedupWindowMs, answer });
    while (this.answers.size > this.dedupMax) {
      const oldest = this.answers.keys().next().value;
      if (oldest === undefined) break;
      this.answers.delete(oldest);
    }
    return { id, answer };
  }

  private parse(payload: Buffer): unknown {
    let text: string;
    try {
      text = this.utf8.decode(payload);
    } catch {
      throw new Refusal('malformed-json', 'the payload is not valid UTF-8', null);
    }
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch (err) {
      const why = err instanceof SyntaxError ? `: ${clip(err.message, 120)}` : '';
      throw new Refusal('malformed-json', `the payload is not JSON${why}`, null);
    }
    const problem = structureProblem(request);
    if (problem) throw new Refusal('invalid-request', problem, peekIdOf(request));
    return request;
  }

  private envelope(request: unknown): Envelope {
    const id = peekIdOf(request);
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
      throw new Refusal('invalid-request', 'the request must be a JSON object {"id": ..., "args": {...}}', null);
    }
    if (!this.validateEnvelope(request)) {
      throw new Refusal('invalid-request', describeErrors(this.validateEnvelope.errors, ''), id);
    }
    return request as Envelope;
  }

  /** Returns whether the request was signed (and verified); throws when a signature is required and fails. */
  private verifySignature(name: string, envelope: Envelope, args: Record<string, unknown>): boolean {
    if (!this.publicKey || !this.options.requireSignature) return false;
    const { id, sig, iat } = envelope;
    if (sig === undefined || iat === undefined) {
      const missing = [sig === undefined ? 'sig' : '', iat === undefined ? 'iat' : ''].filter(Boolean).join(' and ');
      throw new Refusal('unsigned', `this device requires signed commands; the request has no ${missing}`, id);
    }
    const data = commandSigningBytes(this.options.requireSignature.deviceId, name, id, args, iat);
    let valid = false;
    try {
      valid = verify(null, data, this.publicKey, Buffer.from(sig, 'base64'));
    } catch {
      valid = false;
    }
    if (!valid) {
      throw new Refusal(
        'bad-signature',
        'the signature does not verify for this device, command, id, args and iat',
        envelope.id,
      );
    }
    return true;
  }

  private checkFreshness(envelope: Envelope, now: number): void {
    const { id, exp, iat } = envelope;
    if (exp !== undefined && exp <= now) {
      throw new Refusal('expired', `the command expired ${now - exp} ms ago (exp ${exp})`, id);
    }
    const skew = this.options.requireSignature?.maxSkewMs;
    if (skew !== undefined && iat !== undefined && Math.abs(now - iat) > skew) {
      const when = iat < now ? `${now - iat} ms ago` : `${iat - now} ms in the future`;
      throw new Refusal('expired', `the command was issued ${when}, more than the allowed ${skew} ms`, id);
    }
  }

  private async run(
    name: string,
    handler: CommandHandler,
    args: Record<string, unknown>,
    context: CommandContext,
  ): Promise<CommandAnswer> {
    try {
      const result = await handler(args, context);
      const data = result === undefined ? null : result;
      // The link serializes the answer; a result it cannot serialize must fail here, as an answer.
      JSON.stringify(data);
      return { id: context.id, status: 'ok', data };
    } catch (err) {
      const { code, message } = handlerFailure(err);
      this.reject(name, context.id, code, message, 'handler');
      return errorAnswer(context.id, code, message);
    }
  }

  private responseTarget(
    name: string,
    properties: MessageProperties,
  ): { target: ResponseTarget | null; problem?: string } {
    const fallback = (): ResponseTarget | null =>
      SAFE_NAME.test(name) ? { topic: this.options.defaultResponseTopic(name) } : null;
    const { responseTopic, correlationData } = properties;
    if (responseTopic === undefined) return { target: fallback() };
    const problem = responseTopicProblem(responseTopic);
    if (problem) return { target: fallback(), problem };
    return { target: correlationData ? { topic: responseTopic, correlationData } : { topic: responseTopic } };
  }

  private evictExpired(now: number): void {
    for (const [id, entry] of this.answers) {
      // Entries are in arrival order; a clock step backwards only delays eviction.
      if (entry.expiresAt > now) break;
      this.answers.delete(id);
    }
  }

  private send(target: ResponseTarget, answer: CommandAnswer): void {
    try {
      this.options.respond(target, answer);
    } catch (err) {
      this.options.onInternalError?.(err, 'respond');
    }
  }

  private reject(name: string, id: string | null, code: string, message: string, source: 'router' | 'handler'): void {
    try {
      this.options.onRejected({ name: clip(name, 64), id, code, message, source });
    } catch (err) {
      this.options.onInternalError?.(err, 'onRejected');
    }
  }
}

function errorAnswer(id: string | null, code: string, message: string): CommandAnswer {
  return { id, status: 'error', error: { code, message } };
}

function positiveInteger(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new RangeError(`${what} must be a positive integer, got ${value}`);
  return value;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The request's id when it has a well-formed one, so even a refusal of the rest can be matched. */
function peekIdOf(request: unknown): string | null {
  if (request === null || typeof request !== 'object' || Array.isArray(request)) return null;
  const id: unknown = (request as Record<string, unknown>).id;
  return typeof id === 'string' && ID.test(id) ? id : null;
}

function peekId(payload: Buffer, maxBytes: number): string | null {
  if (payload.length > maxBytes) return null;
  try {
    const request: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
    return structureProblem(request) ? null : peekIdOf(request);
  } catch {
    return null;
  }
}

/**
 * Too deep, or a key that reaches Object.prototype when a handler walks or
 * merges the value: refused anywhere in the request. Iterative, so a hostile
 * depth cannot overflow the stack.
 */
function structureProblem(request: unknown): string | null {
  const pending: { value: unknown; depth: number; path: string }[] = [{ value: request, depth: 0, path: '' }];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const { value, depth, path } = next;
    if (value === null || typeof value !== 'object') continue;
    if (depth >= MAX_JSON_DEPTH) return `the request is nested deeper than ${MAX_JSON_DEPTH} levels`;
    if (Array.isArray(value)) {
      value.forEach((item, index) => {
        pending.push({ value: item, depth: depth + 1, path: `${path}/${index}` });
      });
      continue;
    }
    for (const [key, item] of Object.entries(value)) {
      if (FORBIDDEN_KEYS.has(key)) return `the key "${key}" is not allowed (at ${path || '/'})`;
      pending.push({ value: item, depth: depth + 1, path: `${path}/${clip(key, 32)}` });
    }
  }
  return null;
}

function responseTopicProblem(topic: string): string | null {
  if (topic.length === 0) return 'the response topic is empty';
  if (/[+#]/.test(topic)) return 'the response topic contains a wildcard (+ or #)';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(topic)) return 'the response topic contains a control character';
  if (Buffer.byteLength(topic) > MAX_RESPONSE_TOPIC_BYTES) {
    return `the response topic is longer than ${MAX_RESPONSE_TOPIC_BYTES} bytes`;
  }
  return null;
}

/** ajv's first error as "args/stream must match pattern ...". */
function describeErrors(errors: ErrorObject[] | null | undefined, root: string): string {
  const error = errors?.[0];
  if (!error) return `${root || 'the request'} is invalid`;
  const path = `${root}${error.instancePath}` || '/';
  const params = error.params as Record<string, unknown>;
  let detail = error.message ?? 'is invalid';
  if (error.propertyName !== undefined) {
    // An error inside propertyNames: the key, not the value, is wrong.
    detail = `has the key ${JSON.stringify(clip(error.propertyName, 40))}, which is not a configuration key`;
  } else if (error.keyword === 'additionalProperties') {
    detail = `must not have the property ${JSON.stringify(clip(String(params.additionalProperty), 40))}`;
  } else if (error.keyword === 'not') {
    detail = 'must not name __proto__, constructor or prototype';
  } else if (error.keyword === 'enum') {
    detail = `must be one of ${(params.allowedValues as unknown[]).join(', ')}`;
  }
  return clip(`${path} ${detail}`, MAX_MESSAGE_CHARS);
}

function handlerFailure(err: unknown): { code: string; message: string } {
  if (err instanceof Error) {
    const code: unknown = (err as Error & { code?: unknown }).code;
    const message = clip(err.message || err.name, MAX_MESSAGE_CHARS);
    return { code: typeof code === 'string' && ERROR_CODE.test(code) ? code : 'handler-error', message };
  }
  return { code: 'handler-error', message: clip(`the handler failed: ${safeString(err)}`, MAX_MESSAGE_CHARS) };
}

/** String(value), for a thrown value whose toString may itself throw. */
function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return 'a value that cannot be shown';
  }
}
