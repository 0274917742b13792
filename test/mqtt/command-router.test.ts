import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { Ajv } from 'ajv';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type CommandAnswer,
  CommandError,
  type CommandHandler,
  type CommandHandlers,
  type CommandRejection,
  CommandRouter,
  type CommandRouterOptions,
  canonicalJson,
  commandSigningBytes,
  MAX_JSON_DEPTH,
  type MessageProperties,
  type ResponseTarget,
  ROUTER_ERROR_CODES,
} from '../../agent/mqtt/command-router.js';
import {
  ANSWER_SCHEMA,
  COMMAND_ARGS_SCHEMAS,
  COMMAND_NAMES,
  type CommandName,
  commandRequestSchema,
  REQUEST_ENVELOPE_SCHEMA,
} from '../../agent/mqtt/command-schemas.js';

const DEVICE = 'stb-0001';
const T0 = 1_700_000_000_000;
const validAnswer = new Ajv({ strict: true }).compile(ANSWER_SCHEMA);
/** Answers that did not match the published answer schema, checked after every test. */
const schemaViolations: unknown[] = [];

afterEach(() => {
  expect(schemaViolations).toEqual([]);
  schemaViolations.length = 0;
});

interface Sent {
  target: ResponseTarget;
  answer: CommandAnswer;
}

/** A router with a handler per command that records its calls, a settable clock and captured output. */
function setup(overrides: Partial<CommandRouterOptions> = {}) {
  const clock = { now: T0 };
  const sent: Sent[] = [];
  const rejections: CommandRejection[] = [];
  const calls: { name: string; args: unknown }[] = [];
  const handlers: Record<string, CommandHandler> = {};
  for (const name of COMMAND_NAMES) {
    handlers[name] = (args, context) => {
      calls.push({ name: context.name, args });
      return { handled: context.name };
    };
  }
  const router = new CommandRouter({
    handlers: handlers as CommandHandlers,
    now: () => clock.now,
    respond: (target, answer) => {
      sent.push({ target, answer });
      // Every answer, refusals included, must match the published answer schema.
      if (!validAnswer(answer)) schemaViolations.push({ answer, errors: validAnswer.errors });
    },
    onRejected: (rejection) => rejections.push(rejection),
    defaultResponseTopic: (name) => `stb/${DEVICE}/response/${name}`,
    ...overrides,
  });
  return { router, clock, sent, rejections, calls };
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function errorOf(answer: CommandAnswer | undefined): { code: string; message: string } {
  if (answer?.status !== 'error') throw new Error(`expected an error answer, got ${JSON.stringify(answer)}`);
  return answer.error;
}

/** Sends one request and checks it was refused with `code`: answered once, reported once, not run. */
async function expectRefused(
  context: ReturnType<typeof setup>,
  name: string,
  payload: Buffer,
  code: string,
  id: string | null,
  properties?: MessageProperties,
): Promise<string> {
  const before = { sent: context.sent.length, rejections: context.rejections.length, calls: context.calls.length };
  await expect(context.router.handle(name, payload, properties)).resolves.toBeUndefined();
  expect(context.sent.length).toBe(before.sent + 1);
  expect(context.rejections.length).toBe(before.rejections + 1);
  expect(context.calls.length).toBe(before.calls);
  const answer = context.sent.at(-1)!.answer;
  expect(answer.id).toBe(id);
  const error = errorOf(answer);
  expect(error.code).toBe(code);
  expect(context.rejections.at(-1)).toEqual({ name, id, code, message: error.message, source: 'router' });
  return error.message;
}

describe('CommandRouter: successful commands', () => {
  it('runs the handler with the validated args and answers ok on the fallback topic', async () => {
    const handler = vi.fn((args: { stream: string; count?: number }) => ({ resized: args }));
    const { router, sent, rejections } = setup({ handlers: { 'pool.resize': handler } });
    await router.handle('pool.resize', json({ id: 'r-1', args: { stream: 'main', count: 8 } }));
    expect(handler).toHaveBeenCalledTimes(1);
    expect(handler).toHaveBeenCalledWith(
      { stream: 'main', count: 8 },
      { name: 'pool.resize', id: 'r-1', signed: false, receivedAt: T0 },
    );
    expect(sent).toEqual([
      {
        target: { topic: `stb/${DEVICE}/response/pool.resize` },
        answer: { id: 'r-1', status: 'ok', data: { resized: { stream: 'main', count: 8 } } },
      },
    ]);
    expect(rejections).toEqual([]);
  });

  it('passes {} when args are absent, awaits async handlers and answers data null for undefined', async () => {
    const handler = vi.fn(async (_args: Record<string, never>) => undefined);
    const { router, sent } = setup({ handlers: { status: handler } });
    await router.handle('status', json({ id: 's-1' }));
    expect(handler.mock.calls[0]?.[0]).toEqual({});
    expect(sent[0]?.answer).toEqual({ id: 's-1', status: 'ok', data: null });
  });

  const validArgs: Record<CommandName, Record<string, unknown>[]> = {
    status: [{}],
    streams: [{}],
    'pool.resize': [
      { stream: 'main', count: 2 },
      { stream: 'main', size: 188 },
      { stream: 'hd_1-x', count: 32, size: 4096 * 188 },
    ],
    'stream.restart': [{ stream: 'main' }],
    'stream.stop': [{ stream: '0' }],
    'stream.start': [{ stream: 'a'.repeat(31) }],
    'config.get': [{}, { key: 'health' }, { key: 'health.watermark.low' }, { key: 'streams.0.pool.count' }],
    'config.set': [{ values: { 'health.intervalMs': 5000 } }, { values: { log: { level: 'debug' } } }],
    probe: [{}],
    'diag.dump': [{}, { stream: 'main' }],
    'log.level': [{ level: 'debug' }, { level: 'silent' }],
    'telemetry.interval': [{ ms: 1000 }, { ms: 3_600_000 }],
  };

  it.each(COMMAND_NAMES.flatMap((name) => validArgs[name].map((args) => [name, args] as const)))(
    'accepts %s with %j',
    async (name, args) => {
      const { router, sent, calls } = setup();
      await router.handle(name, json({ id: 'ok-1', args }));
      expect(sent[0]?.answer).toEqual({ id: 'ok-1', status: 'ok', data: { handled: name } });
      expect(calls).toEqual([{ name, args }]);
    },
  );
});

describe('CommandRouter: refusals, each answered and reported', () => {
  it('refuses a payload over maxBytes before parsing it (no id even when it has one)', async () => {
    const context = setup({ maxBytes: 64 });
    const payload = json({ id: 'big', args: { stream: 'x'.repeat(100) } });
    const message = await expectRefused(context, 'stream.stop', payload, 'payload-too-large', null);
    expect(message).toContain('64');
  });

  it('refuses a 1 MB payload with the default limit', async () => {
    const context = setup();
    const payload = Buffer.from(`{"id":"m","args":{"stream":"${'a'.repeat(1 << 20)}"}}`);
    await expectRefused(context, 'stream.stop', payload, 'payload-too-large', null);
  });

  it.each([
    ['truncated JSON', Buffer.from('{"id":"1",')],
    ['not JSON at all', Buffer.from('stop everything')],
    ['an empty payload', Buffer.alloc(0)],
    ['non-UTF-8 bytes', Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
    ['a lone surrogate half in UTF-8 form', Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22])],
  ])('refuses %s as malformed-json', async (_what, payload) => {
    await expectRefused(setup(), 'status', payload, 'malformed-json', null);
  });

  it.each([
    ['an array', [], null],
    ['a string', 'status', null],
    ['null', null, null],
    ['a number', 42, null],
    ['no id', { args: {} }, null],
    ['an empty id', { id: '' }, null],
    ['an over-long id', { id: 'x'.repeat(129) }, null],
    ['a numeric id', { id: 7 }, null],
    ['an id with a slash', { id: 'a/b' }, null],
    ['args that are an array', { id: 'q', args: [] }, 'q'],
    ['args that are a string', { id: 'q', args: 'main' }, 'q'],
    ['an unknown envelope field', { id: 'q', args: {}, reply: 'x' }, 'q'],
    ['exp as a string', { id: 'q', exp: 'tomorrow' }, 'q'],
    ['a negative iat', { id: 'q', iat: -1 }, 'q'],
    ['a sig that is not base64 Ed25519', { id: 'q', sig: 'abc' }, 'q'],
  ])('refuses %s as invalid-request', async (_what, request, id) => {
    await expectRefused(setup(), 'status', json(request), 'invalid-request', id);
  });

  it('names the failing path in an envelope error', async () => {
    const message = await expectRefused(setup(), 'status', json({ id: 'q', exp: 'x' }), 'invalid-request', 'q');
    expect(message).toMatch(/^\/exp must be integer/);
  });

  it('refuses an unknown command, keeping the id', async () => {
    const message = await expectRefused(setup(), 'reboot', json({ id: 'u' }), 'unknown-command', 'u');
    expect(message).toContain('reboot');
  });

  it('refuses a command outside the allow-list, and runs the allowed ones', async () => {
    const context = setup({ allow: ['status', 'streams'] });
    await expectRefused(context, 'stream.stop', json({ id: 'n', args: { stream: 'main' } }), 'not-allowed', 'n');
    await context.router.handle('status', json({ id: 'y' }));
    expect(context.calls.map((c) => c.name)).toEqual(['status']);
  });

  it.each([
    ['a device path as stream id', 'stream.stop', { stream: '/dev/dvb/adapter0/demux0' }, '/stream'],
    ['a relative path as stream id', 'stream.restart', { stream: '../x' }, '/stream'],
    ['an upper-case stream id', 'stream.start', { stream: 'Main' }, '/stream'],
    ['an over-long stream id', 'diag.dump', { stream: 'a'.repeat(32) }, '/stream'],
    ['a missing stream', 'stream.stop', {}, ''],
    ['a numeric stream', 'stream.stop', { stream: 1 }, '/stream'],
    ['an extra argument', 'stream.stop', { stream: 'main', device: '/dev/dvb/adapter0/demux0' }, ''],
    ['a resize with neither count nor size', 'pool.resize', { stream: 'main' }, ''],
    ['a count of 1', 'pool.resize', { stream: 'main', count: 1 }, '/count'],
    ['a count of 33', 'pool.resize', { stream: 'main', count: 33 }, '/count'],
    ['a fractional count', 'pool.resize', { stream: 'main', count: 2.5 }, '/count'],
    ['a count as a string', 'pool.resize', { stream: 'main', count: '8' }, '/count'],
    ['a size not a multiple of 188', 'pool.resize', { stream: 'main', size: 4096 }, '/size'],
    ['a size past the kernel clamp', 'pool.resize', { stream: 'main', size: 4097 * 188 }, '/size'],
    ['an unknown log level', 'log.level', { level: 'verbose' }, '/level'],
    ['a telemetry interval under 1 s', 'telemetry.interval', { ms: 10 }, '/ms'],
    ['a config key with a slash', 'config.get', { key: 'a/b' }, '/key'],
    ['a config key reaching the prototype', 'config.get', { key: 'constructor' }, '/key'],
    ['a nested config key reaching the prototype', 'config.get', { key: 'health.prototype' }, '/key'],
    ['config.set without values', 'config.set', {}, ''],
    ['config.set with empty values', 'config.set', { values: {} }, '/values'],
    ['config.set with a path as key', 'config.set', { values: { '../etc/passwd': 1 } }, '/values'],
    ['config.set with a prototype key path', 'config.set', { values: { 'health.constructor': 1 } }, '/values'],
    ['args on a command without args', 'status', { verbose: true }, ''],
  ])('refuses %s as invalid-args, naming the path', async (_what, name, args, path) => {
    const message = await expectRefused(setup(), name, json({ id: 'a-1', args }), 'invalid-args', 'a-1');
    expect(message.startsWith(`args${path} `)).toBe(true);
  });

  it('names a bad configuration key in the message', async () => {
    const args = { values: { 'log.level': 'debug', '../etc/passwd': 1 } };
    const message = await expectRefused(setup(), 'config.set', json({ id: 'e', args }), 'invalid-args', 'e');
    expect(message).toBe('args/values has the key "../etc/passwd", which is not a configuration key');
  });

  it('names the unexpected property in the message', async () => {
    const args = { stream: 'main', device: '/dev/dvb/adapter0/demux0' };
    const message = await expectRefused(setup(), 'stream.stop', json({ id: 'e', args }), 'invalid-args', 'e');
    expect(message).toBe('args must not have the property "device"');
  });

  it('refuses JSON nested deeper than the limit (iteratively, no stack overflow)', async () => {
    const context = setup();
    const deep = `{"id":"d","args":{"values":${'['.repeat(5000)}${']'.repeat(5000)}}}`;
    const message = await expectRefused(context, 'config.set', Buffer.from(deep), 'invalid-request', 'd');
    expect(message).toContain(String(MAX_JSON_DEPTH));

    const huge = setup({ maxBytes: 4 << 20 });
    const deeper = `{"id":"d","args":{"values":{"a":${'{"a":'.repeat(200_000)}1${'}'.repeat(200_000)}}}}`;
    await expect(huge.router.handle('config.set', Buffer.from(deeper))).resolves.toBeUndefined();
    expect(errorOf(huge.sent[0]?.answer).code).toMatch(/^(invalid-request|malformed-json)$/);
    expect(huge.calls).toEqual([]);
  });

  it.each([
    ['__proto__ in args', '{"id":"p","args":{"stream":"main","__proto__":{"polluted":true}}}', 'stream.stop'],
    [
      '__proto__ deep in config values',
      '{"id":"p","args":{"values":{"health":{"__proto__":{"polluted":1}}}}}',
      'config.set',
    ],
    [
      'constructor in config values',
      '{"id":"p","args":{"values":{"log":{"constructor":{"prototype":1}}}}}',
      'config.set',
    ],
    ['__proto__ in the envelope', '{"id":"p","__proto__":{"polluted":true}}', 'status'],
  ])('refuses %s without polluting any prototype', async (_what, payload, name) => {
    const message = await expectRefused(setup(), name, Buffer.from(payload), 'invalid-request', 'p');
    expect(message).toMatch(/the key "(__proto__|constructor)" is not allowed/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('uses only the documented router codes', () => {
    expect(new Set(ROUTER_ERROR_CODES).size).toBe(ROUTER_ERROR_CODES.length);
    expect(ROUTER_ERROR_CODES).toEqual(
      expect.arrayContaining([
        'payload-too-large',
        'malformed-json',
        'invalid-request',
        'unknown-command',
        'not-allowed',
        'expired',
        'unsigned',
        'bad-signature',
        'invalid-args',
        'handler-error',
      ]),
    );
  });
});

describe('CommandRouter: handler failures', () => {
  async function failWith(thrown: () => unknown) {
    const context = setup({ handlers: { 'stream.restart': thrown } });
    await context.router.handle('stream.restart', json({ id: 'h', args: { stream: 'main' } }));
    expect(context.sent).toHaveLength(1);
    expect(context.rejections).toHaveLength(1);
    const error = errorOf(context.sent[0]?.answer);
    expect(context.rejections[0]).toEqual({ name: 'stream.restart', id: 'h', ...error, source: 'handler' });
    return error;
  }

  it("answers with a CommandError's own code", async () => {
    const error = await failWith(() => {
      throw new CommandError('unknown-stream', 'no stream "main"');
    });
    expect(error).toEqual({ code: 'unknown-stream', message: 'no stream "main"' });
  });

  it('keeps the code of a native error (EBUSY) and of a rejected promise', async () => {
    const busy = Object.assign(new Error('DMX_REQBUFS: device busy'), { code: 'EBUSY' });
    expect(await failWith(() => Promise.reject(busy))).toEqual({ code: 'EBUSY', message: 'DMX_REQBUFS: device busy' });
  });

  it('answers handler-error for errors without a usable code', async () => {
    expect(
      await failWith(() => {
        throw new Error('boom');
      }),
    ).toEqual({ code: 'handler-error', message: 'boom' });
    const odd = Object.assign(new Error('odd'), { code: 'has spaces and "quotes"' });
    expect((await failWith(() => Promise.reject(odd))).code).toBe('handler-error');
    const numeric = Object.assign(new Error('numeric'), { code: -16 });
    expect((await failWith(() => Promise.reject(numeric))).code).toBe('handler-error');
  });

  it('answers handler-error for a thrown non-Error and for a result that cannot be serialized', async () => {
    expect(
      await failWith(() => {
        throw 'plain string';
      }),
    ).toEqual({ code: 'handler-error', message: 'the handler failed: plain string' });
    expect((await failWith(() => ({ big: 10n }))).code).toBe('handler-error');
    const hostile = {
      toString() {
        throw new Error('no');
      },
    };
    expect(
      await failWith(() => {
        throw hostile;
      }),
    ).toEqual({ code: 'handler-error', message: 'the handler failed: a value that cannot be shown' });
  });
});

describe('CommandRouter: duplicate ids', () => {
  it('answers a duplicate with the stored answer without running the handler again', async () => {
    const { router, sent, calls, rejections } = setup();
    const request = json({ id: 'dup', args: { stream: 'main' } });
    await router.handle('stream.restart', request);
    await router.handle('stream.restart', request, {
      responseTopic: 'client/7/answers',
      correlationData: Buffer.from('c2'),
    });
    expect(calls).toHaveLength(1);
    expect(sent).toHaveLength(2);
    expect(sent[1]?.answer).toBe(sent[0]?.answer);
    // The repeat is answered where the repeat asked.
    expect(sent[1]?.target).toEqual({ topic: 'client/7/answers', correlationData: Buffer.from('c2') });
    expect(rejections).toEqual([]);
  });

  it('replays a failure too, without running again', async () => {
    let runs = 0;
    const { router, sent } = setup({
      handlers: {
        'stream.start': () => {
          runs += 1;
          throw new CommandError('unknown-stream', `run ${runs}`);
        },
      },
    });
    const request = json({ id: 'f', args: { stream: 'x' } });
    await router.handle('stream.start', request);
    await router.handle('stream.start', request);
    expect(runs).toBe(1);
    expect(errorOf(sent[1]?.answer)).toEqual({ code: 'unknown-stream', message: 'run 1' });
  });

  it('makes a duplicate that arrives while the first still runs wait for its answer', async () => {
    let finish: (value: unknown) => void = () => {};
    const handler = vi.fn(() => new Promise((resolve) => (finish = resolve)));
    const { router, sent } = setup({ handlers: { probe: handler } });
    const request = json({ id: 'c' });
    const first = router.handle('probe', request);
    const second = router.handle('probe', request);
    const third = router.handle('probe', request);
    await Promise.resolve();
    expect(sent).toHaveLength(0);
    finish({ adapters: 1 });
    await Promise.all([first, second, third]);
    expect(handler).toHaveBeenCalledTimes(1);
    expect(sent.map((s) => s.answer)).toEqual(Array(3).fill({ id: 'c', status: 'ok', data: { adapters: 1 } }));
  });

  it('refuses the same id with other args or for another command as duplicate-id', async () => {
    const context = setup();
    await context.router.handle('stream.stop', json({ id: 'k', args: { stream: 'main' } }));
    await expectRefused(context, 'stream.stop', json({ id: 'k', args: { stream: 'other' } }), 'duplicate-id', 'k');
    const message = await expectRefused(
      context,
      'stream.start',
      json({ id: 'k', args: { stream: 'main' } }),
      'duplicate-id',
      'k',
    );
    expect(message).toContain('stream.stop');
    expect(context.calls).toHaveLength(1);
  });

  it('treats args with another key order as the same request', async () => {
    const { router, calls, sent } = setup();
    await router.handle('pool.resize', Buffer.from('{"id":"o","args":{"stream":"main","count":4}}'));
    await router.handle('pool.resize', Buffer.from('{"args":{"count":4,"stream":"main"},"id":"o"}'));
    expect(calls).toHaveLength(1);
    expect(sent[1]?.answer.status).toBe('ok');
  });

  it('runs the id again once the window has passed', async () => {
    const context = setup({ dedupWindowMs: 60_000 });
    const request = json({ id: 'w' });
    await context.router.handle('status', request);
    context.clock.now = T0 + 59_999;
    await context.router.handle('status', request);
    expect(context.calls).toHaveLength(1);
    context.clock.now = T0 + 60_000;
    await context.router.handle('status', request);
    expect(context.calls).toHaveLength(2);
  });

  it('does not store refusals: a corrected request with the same id runs', async () => {
    const context = setup();
    await expectRefused(context, 'stream.stop', json({ id: 'fix', args: { stream: '../x' } }), 'invalid-args', 'fix');
    await context.router.handle('stream.stop', json({ id: 'fix', args: { stream: 'main' } }));
    expect(context.calls).toEqual([{ name: 'stream.stop', args: { stream: 'main' } }]);
  });

  it('answers a redelivery of a command that already ran even after its exp', async () => {
    const context = setup();
    const request = json({ id: 'r', exp: T0 + 1000 });
    await context.router.handle('status', request);
    context.clock.now = T0 + 5000;
    await context.router.handle('status', request);
    expect(context.calls).toHaveLength(1);
    expect(context.sent.map((s) => s.answer.status)).toEqual(['ok', 'ok']);
  });

  it('keeps at most dedupMax answers, dropping the oldest', async () => {
    const context = setup({ dedupMax: 3 });
    for (const id of ['1', '2', '3', '4']) await context.router.handle('status', json({ id }));
    expect(context.router.dedupSize).toBe(3);
    await context.router.handle('status', json({ id: '4' }));
    expect(context.calls).toHaveLength(4);
    // '1' was evicted: it runs again (and now '2' is the oldest and goes).
    await context.router.handle('status', json({ id: '1' }));
    expect(context.calls).toHaveLength(5);
    expect(context.router.dedupSize).toBe(3);
  });

  it('stays bounded under a flood of unique ids', async () => {
    const context = setup({ dedupMax: 50 });
    for (let i = 0; i < 2000; i += 1) await context.router.handle('status', json({ id: `flood-${i}` }));
    expect(context.router.dedupSize).toBe(50);
  });
});

describe('CommandRouter: expiry', () => {
  it('refuses a command whose exp has passed, and runs one whose exp is ahead', async () => {
    const context = setup();
    const message = await expectRefused(context, 'status', json({ id: 'x1', exp: T0 - 1 }), 'expired', 'x1');
    expect(message).toContain('1 ms ago');
    await expectRefused(context, 'status', json({ id: 'x2', exp: T0 }), 'expired', 'x2');
    await context.router.handle('status', json({ id: 'x3', exp: T0 + 1 }));
    expect(context.calls).toHaveLength(1);
  });

  it('ignores iat when signatures are not required', async () => {
    const context = setup();
    await context.router.handle('status', json({ id: 'i', iat: 0 }));
    expect(context.calls).toHaveLength(1);
  });
});

describe('CommandRouter: signed commands', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519');
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const MAX_SKEW = 30_000;

  function signedSetup(overrides: Partial<CommandRouterOptions> = {}) {
    return setup({ requireSignature: { publicKeyPem, deviceId: DEVICE, maxSkewMs: MAX_SKEW }, ...overrides });
  }

  interface Signing {
    device?: string;
    name?: string;
    key?: KeyObject;
    /** The iat sent; signedIat (default: the same) is the one signed. */
    iat?: number;
    signedIat?: number;
    signedArgs?: Record<string, unknown>;
  }

  /** A request for `name` with `args`, signed as described by `signing` (by default: correctly). */
  function signed(name: string, id: string, args: Record<string, unknown>, signing: Signing = {}) {
    const iat = signing.iat ?? T0;
    const data = commandSigningBytes(
      signing.device ?? DEVICE,
      signing.name ?? name,
      id,
      signing.signedArgs ?? args,
      signing.signedIat ?? iat,
    );
    const sig = sign(null, data, signing.key ?? privateKey).toString('base64');
    return json({ id, args, iat, sig });
  }

  it('runs a correctly signed command and tells the handler it was signed', async () => {
    const handler = vi.fn(() => 'restarted');
    const context = signedSetup({ handlers: { 'stream.restart': handler } });
    await context.router.handle('stream.restart', signed('stream.restart', 's1', { stream: 'main' }));
    expect(context.sent[0]?.answer).toEqual({ id: 's1', status: 'ok', data: 'restarted' });
    expect(handler).toHaveBeenCalledWith(
      { stream: 'main' },
      { name: 'stream.restart', id: 's1', signed: true, receivedAt: T0 },
    );
  });

  it('signs absent args as {} and does not depend on key order', async () => {
    const context = signedSetup();
    const sig = sign(null, commandSigningBytes(DEVICE, 'status', 'n1', {}, T0), privateKey).toString('base64');
    await context.router.handle('status', json({ id: 'n1', iat: T0, sig }));
    const resize = sign(
      null,
      commandSigningBytes(DEVICE, 'pool.resize', 'n2', { stream: 'main', count: 4 }, T0),
      privateKey,
    ).toString('base64');
    await context.router.handle(
      'pool.resize',
      json({ id: 'n2', args: { count: 4, stream: 'main' }, iat: T0, sig: resize }),
    );
    expect(context.calls.map((c) => c.name)).toEqual(['status', 'pool.resize']);
  });

  it('refuses a command without sig or without iat as unsigned', async () => {
    const context = signedSetup();
    const noSig = await expectRefused(context, 'status', json({ id: 'u1', iat: T0 }), 'unsigned', 'u1');
    expect(noSig).toContain('no sig');
    const full = JSON.parse(signed('status', 'u2', {}).toString()) as Record<string, unknown>;
    delete full.iat;
    const noIat = await expectRefused(context, 'status', json(full), 'unsigned', 'u2');
    expect(noIat).toContain('no iat');
  });

  it.each<[string, Signing]>([
    ['another key', { key: other.privateKey }],
    ['another device', { device: 'stb-0002' }],
    ['other args', { signedArgs: { stream: 'other' } }],
    ['another command', { name: 'stream.start' }],
    ['another iat', { signedIat: T0 - 1 }],
  ])('refuses a signature made with %s as bad-signature', async (_what, signing) => {
    const context = signedSetup();
    await expectRefused(
      context,
      'stream.stop',
      signed('stream.stop', 'b1', { stream: 'main' }, signing),
      'bad-signature',
      'b1',
    );
  });

  it('refuses a well-formed but wrong signature', async () => {
    const context = signedSetup();
    const request = JSON.parse(signed('status', 'b2', {}).toString()) as { sig: string };
    const bytes = Buffer.from(request.sig, 'base64');
    bytes[0] = (bytes[0] ?? 0) ^ 0xff;
    request.sig = bytes.toString('base64');
    await expectRefused(context, 'status', json(request), 'bad-signature', 'b2');
  });

  it('refuses an iat further than maxSkewMs from the clock, either way, as expired', async () => {
    const context = signedSetup();
    const old = await expectRefused(
      context,
      'status',
      signed('status', 'e1', {}, { iat: T0 - MAX_SKEW - 1 }),
      'expired',
      'e1',
    );
    expect(old).toContain('ago');
    const future = await expectRefused(
      context,
      'status',
      signed('status', 'e2', {}, { iat: T0 + MAX_SKEW + 1 }),
      'expired',
      'e2',
    );
    expect(future).toContain('future');
    await context.router.handle('status', signed('status', 'e3', {}, { iat: T0 - MAX_SKEW }));
    expect(context.calls).toHaveLength(1);
  });

  it('does not let a forged request take an id from the signed one that follows', async () => {
    const context = signedSetup();
    const forged = signed('stream.stop', 'take', { stream: 'main' }, { key: other.privateKey });
    await expectRefused(context, 'stream.stop', forged, 'bad-signature', 'take');
    await context.router.handle('stream.stop', signed('stream.stop', 'take', { stream: 'main' }));
    expect(context.calls).toHaveLength(1);
    expect(context.sent.at(-1)?.answer.status).toBe('ok');
  });

  it('answers a replay of a signed command from the store, never running it twice', async () => {
    const context = signedSetup();
    const request = signed('stream.restart', 'rp', { stream: 'main' });
    await context.router.handle('stream.restart', request);
    context.clock.now = T0 + 5 * 60_000;
    await context.router.handle('stream.restart', request);
    expect(context.calls).toHaveLength(1);
    // Past the dedup window the replay meets the iat check.
    context.clock.now = T0 + 11 * 60_000;
    await expectRefused(context, 'stream.restart', request, 'expired', 'rp');
  });

  it('refuses a key that is not Ed25519 at construction', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pem = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(() => setup({ requireSignature: { publicKeyPem: pem, deviceId: DEVICE, maxSkewMs: 1000 } })).toThrow(
      /Ed25519/,
    );
  });
});

describe('CommandRouter: response target', () => {
  it('answers on the MQTT 5 response topic with the correlation data', async () => {
    const { router, sent } = setup();
    const correlationData = Buffer.from([0, 1, 2, 255]);
    await router.handle('streams', json({ id: 't1' }), { responseTopic: 'app/ops-1/replies', correlationData });
    expect(sent[0]?.target).toEqual({ topic: 'app/ops-1/replies', correlationData });
  });

  it('answers on the response topic alone when there is no correlation data', async () => {
    const { router, sent } = setup();
    await router.handle('streams', json({ id: 't2' }), { responseTopic: 'app/replies', messageExpiryInterval: 30 });
    expect(sent[0]?.target).toEqual({ topic: 'app/replies' });
  });

  it('answers refusals on the response topic too', async () => {
    const context = setup();
    const correlationData = Buffer.from('abc');
    await expectRefused(context, 'status', Buffer.from('{'), 'malformed-json', null, {
      responseTopic: 'app/replies',
      correlationData,
    });
    expect(context.sent[0]?.target).toEqual({ topic: 'app/replies', correlationData });
  });

  it.each([
    ['a + wildcard', 'stb/+/cmd/status'],
    ['a # wildcard', 'stb/#'],
    ['a control character', 'app/\u0000replies'],
    ['nothing', ''],
  ])('refuses a response topic with %s, answering on the fallback topic', async (_what, responseTopic) => {
    const context = setup();
    await expectRefused(context, 'stream.stop', json({ id: 'w1', args: { stream: 'main' } }), 'invalid-request', 'w1', {
      responseTopic,
    });
    expect(context.sent[0]?.target).toEqual({ topic: `stb/${DEVICE}/response/stream.stop` });
  });

  it('only reports a command whose name is no plain topic level and that has no response topic', async () => {
    const { router, sent, rejections } = setup();
    await router.handle('x'.repeat(500), json({ id: 'z' }));
    await router.handle('a b', json({ id: 'z' }));
    expect(sent).toEqual([]);
    expect(rejections.map((r) => [r.code, r.name.length <= 64])).toEqual([
      ['unknown-command', true],
      ['unknown-command', true],
    ]);
  });
});

describe('CommandRouter: robustness', () => {
  it('never throws when respond or onRejected throw', async () => {
    const onInternalError = vi.fn();
    const { router } = setup({
      respond: () => {
        throw new Error('publish failed');
      },
      onRejected: () => {
        throw new Error('bus failed');
      },
      onInternalError,
    });
    await expect(router.handle('status', json({ id: 'ok' }))).resolves.toBeUndefined();
    await expect(router.handle('status', Buffer.from('nope'))).resolves.toBeUndefined();
    expect(onInternalError.mock.calls.map((call) => call[1])).toEqual(['respond', 'onRejected', 'respond']);
  });

  it('answers every one of many hostile payloads exactly once without throwing', async () => {
    // Deterministic pseudo-random mutations of a valid request (xorshift32).
    let seed = 0x9e3779b9;
    const random = (limit: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % limit;
    };
    const base = Buffer.from('{"id":"fz","args":{"stream":"main","count":8},"exp":1800000000000}');
    const context = setup();
    for (let i = 0; i < 2000; i += 1) {
      const payload = Buffer.from(base);
      for (let n = random(4) + 1; n > 0; n -= 1) payload[random(payload.length)] = random(256);
      await context.router.handle(i % 2 ? 'pool.resize' : 'status', payload);
      expect(context.sent).toHaveLength(i + 1);
    }
    // Whatever ran had args its schema allows.
    for (const call of context.calls) {
      if (call.name === 'pool.resize')
        expect((call.args as { stream: string }).stream).toMatch(/^[a-z0-9][a-z0-9_-]*$/);
    }
  });

  it('refuses bad construction: a handler without schema, an allow-list typo, a bad limit', () => {
    const respond = () => {};
    const base = { respond, onRejected: respond, defaultResponseTopic: (name: string) => name };
    expect(() => new CommandRouter({ ...base, handlers: { reboot: () => 1 } })).toThrow(/no args schema/);
    expect(() => new CommandRouter({ ...base, handlers: { status: () => 1 }, allow: ['stats'] })).toThrow(/stats/);
    expect(() => new CommandRouter({ ...base, handlers: { status: () => 1 }, maxBytes: 0 })).toThrow(/maxBytes/);
  });
});

describe('command schemas', () => {
  it('has an args schema for every command name, and compiles strictly', () => {
    expect(Object.keys(COMMAND_ARGS_SCHEMAS).sort()).toEqual([...COMMAND_NAMES].sort());
    const ajv = new Ajv({ strict: true });
    ajv.compile(REQUEST_ENVELOPE_SCHEMA);
    for (const name of COMMAND_NAMES) ajv.compile(commandRequestSchema(name));
  });

  it('closes every object schema (additionalProperties false) except config.set values', () => {
    const open: string[] = [];
    const walk = (schema: unknown, path: string) => {
      if (schema === null || typeof schema !== 'object') return;
      const record = schema as Record<string, unknown>;
      if (record.type === 'object' && record.additionalProperties !== false) open.push(path);
      for (const [key, value] of Object.entries(record)) walk(value, `${path}/${key}`);
    };
    for (const name of COMMAND_NAMES) walk(commandRequestSchema(name), name);
    walk(ANSWER_SCHEMA, 'answer');
    expect(open).toEqual(['config.set/properties/args/properties/values']);
  });

  it('validates a whole signed request with commandRequestSchema', () => {
    const validate = new Ajv({ strict: true }).compile(commandRequestSchema('pool.resize'));
    const request = {
      id: 'a',
      args: { stream: 'main', size: 188 * 10 },
      iat: T0,
      exp: T0 + 1,
      sig: `${'A'.repeat(86)}==`,
    };
    expect(validate(request)).toBe(true);
    expect(validate({ ...request, args: { stream: '/dev/dvb/adapter0/dvr0', size: 1880 } })).toBe(false);
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level, keeps array order and has no whitespace', () => {
    expect(canonicalJson({ b: 1, a: [{ z: true, y: null }, 'x'], é: 'ü', A: 1.5 })).toBe(
      '{"A":1.5,"a":[{"y":null,"z":true},"x"],"b":1,"é":"ü"}',
    );
    expect(commandSigningBytes('d', 'status', 'i', {}, 5).toString()).toBe('["d","status","i",{},5]');
  });
});
