import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  agentSchema,
  configFilePath,
  describeConfigKeys,
  ProblemList,
  readStream,
  STREAM_DEFAULTS,
  unknownKeyMessage,
} from '../../agent/config/schema.js';

const defaultFile = JSON.parse(readFileSync(configFilePath('default'), 'utf8')) as Record<string, unknown>;

/** Every leaf of a JSON object as [dotted key, value]; arrays and empty objects are leaves. */
function leaves(value: Record<string, unknown>, prefix = ''): Array<[string, unknown]> {
  return Object.entries(value).flatMap(([name, child]): Array<[string, unknown]> => {
    const key = `${prefix}${name}`;
    const isSection =
      typeof child === 'object' && child !== null && !Array.isArray(child) && Object.keys(child).length > 0;
    return isSection ? leaves(child as Record<string, unknown>, `${key}.`) : [[key, child]];
  });
}

describe('the schema and config/default.json', () => {
  it('have the same keys, and the schema defaults are the file values', () => {
    const fileLeaves = leaves(defaultFile);
    const described = describeConfigKeys().filter((row) => !row.key.startsWith('streams[]'));
    expect(described.map((row) => row.key).sort()).toEqual(fileLeaves.map(([key]) => key).sort());
    for (const [key, value] of fileLeaves) {
      expect(described.find((row) => row.key === key)?.default, key).toEqual(value);
    }
  });

  it('builds a convict schema whose defaults are the file values', () => {
    const { schema, defaults } = agentSchema();
    expect(defaults).toEqual(defaultFile);
    const backend = schema.backend as { default: unknown; env: string };
    expect(backend.default).toBe('kernel');
    expect(backend.env).toBe('DMX_AGENT_BACKEND');
  });

  it('holds the production defaults', () => {
    expect(defaultFile).toMatchObject({
      deviceId: '',
      backend: 'kernel',
      log: { level: 'info', pretty: 'auto' },
      mqtt: { url: 'mqtt://localhost:1883' },
      streams: [],
    });
  });
});

describe('describeConfigKeys', () => {
  it('names the environment variable of each common key', () => {
    const env = Object.fromEntries(describeConfigKeys().map((row) => [row.key, row.env]));
    expect(env).toMatchObject({
      backend: 'DMX_AGENT_BACKEND',
      deviceId: 'DMX_AGENT_DEVICE_ID',
      'mqtt.url': 'DMX_AGENT_MQTT_URL',
      'mqtt.username': 'DMX_AGENT_MQTT_USERNAME',
      'mqtt.password': 'DMX_AGENT_MQTT_PASSWORD',
      'log.level': 'DMX_AGENT_LOG_LEVEL',
      statusLine: 'DMX_AGENT_STATUS_LINE',
      'health.intervalMs': null,
    });
  });

  it('lists the stream element keys with the defaults the reader applies', () => {
    const rows = describeConfigKeys();
    const latency = rows.find((row) => row.key === 'streams[].pool.latencyMs');
    expect(latency?.default).toBe(STREAM_DEFAULTS.pool.latencyMs);
    const problems = new ProblemList();
    const stream = readStream({ id: 'a', filter: { pids: [0x100] }, bitrate: 1_000_000 }, 0, problems);
    expect(problems.items).toEqual([]);
    expect(stream.pool.latencyMs).toBe(latency?.default);
    for (const row of rows) expect(row.doc.length, row.key).toBeGreaterThan(10);
  });
});

describe('readStream', () => {
  it('fills every default', () => {
    const problems = new ProblemList();
    const stream = readStream({ id: 'radio', filter: { pids: [0x111] }, bitrate: 128_000 }, 3, problems);
    expect(problems.items).toEqual([]);
    expect(stream).toEqual({
      id: 'radio',
      adapter: 0,
      source: 'demux',
      demux: 0,
      filter: { pids: [0x111], output: 'tsdemux-tap' },
      tuning: null,
      bitrate: 128_000,
      pool: {
        count: null,
        size: null,
        latencyMs: 40,
        bufferingMs: 500,
        growth: { enabled: false, maxCount: 32, sustainMs: 10_000 },
      },
      sink: { type: 'discard' },
    });
  });

  it("defaults a dvr stream's output to ts-tap", () => {
    const problems = new ProblemList();
    const stream = readStream({ id: 'all', source: 'dvr', filter: { pids: [0x2000] }, bitrate: 8e6 }, 0, problems);
    expect(stream.filter.output).toBe('ts-tap');
  });

  it('reports every bad field of one stream by its key', () => {
    const problems = new ProblemList();
    readStream(
      {
        id: 'x',
        adapter: 300,
        filter: { pids: 'all' },
        bitrate: '12M',
        pool: { count: 40, size: 1000 },
        sink: { type: 'decoder' },
      },
      2,
      problems,
    );
    expect(problems.items.map((problem) => problem.key).sort()).toEqual(
      [
        'streams[2].adapter',
        'streams[2].bitrate',
        'streams[2].filter.pids',
        'streams[2].pool.count',
        'streams[2].pool.size',
        'streams[2].sink.decoder',
        'streams[2].sink.format',
      ].sort(),
    );
    for (const problem of problems.items) expect(problem.message).toMatch(/^stream 'x': /);
  });
});

describe('unknownKeyMessage', () => {
  it('guesses a near key and lists the allowed ones', () => {
    expect(unknownKeyMessage('latencyMS', ['latencyMs', 'size'])).toContain("did you mean 'latencyMs'?");
    expect(unknownKeyMessage('colour', ['latencyMs', 'size'])).not.toContain('did you mean');
    expect(unknownKeyMessage('colour', ['latencyMs', 'size'])).toContain('latencyMs, size');
  });
});

describe('ProblemList.under', () => {
  it('matches the key, its fields and its elements, not its siblings', () => {
    const problems = new ProblemList();
    problems.add('streams[1].pool.size', 'bad');
    expect(problems.under('streams[1]')).toBe(true);
    expect(problems.under('streams[1].pool')).toBe(true);
    expect(problems.under('streams[1].pool.size')).toBe(true);
    expect(problems.under('streams[10]')).toBe(false);
    expect(problems.under('streams[1].pool.sizes')).toBe(false);
  });
});
