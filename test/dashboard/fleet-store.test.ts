// The page's model of the fleet, fed message by message as the broker
// delivers them, through the very validator the page bundles
// (deploy/dashboard/src/schemas.ts, the contract's JSON Schemas).
import { describe, expect, it } from 'vitest';
import {
  FleetStore,
  HISTORY_POINTS,
  MAX_EVENTS,
  SILENT_MIN_MS,
  SILENT_UNKNOWN_PERIOD_MS,
} from '../../deploy/dashboard/src/fleet-store.js';
import { contractCheck } from '../../deploy/dashboard/src/schemas.js';

const check = contractCheck();
const T0 = 1_795_000_000_000;

function status(state: 'online' | 'offline') {
  return JSON.stringify(
    state === 'online'
      ? {
          state,
          version: '0.1.0',
          bootTime: '2026-11-21T04:00:00.000Z',
          configDigest: 'ab'.repeat(32),
          deviceId: 'stb-1',
        }
      : { state },
  );
}

function streamHealth(overrides: Record<string, unknown> = {}) {
  return {
    state: 'streaming',
    level: 'ok',
    watermark: 'normal',
    windowMs: 1000,
    pool: [13, 61288],
    ledger: [12, 0, 1, 0],
    bps: 12_000_000,
    bufps: 24.5,
    fill: 1,
    ccGaps: 0,
    ccGapsTotal: 3,
    zeroQueuedMs: 0,
    lossBytes: 0,
    sinkP99Ms: 4,
    errors: 0,
    exportedFds: 13,
    stuck: 0,
    ...overrides,
  };
}

function telemetry(t: number, streams: Record<string, unknown>) {
  return JSON.stringify({
    t,
    agent: {
      uptimeSeconds: 10,
      rssBytes: 80 << 20,
      heapUsedBytes: 20 << 20,
      eventLoopLagMs: { mean: 0, p99: 1, max: 2 },
      openFds: 40,
    },
    streams,
  });
}

function errnoEvent(overrides: Record<string, unknown> = {}) {
  return JSON.stringify({
    cause: 'import-bytesused-above-sizeimage',
    summary: 'the decoder refused buffer 2: bytesused 18048 is above sizeimage 12288',
    remedy: 'use pool buffers of a multiple of 188 up to 12288 (e.g. 12220)',
    stream: 'hd',
    device: '/dev/video0',
    ioctl: 'VIDIOC_QBUF',
    syscall: 'ioctl',
    errno: 'EINVAL',
    errnoNumber: -22,
    args: { index: 2 },
    prevented: false,
    message: 'VIDIOC_QBUF: Invalid argument',
    count: 5,
    firstAtMs: T0,
    lastAtMs: T0 + 900,
    ...overrides,
  });
}

describe('the fleet store', () => {
  it('follows a device from its retained status through telemetry to its Last Will', () => {
    const store = new FleetStore('stb', check);
    store.ingest('stb/stb-1/status', status('online'), T0);
    const device = store.devices.get('stb-1')!;
    expect(device.online).toBe(true);
    expect(store.condition(device, T0)).toBe('unknown');

    store.ingest('stb/stb-1/telemetry', telemetry(T0, { hd: streamHealth() }), T0);
    store.ingest('stb/stb-1/telemetry', telemetry(T0 + 2000, { hd: streamHealth({ bps: 11_000_000 }) }), T0 + 2000);
    expect(store.condition(device, T0 + 2000)).toBe('ok');
    expect(device.telemetryPeriodMs).toBe(2000);
    expect(device.streams.get('hd')!.series.values('bps')).toEqual([12_000_000, 11_000_000]);
    expect(store.summary(T0 + 2000)).toMatchObject({ devices: 1, errnoEvents: 0, bps: 11_000_000 });

    store.ingest(
      'stb/stb-1/telemetry',
      telemetry(T0 + 4000, { hd: streamHealth({ level: 'degraded', reasons: ['fill low'] }) }),
      T0 + 4000,
    );
    expect(store.condition(device, T0 + 4000)).toBe('degraded');
    // Quiet for longer than three periods (and the floor): silent, though its status says online.
    expect(store.condition(device, T0 + 4000 + SILENT_MIN_MS + 1)).toBe('silent');

    store.ingest('stb/stb-1/status', status('offline'), T0 + 5000);
    expect(store.condition(device, T0 + 5000)).toBe('offline');
    expect(store.summary(T0 + 5000).byCondition.offline).toBe(1);
    // A retained status cleared by the back office: the device is forgotten.
    store.ingest('stb/stb-1/status', '', T0 + 6000);
    expect(store.devices.size).toBe(0);
  });

  it('calls a box silent that says online but sends nothing, and relearns its period after an outage', () => {
    const store = new FleetStore('stb', check);
    store.ingest('stb/stb-1/status', status('online'), T0);
    const device = store.devices.get('stb-1')!;
    expect(store.condition(device, T0 + SILENT_UNKNOWN_PERIOD_MS)).toBe('unknown');
    expect(store.condition(device, T0 + SILENT_UNKNOWN_PERIOD_MS + 1)).toBe('silent');
    // One telemetry message, then nothing: the period is unknown, the same limit counts from it.
    store.ingest('stb/stb-1/telemetry', telemetry(T0, { hd: streamHealth() }), T0 + 1000);
    expect(store.condition(device, T0 + 1000 + SILENT_UNKNOWN_PERIOD_MS + 1)).toBe('silent');
    store.ingest('stb/stb-1/telemetry', telemetry(T0, { hd: streamHealth() }), T0 + 3000);
    expect(device.telemetryPeriodMs).toBe(2000);
    // An hour away, then back: the outage is not a period.
    store.ingest('stb/stb-1/status', status('offline'), T0 + 4000);
    store.ingest('stb/stb-1/status', status('online'), T0 + 3_604_000);
    store.ingest('stb/stb-1/telemetry', telemetry(T0, { hd: streamHealth() }), T0 + 3_605_000);
    expect(device.telemetryPeriodMs).toBeNull();
    store.ingest('stb/stb-1/telemetry', telemetry(T0, { hd: streamHealth() }), T0 + 3_607_000);
    expect(device.telemetryPeriodMs).toBe(2000);
    // A stream that is not carrying data (waiting for its device) is not ok.
    store.ingest('stb/stb-1/telemetry', telemetry(T0, { hd: { state: 'opening' } }), T0 + 3_609_000);
    expect(store.condition(device, T0 + 3_609_000)).toBe('degraded');
  });

  it('counts errno events with their coalesced count, per errno and per stream, and feeds them newest last', () => {
    const store = new FleetStore('stb', check);
    store.ingest('stb/stb-1/telemetry', telemetry(T0, { hd: streamHealth() }), T0);
    store.ingest('stb/stb-1/events/errno', errnoEvent(), T0 + 1);
    store.ingest(
      'stb/stb-1/events/errno',
      errnoEvent({ errno: 'EBUSY', errnoNumber: -16, cause: 'device-busy', count: 1 }),
      T0 + 2,
    );
    const device = store.devices.get('stb-1')!;
    expect(Object.fromEntries(device.errnoCounts)).toEqual({ EINVAL: 5, EBUSY: 1 });
    expect(device.errnoTotal).toBe(6);
    expect(device.streams.get('hd')!.errnoEvents).toBe(6);
    expect(device.lastCause).toMatchObject({ cause: 'device-busy', errno: 'EBUSY' });
    expect(store.feed.map((e) => e.kind)).toEqual(['errno', 'errno']);
    expect(store.deviceFeed('stb-1').map((e) => e.seq)).toEqual([2, 1]);
    expect(store.summary(T0).errnoEvents).toBe(6);
  });

  it('ignores, counts and explains what the contract does not allow, and changes nothing', () => {
    const store = new FleetStore('stb', check);
    const hostile: Array<[string, string]> = [
      ['stb/stb-1/status', '{"state":"online"'],
      ['stb/stb-1/status', '{"state":"rebooting"}'],
      ['stb/stb-1/telemetry', '{"t":1,"agent":{},"streams":{}}'],
      ['stb/stb-1/events/errno', errnoEvent({ cause: 'made-up-cause' })],
      ['stb/stb-1/events/errno', errnoEvent({ count: -1 })],
      ['stb/stb-1/events/errno', JSON.stringify({ ...JSON.parse(errnoEvent()), extra: '<script>' })],
      ['stb/stb-1/events/unheard-of', '{}'],
      ['stb/stb-1/cmd/status', '{"id":"1"}'],
      ['other/stb-1/status', status('online')],
      ['stb/status', status('online')],
      ['stb/stb-1/status', '"online"'],
      ['stb/stb-1/telemetry', 'null'],
    ];
    for (const [topic, payload] of hostile) store.ingest(topic, payload, T0);
    expect(store.devices.size).toBe(0);
    expect(store.feed).toEqual([]);
    expect(store.ignoredTotal).toBe(hostile.length);
    expect(store.ignored.map((i) => i.reason)).toEqual(
      expect.arrayContaining([
        'not JSON',
        'not a topic of the device tree',
        expect.stringMatching(/^not a valid status payload: /),
        expect.stringMatching(/^not a valid errno payload: /),
        expect.stringMatching(/^not a valid telemetry payload: /),
      ]),
    );
    // A device id that is a JavaScript property name is just a device id.
    store.ingest('stb/__proto__/status', status('online'), T0);
    expect([...store.devices.keys()]).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).state).toBeUndefined();
  });

  it('bounds what it keeps: the feed, each stream history, the ignored list', () => {
    const store = new FleetStore('stb', check);
    for (let i = 0; i < MAX_EVENTS + 50; i++)
      store.ingest(`stb/stb-${i % 7}/events/errno`, errnoEvent({ count: 1 }), T0 + i);
    expect(store.feed).toHaveLength(MAX_EVENTS);
    expect(store.feed[0]!.seq).toBe(51);
    for (let i = 0; i < HISTORY_POINTS + 30; i++) {
      store.ingest('stb/stb-1/telemetry', telemetry(T0 + i, { hd: streamHealth({ bps: i }) }), T0 + i);
    }
    const kept = store.devices.get('stb-1')!.streams.get('hd')!.series.values('bps');
    expect(kept).toHaveLength(HISTORY_POINTS);
    expect(kept[0]).toBe(30);
    expect(kept.at(-1)).toBe(HISTORY_POINTS + 29);
    for (let i = 0; i < 80; i++) store.ingest('stb/x/telemetry', 'garbage', T0);
    expect(store.ignored).toHaveLength(50);
    expect(store.ignoredTotal).toBe(80);
  });

  it('drops streams the device no longer reports, and hands answers to the command client', () => {
    const answers: unknown[] = [];
    const store = new FleetStore('fleet/eu', check, (deviceId, command, json, correlation) =>
      answers.push({ deviceId, command, json, correlation }),
    );
    store.ingest('fleet/eu/stb-1/telemetry', telemetry(T0, { hd: streamHealth(), sd: { state: 'opening' } }), T0);
    expect([...store.devices.get('stb-1')!.streams.keys()]).toEqual(['hd', 'sd']);
    store.ingest('fleet/eu/stb-1/telemetry', telemetry(T0 + 1, { hd: streamHealth() }), T0 + 1);
    expect([...store.devices.get('stb-1')!.streams.keys()]).toEqual(['hd']);
    const answer = { id: 'dash-1', status: 'ok', data: [] };
    store.ingest('fleet/eu/stb-1/response/streams/page-a', JSON.stringify(answer), T0, 'dash-1');
    store.ingest('fleet/eu/stb-1/response/streams', '{"id":"x","status":"maybe"}', T0);
    expect(answers).toEqual([{ deviceId: 'stb-1', command: 'streams', json: answer, correlation: 'dash-1' }]);
  });
});
