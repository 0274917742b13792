// Bad input gets a clear error before anything reaches a device, and a
// failed syscall carries code, errno, syscall, request, path and args.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConsumerSink,
  Decoder,
  Demux,
  DmxError,
  Frontend,
  openDemuxPool,
  Pump,
  Simulation,
  validatePoolRequest,
} from '../../agent/native/index.js';
import { DEMUX_PATH, DVR_PATH, FRONTEND_PATH, SIM_CONFIG } from '../support/media-env.js';

let simulation: Simulation;
beforeAll(() => {
  simulation = new Simulation(SIM_CONFIG);
});
afterAll(() => simulation.close());

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('argument validation (nothing sent)', () => {
  it('rejects wrong types with TypeError and out-of-range values with RangeError', () => {
    const demux = new Demux(DEMUX_PATH, { simulation });
    try {
      expect(() => demux.setPesFilter({ pid: 'x' as never })).toThrow(TypeError);
      expect(() => demux.setPesFilter({ pid: 0x2001 })).toThrow(RangeError);
      expect(() => demux.setPesFilter({ pid: -1 })).toThrow(RangeError);
      expect(() => demux.setPesFilter({ pid: 1.5 })).toThrow(RangeError);
      expect(() => demux.setPesFilter({ pid: 0x100, output: 'nowhere' as never })).toThrow(/output must be one of/);
      expect(() => demux.requestBuffers(-1, 188)).toThrow(RangeError);
      expect(() => demux.requestBuffers(4, 0)).toThrow(RangeError);
      expect(() => demux.requestBuffers('4' as never, 188)).toThrow(TypeError);
      expect(() => demux.queueBuffer(0)).toThrow(/out of range: the pool has 0 buffers/);
      expect(() => demux.setSectionFilter({ pid: 0, filter: new Array(17).fill(0) })).toThrow(/at most 16 bytes/);
    } finally {
      demux.close();
    }
    expect(() => new Demux(42 as never)).toThrow(TypeError);
    expect(() => new Demux(DEMUX_PATH, { kind: 'tuner' as never, simulation })).toThrow(RangeError);
    expect(() => new Demux(DEMUX_PATH, { simulation: {} as never })).toThrow(/must be a Simulation/);
    expect(() => new Pump({ demux: {} as never })).toThrow(/must be a Demux/);
    expect(() => new ConsumerSink({ socketPath: '/tmp/x.sock', streamId: 'bad id!' })).toThrow(RangeError);
  });

  it('enforces pool sizes that keep TS packets whole', () => {
    expect(() => validatePoolRequest(4, 1000)).toThrow(/multiple of 188/);
    expect(() => validatePoolRequest(4, 188 * 4097)).toThrow(/at most 770048/);
    expect(() => validatePoolRequest(1, 188)).toThrow(/count must be/);
    expect(() => validatePoolRequest(4, 188 * 64)).not.toThrow();
  });
});

describe('system errors', () => {
  it('a missing device is ENOENT from open, with the path', () => {
    const e = caught(() => new Demux('/dev/dvb/adapter7/demux0', { simulation })) as DmxError;
    expect(e).toBeInstanceOf(DmxError);
    expect(e).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open', path: '/dev/dvb/adapter7/demux0' });
    expect(e.message).toMatch(/open failed on \/dev\/dvb\/adapter7\/demux0: ENOENT/);
    expect(JSON.parse(JSON.stringify(e))).toMatchObject({ code: 'ENOENT', syscall: 'open' });
  });

  it('a kernel without CONFIG_DVB_MMAP answers ENOTTY, and the error says so', () => {
    const noMmap = new Simulation({ adapters: [{ adapter: 0, mmap: false }] });
    const demux = new Demux(DEMUX_PATH, { simulation: noMmap });
    try {
      demux.setPesFilter({ pid: 0x100, start: true });
      const e = caught(() => demux.requestBuffers(4, 188 * 64)) as DmxError;
      expect(e).toMatchObject({ code: 'ENOTTY', request: 'DMX_REQBUFS', args: { count: 4, size: 12032 } });
      expect(e.detail).toMatch(/CONFIG_DVB_MMAP/);
      const dvr = caught(() => new Demux(DVR_PATH, { simulation: noMmap, kind: 'dvr' })) as DmxError;
      expect(dvr.code).toBe('EOPNOTSUPP');
    } finally {
      demux.close();
      noMmap.close();
    }
  });

  it('an unknown decoder name is ENOENT naming it', () => {
    const e = caught(() => new Decoder('hantro-vpu', { simulation })) as DmxError;
    expect(e).toMatchObject({ code: 'ENOENT' });
    expect(e.detail).toMatch(/hantro-vpu/);
  });

  it('tuning a read-only frontend is EPERM', () => {
    const fe = new Frontend(FRONTEND_PATH, { simulation, readOnly: true });
    try {
      const e = caught(() => fe.tune({ deliverySystem: 'DVBT', frequency: 474_000_000 })) as DmxError;
      expect(e).toMatchObject({ code: 'EPERM', request: 'FE_SET_PROPERTY' });
      expect(() => fe.tune({ deliverySystem: 'DVB-X', frequency: 1 })).toThrow(RangeError);
    } finally {
      fe.close();
    }
  });

  it('openDemuxPool closes what it opened when a step fails', () => {
    const noMmap = new Simulation({ adapters: [{ adapter: 0, mmap: false }] });
    try {
      expect(() =>
        openDemuxPool({ path: DEMUX_PATH, filter: { pid: 0x100 }, count: 4, size: 12032, simulation: noMmap }),
      ).toThrow(DmxError);
    } finally {
      noMmap.close();
    }
  });
});
