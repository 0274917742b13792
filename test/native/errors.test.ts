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
      expect(() => demux.queueBuffer(-1)).toThrow(RangeError);
      expect(() => demux.queueBuffer(1024)).toThrow(RangeError);
      expect(() => demux.queueBuffer(0.5)).toThrow(RangeError);
      expect(() => demux.queueBuffer('0' as never)).toThrow(TypeError);
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

  it('validates the simulation options that build a differently made device', () => {
    expect(() => new Simulation({ adapters: [{ exportable: 'no' as never }] })).toThrow(TypeError);
    expect(() => new Simulation({ decoders: [{ contiguous: 1 as never }] })).toThrow(TypeError);
    expect(() => new Simulation({ decoders: [{ outputMemory: 'mmap' as never }] })).toThrow(TypeError);
    expect(() => new Simulation({ decoders: [{ outputMemory: [] }] })).toThrow(/at least one memory type/);
    expect(() => new Simulation({ decoders: [{ outputMemory: ['overlay' as never] }] })).toThrow(RangeError);
    expect(() => new Simulation({ decoders: [{ outputMemory: ['mmap', 'mmap'] }] })).toThrow(/listed twice/);
    const made = new Simulation({
      adapters: [{ exportable: false }],
      decoders: [{ contiguous: true, outputMemory: ['mmap', 'dmabuf'] }],
    });
    try {
      const decoder = new Decoder('vim2m', { simulation: made });
      try {
        const caps = decoder.probeBuffers('output', 'mmap');
        expect(caps).toMatchObject({ supportsMmap: true, supportsUserptr: false, supportsDmabuf: true });
        expect(decoder.probeBuffers('capture', 'mmap').supportsUserptr).toBe(true);
      } finally {
        decoder.close();
      }
    } finally {
      made.close();
    }
  });

  it('enforces pool sizes that keep TS packets whole', () => {
    expect(() => validatePoolRequest(4, 1000)).toThrow(/multiple of 188/);
    expect(() => validatePoolRequest(4, 188 * 4097)).toThrow(/at most 770048/);
    expect(() => validatePoolRequest(1, 188)).toThrow(/count must be/);
    expect(() => validatePoolRequest(4, 188 * 64)).not.toThrow();
  });
});

describe('index checks (refused before the kernel, shaped as its answer)', () => {
  it('an index the pool lacks is the EINVAL the kernel would give, marked prevented', () => {
    const demux = new Demux(DEMUX_PATH, { simulation });
    try {
      const none = caught(() => demux.queueBuffer(0)) as DmxError;
      expect(none).toBeInstanceOf(DmxError);
      expect(none).toMatchObject({
        code: 'EINVAL',
        errno: -22,
        syscall: 'ioctl',
        request: 'DMX_QBUF',
        path: DEMUX_PATH,
        reason: 'no-buffers-allocated',
        prevented: true,
        args: { index: 0, count: 0 },
      });
      expect(none.message).toMatch(/refused before the kernel/);
      demux.requestBuffers(2, 188 * 16);
      const cases = [
        [() => demux.queueBuffer(5), 'DMX_QBUF'],
        [() => demux.queryBuffer(5), 'DMX_QUERYBUF'],
        [() => demux.exportBuffer(5), 'DMX_EXPBUF'],
      ] as const;
      for (const [call, request] of cases) {
        const e = caught(call) as DmxError;
        expect(e).toBeInstanceOf(DmxError);
        expect(e).toMatchObject({ code: 'EINVAL', syscall: 'ioctl', request, reason: 'index-out-of-range' });
        expect(e.prevented).toBe(true);
        expect(e.args).toEqual({ index: 5, count: 2 });
        expect(e.toJSON()).toMatchObject({ reason: 'index-out-of-range', prevented: true });
      }
      const peek = caught(() => demux.peek(5)) as DmxError;
      expect(peek).toMatchObject({ code: 'EINVAL', syscall: 'peek', reason: 'index-out-of-range', prevented: true });
      expect(peek.request).toBeUndefined();
    } finally {
      demux.close();
    }
  });

  it('an error the kernel gave carries no prevented flag', () => {
    const demux = new Demux(DEMUX_PATH, { simulation });
    try {
      demux.requestBuffers(2, 188 * 16);
      const e = caught(() => demux.queueBuffer(5, { raw: true })) as DmxError;
      expect(e).toMatchObject({ code: 'EINVAL', request: 'DMX_QBUF', reason: 'index-out-of-range' });
      expect(e.prevented).toBeUndefined();
      expect('prevented' in e.toJSON()).toBe(false);
    } finally {
      demux.close();
    }
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
      expect(e.reason).toBe('dvb-mmap-missing');
      expect(e.detail).toMatch(/CONFIG_DVB_MMAP/);
      const dvr = caught(() => new Demux(DVR_PATH, { simulation: noMmap, kind: 'dvr' })) as DmxError;
      expect(dvr).toMatchObject({ code: 'EOPNOTSUPP', syscall: 'open', reason: 'dvb-mmap-missing' });
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
