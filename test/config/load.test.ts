import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, configFilePath, loadConfig, redactConfig } from '../../agent/config/load.js';
import type { AgentConfig } from '../../agent/config/types.js';
import { Simulation } from '../../agent/native/index.js';
import { planStreamPool } from '../../agent/streams/sizing.js';

const dir = mkdtempSync(join(tmpdir(), 'dmx-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let written = 0;
function configFile(content: unknown): string {
  const path = join(dir, `config-${written++}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

function load(content: unknown, env: NodeJS.ProcessEnv = {}): AgentConfig {
  return loadConfig({ file: configFile(content), env, hostname: 'stb-test' });
}

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('no ConfigError');
}

/** The problems of a config file, as key -> message. */
function problemsOf(content: unknown, env: NodeJS.ProcessEnv = {}): Map<string, string> {
  const err = configError(() => load(content, env));
  return new Map(err.problems.map((problem) => [problem.key, problem.message]));
}

/** A valid stream to start each case from. */
function stream(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: 'main', filter: { pids: [0x100, 0x101] }, bitrate: 8_000_000, ...overrides };
}

const defaultFile = JSON.parse(readFileSync(configFilePath('default'), 'utf8')) as AgentConfig;

describe('defaults', () => {
  it('load without a file: config/default.json with the hostname as device id', () => {
    const config = loadConfig({ file: null, env: {}, hostname: 'box-17' });
    expect(config).toEqual({ ...defaultFile, deviceId: 'box-17' });
    expect(config.backend).toBe('kernel');
    expect(config.streams).toEqual([]);
  });

  it('refuse a hostname that cannot be a topic level', () => {
    const err = configError(() => loadConfig({ file: null, env: {}, hostname: 'bad host' }));
    expect(err.problems[0]?.key).toBe('deviceId');
  });

  it("take the client certificate's CN as device id when there is a certificate and no deviceId", () => {
    // A real certificate and key from openssl: the fleet broker's ACL names the box by this CN.
    const certificate = (cn: string) => {
      const cert = join(dir, `${cn.replace(/\W/g, '_')}.pem`);
      const key = join(dir, `${cn.replace(/\W/g, '_')}.key`);
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-days',
          '1',
          '-subj',
          `/O=dmx-agent tests/CN=${cn}`,
          '-keyout',
          key,
          '-out',
          cert,
        ],
        { stdio: 'ignore' },
      );
      chmodSync(key, 0o600);
      return { cert, key };
    };
    const good = certificate('stb-cert-42');
    const tls = { mqtt: { tls: good } };
    expect(load(tls).deviceId).toBe('stb-cert-42');
    // An explicit deviceId wins, and without a certificate the hostname is used.
    expect(load({ ...tls, deviceId: 'explicit' }).deviceId).toBe('explicit');
    expect(load({}).deviceId).toBe('stb-test');
    // A CN that cannot be a topic level is refused, naming where it came from.
    const bad = certificate('stb#1');
    expect(problemsOf({ mqtt: { tls: bad } }).get('deviceId')).toMatch(/client certificate's CN.*stb#1/);
  });

  it('take the file from DMX_AGENT_CONFIG unless a file (or none) is given', () => {
    const path = configFile({ log: { level: 'warn' } });
    expect(loadConfig({ env: { DMX_AGENT_CONFIG: path }, hostname: 'h' }).log.level).toBe('warn');
    expect(loadConfig({ file: null, env: { DMX_AGENT_CONFIG: path }, hostname: 'h' }).log.level).toBe('info');
  });
});

describe('config/development.json', () => {
  const config = loadConfig({ file: configFilePath('development'), env: {}, hostname: 'dev' });

  it('runs the simulated receiver with an HD and an SD stream and the embedded broker', () => {
    expect(config.backend).toBe('sim');
    // info: the live stream lines, not a debug line per health sample, on the developer's terminal.
    expect(config.log.level).toBe('info');
    expect(config.mqtt).toMatchObject({ enabled: true, url: 'embedded' });
    expect(config.streams.map((s) => s.id)).toEqual(['hd', 'sd']);
    expect(config.streams[0]?.sink).toMatchObject({ type: 'decoder', decoder: 'vim2m' });
  });

  it('derives both pools, with a buffer every few tens of ms', () => {
    const [hd, sd] = config.streams.map((s) => planStreamPool(s));
    // HD: 128x160 RGB24 = 61440 bytes of OUTPUT sizeimage sets 326-packet buffers.
    expect(hd).toMatchObject({ size: 61_288, allocationBytes: 61_440, count: 13 });
    expect(hd?.derivedFrom[0]).toBe('decoder sizeimage');
    expect(sd).toMatchObject({ size: 93 * 188, count: 13 });
    for (const plan of [hd, sd]) {
      expect(plan?.fillMs).toBeGreaterThan(10);
      expect(plan?.fillMs).toBeLessThanOrEqual(50);
      expect(plan?.warnings).toEqual([]);
    }
  });

  it('gives each stream the bitrate the simulated receiver sends on its PIDs', () => {
    for (const s of config.streams) {
      const adapter = config.sim.adapters?.find((a) => a.adapter === s.adapter);
      const source = adapter?.source;
      if (source?.kind !== 'synthetic') throw new Error(`adapter ${s.adapter} is not synthetic`);
      const share = (source.programs ?? [])
        .flatMap((program) => program.streams)
        .filter((es) => s.filter.pids.includes(es.pid))
        .reduce((sum, es) => sum + es.share, 0);
      expect(share * (source.bitrate ?? 0)).toBeCloseTo(s.bitrate, -3);
    }
  });

  it('is accepted by the native simulation', () => {
    const simulation = new Simulation(config.sim);
    simulation.close();
  });
});

describe('environment variables', () => {
  it('override the defaults and the file', () => {
    const config = load(
      { backend: 'kernel', log: { level: 'warn' } },
      {
        DMX_AGENT_BACKEND: 'sim',
        DMX_AGENT_DEVICE_ID: 'stb-0042',
        DMX_AGENT_MQTT_URL: 'mqtts://broker.example:8883',
        DMX_AGENT_MQTT_USERNAME: 'agent',
        DMX_AGENT_MQTT_PASSWORD: 'hunter2',
        DMX_AGENT_LOG_LEVEL: 'trace',
        DMX_AGENT_LOG_PRETTY: 'never',
        DMX_AGENT_STATUS_LINE: 'always',
      },
    );
    expect(config).toMatchObject({
      backend: 'sim',
      deviceId: 'stb-0042',
      mqtt: { url: 'mqtts://broker.example:8883', username: 'agent', password: 'hunter2' },
      log: { level: 'trace', pretty: 'never' },
      statusLine: 'always',
    });
  });

  it('with wrong values are errors naming the variable and the key, all at once', () => {
    const problems = problemsOf(
      {},
      {
        DMX_AGENT_BACKEND: 'qemu',
        DMX_AGENT_LOG_LEVEL: 'loud',
        DMX_AGENT_MQTT_URL: 'http://user:pw@broker',
        DMX_AGENT_STATUS_LINE: 'sometimes',
        DMX_AGENT_DEVICE_ID: 'a/b',
      },
    );
    expect(problems.get('backend')).toContain('DMX_AGENT_BACKEND');
    expect(problems.get('backend')).toContain("'kernel', 'sim'");
    expect(problems.get('backend')).toContain('"qemu"');
    expect(problems.get('log.level')).toContain('DMX_AGENT_LOG_LEVEL');
    expect(problems.get('mqtt.url')).toContain('DMX_AGENT_MQTT_URL');
    expect(problems.get('mqtt.url')).not.toContain('pw');
    expect(problems.get('statusLine')).toContain('DMX_AGENT_STATUS_LINE');
    expect(problems.get('deviceId')).toContain('DMX_AGENT_DEVICE_ID');
  });
});

describe('strict validation', () => {
  it('refuses unknown keys at the top level and in sections, with a guess', () => {
    const problems = problemsOf({ strems: [], log: { levle: 'info' } });
    expect(problems.get('strems')).toContain("did you mean 'streams'?");
    expect(problems.get('log.levle')).toContain("did you mean 'level'?");
  });

  it('refuses unknown keys inside a stream and each of its objects', () => {
    const problems = problemsOf({
      streams: [
        stream({
          buffers: 8,
          filter: { pids: [0x100], pes: true },
          tuning: { deliverySystem: 'DVBT', frequency: 474_000_000, polarisation: 'h' },
          pool: { latencyMs: 40, growth: { enabled: true, step: 2 }, extra: 1 },
          sink: {
            type: 'decoder',
            decoder: 'vim2m',
            format: { fourcc: 'RGB3', width: 64, height: 64, stride: 192 },
            socketPath: '/run/x.sock',
          },
        }),
      ],
    });
    expect([...problems.keys()].sort()).toEqual(
      [
        'streams[0].buffers',
        'streams[0].filter.pes',
        'streams[0].tuning.polarisation',
        'streams[0].pool.extra',
        'streams[0].pool.growth.step',
        'streams[0].sink.format.stride',
        'streams[0].sink.socketPath',
      ].sort(),
    );
    expect(problems.get('streams[0].buffers')).toMatch(/^stream 'main': unknown key 'buffers'/);
  });

  it('refuses unknown keys in the simulated receiver', () => {
    const problems = problemsOf({ sim: { adapters: [{ adapter: 0, bitrate: 1 }], decoder: [] } });
    expect(problems.has('sim.adapters[0].bitrate')).toBe(true);
    expect(problems.get('sim.decoder')).toContain("did you mean 'decoders'?");
  });

  it('refuses wrong types and values out of range', () => {
    const problems = problemsOf({
      backend: 5,
      log: 'debug',
      health: { intervalMs: 'fast', watermark: { low: 2 } },
      streams: [stream({ bitrate: '12M', adapter: -1, pool: { latencyMs: 0 } })],
    });
    expect(problems.get('backend')).toContain("one of 'kernel', 'sim'");
    expect(problems.get('log')).toContain('must be an object with the keys level, pretty');
    expect(problems.get('health.intervalMs')).toContain('"fast"');
    expect(problems.get('health.watermark.low')).toContain('from 0 to 1');
    expect(problems.get('streams[0].bitrate')).toContain('"12M"');
    expect(problems.has('streams[0].adapter')).toBe(true);
    expect(problems.has('streams[0].pool.latencyMs')).toBe(true);
  });

  it('refuses streams that are not a list', () => {
    expect(problemsOf({ streams: { id: 'a' } }).get('streams')).toContain('list of streams');
  });

  it('never prints the password', () => {
    const err = configError(() => load({ mqtt: { password: 987_654 } }));
    expect(err.problems.map((problem) => problem.key)).toEqual(['mqtt.password']);
    expect(err.message).not.toContain('987654');
  });
});

describe('impossible combinations', () => {
  it('a fixed pool size above 770048 or not a multiple of 188', () => {
    const problems = problemsOf({
      streams: [stream({ pool: { size: 770_236 } }), stream({ id: 'b', adapter: 1, pool: { size: 1000 } })],
    });
    expect(problems.get('streams[0].pool.size')).toContain('at most 770048');
    expect(problems.get('streams[1].pool.size')).toContain('multiple of 188');
    expect(problems.get('streams[1].pool.size')).toContain("stream 'b'");
  });

  it('a derived size that would exceed 770048', () => {
    const message = problemsOf({ streams: [stream({ bitrate: 100_000_000, pool: { latencyMs: 100 } })] }).get(
      'streams[0].pool.latencyMs',
    );
    expect(message).toContain('770048');
    expect(message).toContain('lower latencyMs to at most 61');
  });

  it('a fixed size that breaks an import rule of the decoder', () => {
    const problems = problemsOf({
      streams: [
        stream({
          pool: { size: 12_032 },
          sink: { type: 'decoder', decoder: 'vim2m', format: { fourcc: 'RGB3', width: 32, height: 32 } },
        }),
      ],
    });
    expect(problems.get('streams[0].pool.size')).toContain('sizeimage 3072');
  });

  it('a decoder OUTPUT format no pool buffer can fit, raw or given', () => {
    const problems = problemsOf({
      streams: [
        // RGB565 50x41 = 4100 bytes: 21 packets allocate 4096, less than sizeimage.
        stream({ sink: { type: 'decoder', decoder: 'vim2m', format: { fourcc: 'RGBP', width: 50, height: 41 } } }),
        stream({
          id: 'b',
          adapter: 1,
          sink: {
            type: 'decoder',
            decoder: 'vim2m',
            format: { fourcc: 'H264', width: 1920, height: 1080, sizeimage: 4100 },
          },
        }),
      ],
    });
    expect(problems.get('streams[0].sink.format')).toContain('4096-byte dmabuf');
    expect(problems.get('streams[1].sink.format.sizeimage')).toContain('4100');
  });

  it('a sizeimage that contradicts a raw format', () => {
    const problems = problemsOf({
      streams: [
        stream({
          sink: {
            type: 'decoder',
            decoder: 'vim2m',
            format: { fourcc: 'RGB3', width: 64, height: 64, sizeimage: 8192 },
          },
        }),
      ],
    });
    expect(problems.get('streams[0].sink.format.sizeimage')).toContain('set it to 12288');
  });

  it('duplicate stream ids', () => {
    const problems = problemsOf({ streams: [stream(), stream({ adapter: 1 })] });
    expect(problems.get('streams[1].id')).toContain('already used by streams[0]');
  });

  it('two streams on the same DVR', () => {
    const problems = problemsOf({
      streams: [
        stream({ source: 'dvr', filter: { pids: [0x2000] } }),
        stream({ id: 'b', source: 'dvr', filter: { pids: [0x100] } }),
      ],
    });
    expect(problems.get('streams[1].source')).toContain('one O_RDWR opener');
  });

  it('a source and a filter output that send the data elsewhere', () => {
    const problems = problemsOf({
      streams: [
        stream({ source: 'dvr', filter: { pids: [0x100], output: 'tsdemux-tap' } }),
        stream({ id: 'b', adapter: 1, filter: { pids: [0x100], output: 'ts-tap' } }),
      ],
    });
    expect(problems.get('streams[0].filter.output')).toContain("needs output 'ts-tap'");
    expect(problems.get('streams[1].filter.output')).toContain('sends the data to the DVR');
  });

  it('PIDs outside 0..0x2000, listed twice, or beside 0x2000', () => {
    const problems = problemsOf({
      streams: [
        stream({ filter: { pids: [0x100, 0x2001, -1, 0x100] } }),
        stream({ id: 'b', adapter: 1, filter: { pids: [0x2000, 0x100] } }),
      ],
    });
    expect(problems.get('streams[0].filter.pids[1]')).toContain('outside 0..8192');
    expect(problems.has('streams[0].filter.pids[2]')).toBe(true);
    expect(problems.get('streams[0].filter.pids[3]')).toContain('listed twice');
    expect(problems.get('streams[1].filter.pids')).toContain('passes every PID');
  });

  it('growth.maxCount below the count, fixed or derived', () => {
    const problems = problemsOf({
      streams: [
        stream({ pool: { count: 8, growth: { enabled: true, maxCount: 6 } } }),
        stream({ id: 'b', adapter: 1, pool: { growth: { maxCount: 4 } } }),
      ],
    });
    expect(problems.get('streams[0].pool.growth.maxCount')).toContain('below the pool count 8');
    expect(problems.get('streams[1].pool.growth.maxCount')).toContain('derived from bufferingMs');
  });

  it('stream ids that cannot be topic levels', () => {
    const problems = problemsOf({
      streams: [stream({ id: 'HD' }), stream({ id: 'a/b', adapter: 1 }), stream({ id: '-x', adapter: 2 })],
    });
    for (const index of [0, 1, 2]) expect(problems.get(`streams[${index}].id`)).toContain('not a valid stream id');
  });

  it('one frontend tuned to two multiplexes', () => {
    const problems = problemsOf({
      streams: [
        stream({ tuning: { deliverySystem: 'DVBT', frequency: 474_000_000 } }),
        stream({ id: 'b', tuning: { deliverySystem: 'DVBT', frequency: 482_000_000 } }),
        stream({ id: 'c', tuning: { frequency: 474_000_000, deliverySystem: 'DVBT' } }),
      ],
    });
    expect([...problems.keys()]).toEqual(['streams[1].tuning']);
  });

  it('a consumer allowed to hold the whole pool, and two consumers on one socket', () => {
    const consumer = (maxInFlight: number) => ({ type: 'consumer', socketPath: '@dmx-test', maxInFlight });
    const problems = problemsOf({
      streams: [
        stream({ pool: { count: 8 }, sink: consumer(8) }),
        stream({ id: 'b', adapter: 1, pool: { count: 8 }, sink: consumer(6) }),
      ],
    });
    expect(problems.get('streams[0].sink.maxInFlight')).toContain('use at most 6');
    expect(problems.get('streams[1].sink.socketPath')).toContain('already used by streams[0]');
    expect(problems.has('streams[1].sink.maxInFlight')).toBe(false);
  });

  describe('with the simulated receiver', () => {
    const sim = {
      adapters: [{ adapter: 0 }, { adapter: 2, requireTune: false }],
      decoders: [{ name: 'vim2m' }],
    };
    const tuning = { deliverySystem: 'DVBT', frequency: 474_000_000 };

    it('a stream on an adapter the simulation lacks', () => {
      const problems = problemsOf({ backend: 'sim', sim, streams: [stream({ adapter: 1, tuning })] });
      expect(problems.get('streams[0].adapter')).toContain('no adapter 1 (it has 0, 2)');
    });

    it('a decoder the simulation lacks, and an adapter nobody tunes', () => {
      const problems = problemsOf({
        backend: 'sim',
        sim,
        streams: [
          stream({ sink: { type: 'decoder', decoder: 'hantro', format: { fourcc: 'RGB3', width: 128, height: 160 } } }),
          stream({ id: 'b', adapter: 2 }),
        ],
      });
      expect(problems.get('streams[0].sink.decoder')).toContain("no decoder 'hantro'");
      expect(problems.get('streams[0].tuning')).toContain('requireTune');
      expect(problems.has('streams[1].tuning')).toBe(false);
    });

    it('are not checked against the kernel backend', () => {
      expect(load({ backend: 'kernel', sim, streams: [stream({ adapter: 1 })] }).streams).toHaveLength(1);
    });
  });

  it('watermark and backoff bounds that contradict each other', () => {
    const problems = problemsOf({
      health: { watermark: { low: 0.8, high: 0.5 } },
      supervision: { backoffInitialMs: 60_000, backoffMaxMs: 1000 },
    });
    expect(problems.get('health.watermark.high')).toContain('must be above low 0.8');
    expect(problems.get('supervision.backoffMaxMs')).toContain('at least 60000');
  });

  it('still checks the pool of a stream with a problem elsewhere', () => {
    const problems = problemsOf({
      streams: [
        stream({
          filter: { pids: [0x3000] },
          pool: { size: 12_032 },
          sink: { type: 'decoder', decoder: 'vim2m', format: { fourcc: 'RGB3', width: 32, height: 32 } },
        }),
      ],
    });
    expect([...problems.keys()].sort()).toEqual(['streams[0].filter.pids[0]', 'streams[0].pool.size']);
  });

  it('collects every problem in one error, one per line', () => {
    const err = configError(() =>
      load({
        backend: 'qemu',
        streams: [stream({ pool: { size: 1000 } }), stream({ id: 'main', adapter: 1 })],
      }),
    );
    expect(err.problems.length).toBe(3);
    const lines = err.message.split('\n');
    expect(lines[0]).toContain('3 problems');
    expect(lines.slice(1)).toEqual(err.problems.map((problem) => `  ${problem.key}: ${problem.message}`));
  });
});

describe('the config file', () => {
  it('missing: names the path', () => {
    const path = join(dir, 'absent.json');
    const err = configError(() => loadConfig({ file: path, env: {} }));
    expect(err.problems).toEqual([{ key: '--config', message: `cannot read the config file ${path}: no such file` }]);
    expect(err.message).toContain(path);
  });

  it('missing when named by DMX_AGENT_CONFIG: names the variable', () => {
    const err = configError(() => loadConfig({ env: { DMX_AGENT_CONFIG: join(dir, 'gone.json') } }));
    expect(err.problems[0]?.key).toBe('DMX_AGENT_CONFIG');
  });

  it('not JSON: names the path and the parse error', () => {
    const path = configFile('{ "backend": "sim", }');
    const err = configError(() => loadConfig({ file: path, env: {} }));
    expect(err.problems[0]?.message).toContain(`${path} is not valid JSON`);
  });

  it('not an object', () => {
    const err = configError(() => loadConfig({ file: configFile('[1, 2]'), env: {} }));
    expect(err.problems[0]?.message).toContain('must hold a JSON object');
  });
});

describe('redactConfig', () => {
  it('hides the password and URL passwords, and leaves the config untouched', () => {
    const config = load({
      mqtt: { url: 'mqtt://agent:s3cret-url@broker:1883', username: 'agent', password: 's3cret' },
      sim: { adapters: [{ source: { kind: 'file', path: '/srv/ts/mux.ts' } }] },
    });
    const redacted = redactConfig(config) as AgentConfig;
    expect(redacted.mqtt).toMatchObject({
      url: 'mqtt://agent:[redacted]@broker:1883',
      username: 'agent',
      password: '[redacted]',
      topicPrefix: 'stb',
    });
    expect(JSON.stringify(redacted)).not.toContain('s3cret');
    expect(redacted.sim).toEqual(config.sim);
    expect(config.mqtt.password).toBe('s3cret');
    expect(config.mqtt.url).toBe('mqtt://agent:s3cret-url@broker:1883');
  });

  it('keeps an empty password empty', () => {
    const redacted = redactConfig(loadConfig({ file: null, env: {}, hostname: 'h' })) as AgentConfig;
    expect(redacted.mqtt.password).toBe('');
  });
});
