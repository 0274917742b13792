// Every errno the agent diagnoses, produced for real through the native API
// (the kernel answers, or the native layer refuses with the kernel's answer),
// with the machine-readable `reason` the native layer adds where it knows more
// than the errno. One `produce...()` per cause, one `it` per cause, and each
// error then goes through the agent's diagnose(): the cause it names, the
// numbers its sentence carries, and whether it was prevented.
// Runs on the simulation (npm test) and on vidtv + vim2m under qemu (npm run test:kernel);
// what only a differently built kernel or device can do runs on the simulation only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diagnose } from '../../agent/diagnosis/diagnose.js';
import type { CauseCode, DiagnosisContext } from '../../agent/diagnosis/types.js';
import {
  Decoder,
  Demux,
  DmxError,
  EXPORT_FLAGS,
  openDemuxPool,
  Pump,
  Simulation,
  type SimulationConfig,
} from '../../agent/native/index.js';
import {
  DEMUX_PATH,
  DVR_PATH,
  ES_PID,
  type MediaEnv,
  onKernel,
  openMediaEnv,
  SIM_CONFIG,
  waitFor,
} from '../support/media-env.js';

let env: MediaEnv;
beforeAll(async () => {
  env = await openMediaEnv();
});
afterAll(() => env?.close());

const SIZE = 64 * 188; // 12032
const COUNT = 4;
/** videodev2.h numbers sent raw. */
const V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE = 10;
const V4L2_MEMORY_OVERLAY = 3;
const V4L2_BUF_CAP_SUPPORTS_DMABUF = 0x4;

/**
 * The agent's diagnosis of a produced error: the cause, the errno and ioctl
 * passed through, prevented as the native layer said, and the numbers a
 * firmware engineer needs named in the summary or the remedy.
 */
function expectDiagnosis(
  e: DmxError,
  cause: CauseCode,
  mentions: Array<string | number> = [],
  context: DiagnosisContext = {},
) {
  const event = diagnose(e, { stream: 'test', ...context });
  expect(event.cause).toBe(cause);
  expect(event).toMatchObject({ stream: 'test', errno: e.code, errnoNumber: e.errno, prevented: e.prevented === true });
  expect(event.ioctl).toBe(e.request ?? e.syscall);
  expect(event.args).toEqual(e.args);
  for (const m of mentions) expect(`${event.summary} ${event.remedy}`).toContain(String(m));
  return event;
}

/** Runs `fn`, which must fail with a DmxError, and returns that error. */
function caught(fn: () => unknown): DmxError {
  try {
    fn();
  } catch (err) {
    if (err instanceof DmxError) return err;
    throw err;
  }
  throw new Error('expected the call to fail with a DmxError');
}

function openDemux(opts: { simulation?: Simulation } = env.opts): Demux {
  const demux = new Demux(DEMUX_PATH, opts);
  demux.setPesFilter({ pid: ES_PID, output: 'tsdemux-tap', start: true });
  return demux;
}

function withDemux(fn: (demux: Demux) => DmxError, opts?: { simulation?: Simulation }): DmxError {
  const demux = openDemux(opts);
  try {
    return fn(demux);
  } finally {
    demux.close();
  }
}

function pool(size: number, opts: { simulation?: Simulation } = env.opts): Demux {
  return openDemuxPool({
    path: DEMUX_PATH,
    filter: { pid: ES_PID, output: 'tsdemux-tap' },
    count: COUNT,
    size,
    ...opts,
  });
}

/** vim2m with an RGB24 format of width x height on both queues: OUTPUT sizeimage = w*h*3. */
function vim2m(width: number, height: number, opts: { simulation?: Simulation } = env.opts): Decoder {
  const decoder = new Decoder('vim2m', opts);
  decoder.setFormat('output', { fourcc: 'RGB3', width, height });
  decoder.setFormat('capture', { fourcc: 'RGB3', width, height });
  return decoder;
}

/**
 * Imports buffer 0 of a `poolSize` pool into vim2m at width x height, with
 * bytesused = the pool size (what a full TS buffer carries), into OUTPUT `slot`.
 */
function importError(
  poolSize: number,
  width: number,
  height: number,
  opts: { simulation?: Simulation } = env.opts,
  slot = 0,
): DmxError {
  const demux = pool(poolSize, opts);
  const decoder = vim2m(width, height, opts);
  try {
    decoder.prepare({ outputCount: demux.bufferCount, captureCount: 2 });
    return caught(() => decoder.queueDmabuf(slot, demux.ledger()[0]!.exportFd, poolSize));
  } finally {
    decoder.close();
    demux.close();
  }
}

/** A simulation of its own (sim-only causes), shaped like SIM_CONFIG with changes. */
function withSimulation<T>(config: SimulationConfig, fn: (opts: { simulation: Simulation }) => T): T {
  const simulation = new Simulation(config);
  try {
    return fn({ simulation });
  } finally {
    simulation.close();
  }
}

const simAdapter = SIM_CONFIG.adapters![0]!;
const simDecoder = SIM_CONFIG.decoders![0]!;

// ------------------------------------------------------------------ producers

/** DMX_QBUF of index 99 on a 4-buffer pool, sent to the kernel ({ raw: true }). */
function produceIndexOutOfRange(): DmxError {
  return withDemux((demux) => {
    demux.requestBuffers(COUNT, SIZE);
    return caught(() => demux.queueBuffer(99, { raw: true }));
  });
}

/** The same index without raw: refused before the kernel, shaped as its answer. */
function produceIndexOutOfRangePrevented(): DmxError {
  return withDemux((demux) => {
    demux.requestBuffers(COUNT, SIZE);
    return caught(() => demux.queueBuffer(99));
  });
}

/** VIDIOC_QBUF of an OUTPUT slot beyond what REQBUFS granted. */
function produceDecoderSlotOutOfRange(): DmxError {
  return importError(3008, 32, 32, env.opts, 20);
}

/** DMX_EXPBUF with O_APPEND. */
function produceExpbufFlagsUnsupported(): DmxError {
  return withDemux((demux) => {
    demux.requestBuffers(COUNT, SIZE);
    return caught(() => demux.exportBuffer(0, { flags: EXPORT_FLAGS.O_CLOEXEC | EXPORT_FLAGS.O_APPEND }));
  });
}

/** DMX_EXPBUF before any DMX_REQBUFS, sent to the kernel. */
function produceNoBuffersAllocated(): DmxError {
  return withDemux((demux) => caught(() => demux.exportBuffer(0, { raw: true })));
}

/** DMX_QBUF before any DMX_REQBUFS, refused before the kernel. */
function produceNoBuffersAllocatedPrevented(): DmxError {
  return withDemux((demux) => caught(() => demux.queueBuffer(0)));
}

/** DMX_QBUF of a buffer the kernel already holds. */
function produceBufferAlreadyQueued(): DmxError {
  return withDemux((demux) => {
    demux.requestBuffers(COUNT, SIZE);
    demux.queueBuffer(0);
    return caught(() => demux.queueBuffer(0));
  });
}

/**
 * A DMX_REQBUFS with a larger size reaches the kernel on a streaming fd and is
 * rejected (EBUSY), but overwrites the kernel's buffer size: the next QBUF of
 * an unprepared buffer does not fit.
 */
function produceBufferSmallerThanExpected(): DmxError {
  return withDemux((demux) => {
    demux.requestBuffers(COUNT, SIZE);
    demux.queueBuffer(0);
    const busy = caught(() => demux.requestBuffers(COUNT, 2 * SIZE, { allowWhileStreaming: true }));
    expect(busy).toMatchObject({ code: 'EBUSY', request: 'DMX_REQBUFS' });
    expect(busy.prevented).toBeUndefined();
    return caught(() => demux.queueBuffer(1));
  });
}

/** DMX_REQBUFS on a streaming fd, refused before the kernel (it would kill the stream). */
function produceReqbufsWhileStreaming(): DmxError {
  return withDemux((demux) => {
    demux.requestBuffers(COUNT, SIZE);
    demux.queueBuffer(0);
    return caught(() => demux.requestBuffers(COUNT, SIZE));
  });
}

/** DMX_DQBUF from JS while a pump drives the pool. */
async function producePumpAttached(): Promise<DmxError> {
  const demux = pool(SIZE);
  const pump = new Pump({ demux });
  try {
    pump.start();
    await waitFor(() => pump.running, 5_000, 'the pump');
    return caught(() => demux.dequeueBuffer());
  } finally {
    pump.close();
    demux.close();
  }
}

/** bytesused 12032 against vim2m's 32x32 RGB24 sizeimage 3072. */
function produceImportBytesusedAboveSizeimage(): DmxError {
  return importError(12032, 32, 32);
}

/** A 3008-byte buffer (a 4096-byte dmabuf) against a 64x32 RGB24 sizeimage 6144. */
function produceImportDmabufBelowSizeimage(): DmxError {
  return importError(3008, 64, 32);
}

/** VIDIOC_REQBUFS with VIDEO_OUTPUT_MPLANE on single-planar vim2m. */
function produceV4l2BufferTypeUnsupported(): DmxError {
  const decoder = vim2m(64, 64);
  try {
    return caught(() =>
      decoder.requestBuffers('output', 'dmabuf', COUNT, { raw: { type: V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE } }),
    );
  } finally {
    decoder.close();
  }
}

/** VIDIOC_REQBUFS with V4L2_MEMORY_OVERLAY, which vb2 never takes. */
function produceV4l2MemoryTypeUnsupported(): DmxError {
  const decoder = vim2m(64, 64);
  try {
    return caught(() => decoder.requestBuffers('output', 'dmabuf', COUNT, { raw: { memory: V4L2_MEMORY_OVERLAY } }));
  } finally {
    decoder.close();
  }
}

// Sim-only producers: a kernel or device built differently from vidtv + vim2m.

/** DMABUF REQBUFS on an OUTPUT queue whose io_modes lack DMABUF (learned from an MMAP probe). */
function produceDmabufNotInIoModes(): DmxError {
  const config: SimulationConfig = { ...SIM_CONFIG, decoders: [{ ...simDecoder, outputMemory: ['mmap'] }] };
  return withSimulation(config, (opts) => {
    const decoder = vim2m(64, 64, opts);
    try {
      const caps = decoder.probeBuffers('output', 'mmap');
      expect(caps).toMatchObject({ supportsMmap: true, supportsUserptr: false, supportsDmabuf: false });
      return caught(() => decoder.requestBuffers('output', 'dmabuf', COUNT));
    } finally {
      decoder.close();
    }
  });
}

/** A 12032-byte vmalloc demux buffer into a dma-contig decoder. */
function produceImportMemoryNotContiguous(): DmxError {
  const config: SimulationConfig = { ...SIM_CONFIG, decoders: [{ ...simDecoder, contiguous: true }] };
  return withSimulation(config, (opts) => importError(12032, 64, 64, opts));
}

const noMmapConfig: SimulationConfig = { ...SIM_CONFIG, adapters: [{ ...simAdapter, mmap: false }] };

/** DMX_REQBUFS on a kernel without CONFIG_DVB_MMAP. */
function produceDvbMmapMissing(): DmxError {
  return withSimulation(noMmapConfig, (opts) =>
    withDemux((demux) => caught(() => demux.requestBuffers(COUNT, SIZE)), opts),
  );
}

/** The DVR opened O_RDWR on a kernel without CONFIG_DVB_MMAP. */
function produceDvbMmapMissingOnDvr(): DmxError {
  return withSimulation(noMmapConfig, (opts) => caught(() => new Demux(DVR_PATH, { ...opts, kind: 'dvr' })));
}

/** DMX_EXPBUF on a queue whose allocator cannot export (no get_dmabuf). */
function produceExportUnsupported(): DmxError {
  const config: SimulationConfig = { ...SIM_CONFIG, adapters: [{ ...simAdapter, exportable: false }] };
  return withSimulation(config, (opts) =>
    withDemux((demux) => {
      demux.requestBuffers(COUNT, SIZE);
      return caught(() => demux.exportBuffer(0));
    }, opts),
  );
}

// ---------------------------------------------------------------------- tests

describe('EINVAL on the DVB mmap ioctls', () => {
  it('index-out-of-range: from the kernel, with the pool count', () => {
    const e = produceIndexOutOfRange();
    expect(e).toMatchObject({ code: 'EINVAL', syscall: 'ioctl', request: 'DMX_QBUF', path: DEMUX_PATH });
    expect(e.reason).toBe('index-out-of-range');
    expect(e.prevented).toBeUndefined();
    expect(e.args).toEqual({ index: 99, count: COUNT });
    expectDiagnosis(e, 'index-out-of-range', [99, COUNT]);
  });

  it('index-out-of-range: refused before the kernel, prevented', () => {
    const e = produceIndexOutOfRangePrevented();
    expect(e).toMatchObject({ code: 'EINVAL', errno: -22, syscall: 'ioctl', request: 'DMX_QBUF' });
    expect(e.reason).toBe('index-out-of-range');
    expect(e.prevented).toBe(true);
    expect(e.args).toEqual({ index: 99, count: COUNT });
    expect(expectDiagnosis(e, 'index-out-of-range', [99]).prevented).toBe(true);
  });

  it('index-out-of-range: a decoder OUTPUT slot beyond the granted count', () => {
    const e = produceDecoderSlotOutOfRange();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'VIDIOC_QBUF', reason: 'index-out-of-range' });
    expect(e.prevented).toBeUndefined();
    expect(e.args).toMatchObject({ index: 20, count: COUNT });
    expectDiagnosis(e, 'index-out-of-range', [20]);
  });

  it('expbuf-flags-unsupported: O_APPEND', () => {
    const e = produceExpbufFlagsUnsupported();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'DMX_EXPBUF', reason: 'expbuf-flags-unsupported' });
    expect(e.prevented).toBeUndefined();
    expect(e.args).toMatchObject({ index: 0, flags: EXPORT_FLAGS.O_CLOEXEC | EXPORT_FLAGS.O_APPEND });
    expectDiagnosis(e, 'expbuf-flags-unsupported', ['O_APPEND']);
  });

  it('no-buffers-allocated: EXPBUF before REQBUFS, from the kernel', () => {
    const e = produceNoBuffersAllocated();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'DMX_EXPBUF', reason: 'no-buffers-allocated' });
    expect(e.prevented).toBeUndefined();
    expect(e.args).toMatchObject({ index: 0, count: 0 });
    expectDiagnosis(e, 'no-buffers-allocated', ['DMX_REQBUFS']);
  });

  it('no-buffers-allocated: QBUF before REQBUFS, refused before the kernel', () => {
    const e = produceNoBuffersAllocatedPrevented();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'DMX_QBUF', reason: 'no-buffers-allocated', prevented: true });
    expect(e.args).toEqual({ index: 0, count: 0 });
    expectDiagnosis(e, 'no-buffers-allocated', ['DMX_REQBUFS']);
  });

  it('buffer-already-queued: QBUF twice', () => {
    const e = produceBufferAlreadyQueued();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'DMX_QBUF', reason: 'buffer-already-queued' });
    expect(e.prevented).toBeUndefined();
    expect(e.args).toMatchObject({ index: 0 });
    expectDiagnosis(e, 'buffer-already-queued');
  });

  it('buffer-smaller-than-expected: QBUF after a larger REQBUFS the kernel rejected', () => {
    const e = produceBufferSmallerThanExpected();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'DMX_QBUF', reason: 'buffer-smaller-than-expected' });
    expect(e.prevented).toBeUndefined();
    expect(e.args).toEqual({ index: 1, expectedSize: 2 * SIZE, length: SIZE });
    expectDiagnosis(e, 'buffer-smaller-than-expected', [2 * SIZE, SIZE]);
  });

  it.skipIf(onKernel)(
    'export-unsupported: EXPBUF on an allocator without get_dmabuf (no reason: native cannot tell)',
    () => {
      const e = produceExportUnsupported();
      expect(e).toMatchObject({ code: 'EINVAL', request: 'DMX_EXPBUF' });
      expect(e.reason).toBeUndefined();
      expect(e.prevented).toBeUndefined();
      expect(e.args).toMatchObject({ index: 0, flags: EXPORT_FLAGS.O_CLOEXEC | EXPORT_FLAGS.O_RDWR });
      // The agent rules out the flags, the index and an empty pool from what it knows.
      expectDiagnosis(e, 'export-unsupported', [], { pool: { count: COUNT, size: SIZE, streaming: false } });
    },
  );
});

describe('EINVAL / EFAULT on the V4L2 decoder', () => {
  it('v4l2-buffer-type-unsupported: VIDEO_OUTPUT_MPLANE on single-planar vim2m', () => {
    const e = produceV4l2BufferTypeUnsupported();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'VIDIOC_REQBUFS', reason: 'v4l2-buffer-type-unsupported' });
    expect(e.args).toMatchObject({ type: V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE, count: COUNT });
    expectDiagnosis(e, 'v4l2-buffer-type-unsupported', ['MPLANE']);
  });

  it('v4l2-memory-type-unsupported: V4L2_MEMORY_OVERLAY', () => {
    const e = produceV4l2MemoryTypeUnsupported();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'VIDIOC_REQBUFS', reason: 'v4l2-memory-type-unsupported' });
    expect(e.args).toMatchObject({ memory: V4L2_MEMORY_OVERLAY, count: COUNT });
    expectDiagnosis(e, 'v4l2-memory-type-unsupported', ['OVERLAY']);
  });

  it.skipIf(onKernel)('v4l2-memory-type-unsupported: DMABUF on an OUTPUT queue that only maps (MMAP io_modes)', () => {
    const e = produceDmabufNotInIoModes();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'VIDIOC_REQBUFS', reason: 'v4l2-memory-type-unsupported' });
    expect(e.args.capabilities! & V4L2_BUF_CAP_SUPPORTS_DMABUF).toBe(0);
    expectDiagnosis(e, 'v4l2-memory-type-unsupported', ['DMABUF']);
  });

  it('import-bytesused-above-sizeimage: a 12032-byte buffer against sizeimage 3072', () => {
    const e = produceImportBytesusedAboveSizeimage();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'VIDIOC_QBUF', reason: 'import-bytesused-above-sizeimage' });
    expect(e.args).toMatchObject({ bytesused: 12032, dmabufSize: 12288, sizeimage: 3072 });
    expectDiagnosis(e, 'import-bytesused-above-sizeimage', [12032, 3072]);
  });

  it('import-dmabuf-below-sizeimage: a 4096-byte dmabuf against sizeimage 6144', () => {
    const e = produceImportDmabufBelowSizeimage();
    expect(e).toMatchObject({ code: 'EINVAL', request: 'VIDIOC_QBUF', reason: 'import-dmabuf-below-sizeimage' });
    expect(e.args).toMatchObject({ bytesused: 3008, dmabufSize: 4096, sizeimage: 6144 });
    expectDiagnosis(e, 'import-dmabuf-below-sizeimage', [4096, 6144, 3008]);
  });

  it.skipIf(onKernel)('import-memory-not-contiguous: vmalloc demux memory into a dma-contig decoder (EFAULT)', () => {
    const e = produceImportMemoryNotContiguous();
    expect(e).toMatchObject({ code: 'EFAULT', request: 'VIDIOC_QBUF', reason: 'import-memory-not-contiguous' });
    // The sizes fit: only the memory itself is wrong.
    expect(e.args).toMatchObject({ bytesused: 12032, dmabufSize: 12288, sizeimage: 12288 });
    expectDiagnosis(e, 'import-memory-not-contiguous', ['contiguous']);
  });
});

describe("the kernel's build", () => {
  it.skipIf(onKernel)('dvb-mmap-missing: DMX_REQBUFS is ENOTTY without CONFIG_DVB_MMAP', () => {
    const e = produceDvbMmapMissing();
    expect(e).toMatchObject({ code: 'ENOTTY', request: 'DMX_REQBUFS', reason: 'dvb-mmap-missing' });
    expect(e.args).toEqual({ count: COUNT, size: SIZE });
    expectDiagnosis(e, 'dvb-mmap-missing', ['CONFIG_DVB_MMAP']);
  });

  it.skipIf(onKernel)('dvb-mmap-missing: the DVR refuses O_RDWR with EOPNOTSUPP', () => {
    const e = produceDvbMmapMissingOnDvr();
    expect(e).toMatchObject({ code: 'EOPNOTSUPP', syscall: 'open', path: DVR_PATH, reason: 'dvb-mmap-missing' });
    expect(e.request).toBeUndefined();
    expectDiagnosis(e, 'dvb-mmap-missing', ['CONFIG_DVB_MMAP']);
  });
});

describe('the queue and its lifetime (refused before the kernel)', () => {
  it('reqbufs-while-streaming', () => {
    const e = produceReqbufsWhileStreaming();
    expect(e).toMatchObject({
      code: 'EBUSY',
      request: 'DMX_REQBUFS',
      reason: 'reqbufs-while-streaming',
      prevented: true,
    });
    expect(e.args).toEqual({ count: COUNT, size: SIZE });
    expectDiagnosis(e, 'reqbufs-while-streaming', ['reopen']);
  });

  it('pump-attached', async () => {
    const e = await producePumpAttached();
    expect(e).toMatchObject({ code: 'EBUSY', request: 'DMX_DQBUF', reason: 'pump-attached', prevented: true });
    expectDiagnosis(e, 'pump-attached');
  });
});
