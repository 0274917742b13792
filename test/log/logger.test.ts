import { hostname } from 'node:os';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { childLogger, createLogger, maskUrlCredentials, REDACTED, setLogLevel } from '../../agent/log/logger.js';
import type { LineSink } from '../../agent/log/status-line.js';
import { DmxError } from '../../agent/native/dmx-error.js';

/** A destination that keeps what was written, optionally posing as a terminal. */
class Capture extends Writable {
  text = '';
  isTTY: boolean | undefined;

  constructor(isTTY?: boolean) {
    super();
    this.isTTY = isTTY;
  }

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }

  lines(): string[] {
    return this.text.split('\n').filter((line) => line !== '');
  }

  records(): Array<Record<string, unknown>> {
    return this.lines().map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

function jsonLogger(level: 'info' | 'debug' | 'warn' = 'info') {
  const out = new Capture();
  const logger = createLogger({ level, pretty: 'auto', destination: out });
  return { out, logger };
}

describe('createLogger: JSON lines', () => {
  it('writes one JSON object per line with level, time, pid, hostname, name and msg', () => {
    const { out, logger } = jsonLogger();
    logger.info({ stream: 'hd', count: 8 }, 'pool allocated');
    logger.warn('second');
    const lines = out.lines();
    expect(lines).toHaveLength(2);
    expect(out.text.endsWith('\n')).toBe(true);
    const [first, second] = out.records();
    expect(first).toMatchObject({
      level: 30,
      pid: process.pid,
      hostname: hostname(),
      name: 'dmx-agent',
      stream: 'hd',
      count: 8,
      msg: 'pool allocated',
    });
    expect(typeof first?.time).toBe('number');
    expect(second).toMatchObject({ level: 40, msg: 'second' });
  });

  it('drops lines below the level', () => {
    const { out, logger } = jsonLogger('info');
    logger.debug('hidden');
    logger.info('shown');
    expect(out.records().map((record) => record.msg)).toEqual(['shown']);
  });

  it("stays JSON with pretty 'auto' on a non-terminal and with 'never' on a terminal", () => {
    const pipe = new Capture(false);
    createLogger({ level: 'info', pretty: 'auto', destination: pipe }).info('a');
    const terminal = new Capture(true);
    createLogger({ level: 'info', pretty: 'never', destination: terminal }).info('b');
    expect(JSON.parse(pipe.text.trim())).toMatchObject({ msg: 'a' });
    expect(JSON.parse(terminal.text.trim())).toMatchObject({ msg: 'b' });
  });
});

describe('createLogger: redaction', () => {
  it('censors password, token and authorization fields at every configured path', () => {
    const { out, logger } = jsonLogger();
    logger.info(
      {
        password: 'top-secret-1',
        token: 'top-secret-2',
        authorization: 'Bearer top-secret-3',
        mqtt: { password: 'top-secret-4', username: 'stb' },
        auth: { token: 'top-secret-5' },
        headers: { authorization: 'Basic top-secret-6' },
        config: { mqtt: { password: 'top-secret-7', clientId: 'stb-1' } },
      },
      'settings',
    );
    const [record] = out.records();
    expect(out.text).not.toContain('top-secret');
    expect(record).toMatchObject({
      password: REDACTED,
      token: REDACTED,
      authorization: REDACTED,
      mqtt: { password: REDACTED, username: 'stb' },
      auth: { token: REDACTED },
      headers: { authorization: REDACTED },
      config: { mqtt: { password: REDACTED, clientId: 'stb-1' } },
    });
  });

  it('masks the password of a URL logged under url or mqtt.url, keeping the rest readable', () => {
    const { out, logger } = jsonLogger();
    logger.info({ url: 'mqtt://stb:hunter2@broker.local:1883' }, 'connecting');
    logger.info({ mqtt: { url: 'mqtts://stb:p%40ss@broker:8883/path' } }, 'nested');
    logger.info({ config: { mqtt: { url: 'mqtt://a:b@c' } } }, 'config');
    logger.info({ url: 'mqtt://broker.local:1883' }, 'no credentials');
    const records = out.records();
    expect(out.text).not.toContain('hunter2');
    expect(out.text).not.toContain('p%40ss');
    expect(records[0]?.url).toBe(`mqtt://stb:${REDACTED}@broker.local:1883`);
    expect(records[1]?.mqtt).toEqual({ url: `mqtts://stb:${REDACTED}@broker:8883/path` });
    expect(records[2]?.config).toEqual({ mqtt: { url: `mqtt://a:${REDACTED}@c` } });
    expect(records[3]?.url).toBe('mqtt://broker.local:1883');
  });

  it('redacts in pretty mode too', () => {
    const out = new Capture(false);
    const logger = createLogger({ level: 'info', pretty: 'always', destination: out });
    logger.info({ mqtt: { url: 'mqtt://u:s3cr3t@h', password: 'pw-s3cr3t' } }, 'connecting');
    expect(out.text).toContain('connecting');
    expect(out.text).not.toContain('s3cr3t');
    expect(out.text).toContain(`mqtt://u:${REDACTED}@h`);
  });
});

describe('maskUrlCredentials', () => {
  it.each([
    ['mqtt://user:secret@host', `mqtt://user:${REDACTED}@host`],
    ['mqtt://user:secret@host:1883/a?b=c', `mqtt://user:${REDACTED}@host:1883/a?b=c`],
    // A raw '@' in the password: the userinfo ends at the last '@' of the authority.
    ['mqtt://user:p@ss@host', `mqtt://user:${REDACTED}@host`],
    ['ws://user:@host', `ws://user:${REDACTED}@host`],
    ['mqtt://user@host', 'mqtt://user@host'],
    ['mqtt://host/path@not-userinfo', 'mqtt://host/path@not-userinfo'],
    ['not a url: a:b@c', 'not a url: a:b@c'],
  ])('%s -> %s', (input, expected) => {
    expect(maskUrlCredentials(input)).toBe(expected);
  });

  it('masks URL objects and leaves non-strings alone', () => {
    expect(maskUrlCredentials(new URL('mqtt://u:pw@broker:1883'))).toBe(`mqtt://u:${REDACTED}@broker:1883`);
    expect(maskUrlCredentials(42)).toBe(42);
    expect(maskUrlCredentials(null)).toBe(null);
  });
});

describe('child loggers and the runtime level', () => {
  it('binds module and stream', () => {
    const { out, logger } = jsonLogger();
    childLogger(logger, { module: 'supervisor', stream: 'hd' }).info('streaming');
    childLogger(logger, { module: 'mqtt' }).info('connected');
    const [withStream, withoutStream] = out.records();
    expect(withStream).toMatchObject({ module: 'supervisor', stream: 'hd', msg: 'streaming', name: 'dmx-agent' });
    expect(withoutStream).toMatchObject({ module: 'mqtt', msg: 'connected' });
    expect(withoutStream).not.toHaveProperty('stream');
  });

  it('pino alone leaves an existing child at its old level (why setLogLevel exists)', () => {
    const { logger } = jsonLogger('info');
    const child = childLogger(logger, { module: 'supervisor' });
    logger.level = 'debug';
    expect(child.level).toBe('info');
  });

  it('setLogLevel changes the root, children and grandchildren created before the change', () => {
    const { out, logger } = jsonLogger('info');
    const supervisor = childLogger(logger, { module: 'supervisor' });
    const hd = childLogger(supervisor, { module: 'supervisor', stream: 'hd' });
    const direct = logger.child({ module: 'health' });

    supervisor.debug('before');
    setLogLevel(logger, 'debug');
    logger.debug('root');
    supervisor.debug('child');
    hd.debug('grandchild');
    direct.debug('direct child');
    expect(out.records().map((record) => record.msg)).toEqual(['root', 'child', 'grandchild', 'direct child']);

    setLogLevel(logger, 'warn');
    for (const each of [logger, supervisor, hd, direct]) {
      each.info('muted');
      expect(each.level).toBe('warn');
    }
    expect(out.records()).toHaveLength(4);
  });

  it('setLogLevel through a child reaches the whole family', () => {
    const { logger } = jsonLogger('info');
    const a = childLogger(logger, { module: 'a' });
    const b = childLogger(logger, { module: 'b' });
    setLogLevel(a, 'trace');
    expect([logger.level, a.level, b.level]).toEqual(['trace', 'trace', 'trace']);
  });

  it('setLogLevel on a plain pino logger sets its own level', () => {
    const plain = pino({ level: 'info' }, new Capture());
    setLogLevel(plain, 'error');
    expect(plain.level).toBe('error');
  });
});

describe('pretty output', () => {
  it('writes human-readable text, not JSON, with the module and stream in front of the message', () => {
    const out = new Capture(false);
    const logger = createLogger({ level: 'info', pretty: 'always', destination: out });
    childLogger(logger, { module: 'supervisor', stream: 'hd' }).info({ count: 8 }, 'pool allocated');
    const text = out.text;
    // One line per event: the extra fields follow the message on its own line.
    expect(text).toMatch(/^\[?\d{2}:\d{2}:\d{2}\.\d{3}\]? INFO.*: \[supervisor hd\] pool allocated \{"count":8\}\n$/);
    expect(text).not.toContain('"msg"');
    expect(text).not.toContain('hostname');
    expect(text).not.toContain('\x1b[');
  });

  it("goes pretty and coloured with 'auto' on a terminal", () => {
    const out = new Capture(true);
    createLogger({ level: 'info', pretty: 'auto', destination: out }).warn('careful');
    expect(out.text).toContain('careful');
    expect(out.text).toContain('\x1b[');
    expect(() => JSON.parse(out.text)).toThrow();
  });

  it('honours the isTTY override', () => {
    const out = new Capture(false);
    createLogger({ level: 'info', pretty: 'auto', destination: out, isTTY: true, colorize: false }).info('hello');
    expect(out.text).toMatch(/INFO.*: hello\n$/);
  });

  it('sends every line to the line sink instead of the destination', () => {
    const out = new Capture(true);
    const received: string[] = [];
    const sink: LineSink = { writeLog: (text) => received.push(text) };
    const logger = createLogger({ level: 'info', pretty: 'always', destination: out, colorize: false, lineSink: sink });
    logger.info('one');
    logger.error('two');
    expect(out.text).toBe('');
    expect(received).toHaveLength(2);
    expect(received[0]).toMatch(/INFO.*: one\n$/);
    expect(received[1]).toMatch(/ERROR.*: two\n$/);
  });
});

describe('errors', () => {
  const error = new DmxError('VIDIOC_QBUF failed on /dev/video0: EINVAL (Invalid argument)', {
    code: 'EINVAL',
    errno: -22,
    syscall: 'ioctl',
    request: 'VIDIOC_QBUF',
    path: '/dev/video0',
    args: { index: 0, fd: 23, bytesused: 12032, sizeimage: 3072 },
    detail: 'bytesused 12032 exceeds the decoder OUTPUT sizeimage 3072',
    reason: 'import-bytesused-above-sizeimage',
    prevented: false,
  });
  const fields = {
    type: 'DmxError',
    message: error.message,
    code: 'EINVAL',
    errno: -22,
    syscall: 'ioctl',
    request: 'VIDIOC_QBUF',
    path: '/dev/video0',
    args: { index: 0, fd: 23, bytesused: 12032, sizeimage: 3072 },
    detail: 'bytesused 12032 exceeds the decoder OUTPUT sizeimage 3072',
    reason: 'import-bytesused-above-sizeimage',
    prevented: false,
  };

  it('keeps every DmxError field and the stack under err', () => {
    const { out, logger } = jsonLogger();
    logger.error({ err: error, stream: 'hd' }, 'queue failed');
    logger.error(error);
    const [withMessage, bare] = out.records();
    expect(withMessage?.err).toMatchObject(fields);
    expect((withMessage?.err as { stack?: string } | undefined)?.stack).toContain('DmxError: VIDIOC_QBUF failed');
    expect(withMessage).toMatchObject({ msg: 'queue failed', stream: 'hd' });
    expect(bare?.err).toMatchObject(fields);
  });

  it('serializes an error logged under error the same way', () => {
    const { out, logger } = jsonLogger();
    logger.warn({ error }, 'prevented');
    expect(out.records()[0]?.error).toMatchObject(fields);
  });
});
