// Every cause code from an error shaped as the native layer produces it:
// the cause, the numbers in the summary and remedy, and the pass-through of
// errno, ioctl and args. Then the variants, the native `reason`, the
// fallbacks, and errors that are not DmxErrors.
import { openSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { diagnose, diagnoseUnknown, errnoNumberOf, preventedEvent } from '../../agent/diagnosis/diagnose.js';
import type { CauseCode, DiagnosisContext, ErrnoEvent } from '../../agent/diagnosis/types.js';
import { DmxError } from '../../agent/native/dmx-error.js';
import { DEMUX, DVR, FRONTEND, nativeError, O_APPEND, O_CLOEXEC, O_RDWR, OPEN_FLAGS, VIDEO } from './native-errors.js';

const AT = 1_700_000_000_000;
const POOL = { count: 4, size: 12032, streaming: true };
const VIM2M = { path: VIDEO, name: 'vim2m', multiplanar: false, outputSizeimage: 12288, capabilities: 0x1f };
const HD: DiagnosisContext = { stream: 'hd', pool: POOL, decoder: VIM2M };

interface CauseCase {
  event: () => ErrnoEvent;
  errno: string;
  ioctl: string;
  args: Record<string, number>;
  prevented?: boolean;
  summary: string[];
  remedy: string[];
}

// A Record over CauseCode: the compiler refuses this table if a cause lacks its case.
const CASES: Record<CauseCode, CauseCase> = {
  'index-out-of-range': {
    event: () =>
      diagnose(nativeError({ code: 'EINVAL', request: 'DMX_QBUF', path: DEMUX, args: { index: 9 } }), HD, AT),
    errno: 'EINVAL',
    ioctl: 'DMX_QBUF',
    args: { index: 9 },
    summary: ['buffer index 9', 'has 4 buffers', '0..3'],
    remedy: ['below 4'],
  },
  'expbuf-flags-unsupported': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EINVAL',
          request: 'DMX_EXPBUF',
          path: DEMUX,
          args: { index: 0, flags: O_CLOEXEC | O_APPEND },
          detail: 'flags may only combine O_CLOEXEC and O_ACCMODE bits',
        }),
        HD,
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'DMX_EXPBUF',
    args: { index: 0, flags: O_CLOEXEC | O_APPEND },
    summary: ['flags 02002000', 'O_APPEND', 'O_CLOEXEC (02000000)'],
    remedy: ['drop O_APPEND', '02000002'],
  },
  'no-buffers-allocated': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EINVAL',
          request: 'DMX_EXPBUF',
          path: DEMUX,
          args: { index: 0, flags: O_CLOEXEC | O_RDWR },
        }),
        { stream: 'hd', pool: { count: 0, size: 12032, streaming: false } },
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'DMX_EXPBUF',
    args: { index: 0, flags: O_CLOEXEC | O_RDWR },
    summary: ['DMX_EXPBUF', 'no buffers', 'MMAP mode'],
    remedy: ['DMX_REQBUFS', '12032'],
  },
  'export-unsupported': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EINVAL',
          request: 'DMX_EXPBUF',
          path: DEMUX,
          args: { index: 2, flags: O_CLOEXEC | O_RDWR },
        }),
        HD,
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'DMX_EXPBUF',
    args: { index: 2, flags: O_CLOEXEC | O_RDWR },
    summary: ['buffer 2', 'flags are valid', 'cannot export'],
    remedy: ['CONFIG_DMA_SHARED_BUFFER'],
  },
  'buffer-already-queued': {
    event: () =>
      diagnose(nativeError({ code: 'EINVAL', request: 'DMX_QBUF', path: DEMUX, args: { index: 0 } }), HD, AT),
    errno: 'EINVAL',
    ioctl: 'DMX_QBUF',
    args: { index: 0 },
    summary: ['buffer 0', 'already queued'],
    remedy: ['buffer 0', 'DMX_DQBUF', 'ledger'],
  },
  'buffer-smaller-than-expected': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EINVAL',
          request: 'DMX_QBUF',
          path: DEMUX,
          args: { index: 1, expectedSize: 24064, length: 12032 },
          detail:
            "a rejected DMX_REQBUFS set the kernel's buffer size to 24064 bytes, larger than the pool's 12032-byte buffers; close and reopen the node",
        }),
        HD,
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'DMX_QBUF',
    args: { index: 1, expectedSize: 24064, length: 12032 },
    summary: ['buffer 1', '12032 bytes', 'expects 24064', 'rejected DMX_REQBUFS'],
    remedy: ['reopen', 'never issue DMX_REQBUFS on a streaming fd'],
  },
  'not-streaming': {
    event: () =>
      diagnose(nativeError({ code: 'EINVAL', request: 'DMX_DQBUF', path: DEMUX }), {
        stream: 'hd',
        pool: { ...POOL, streaming: false },
      }),
    errno: 'EINVAL',
    ioctl: 'DMX_DQBUF',
    args: {},
    summary: ['not streaming', 'first successful DMX_QBUF'],
    remedy: ['queue at least one buffer'],
  },
  'v4l2-buffer-type-unsupported': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EINVAL',
          request: 'VIDIOC_REQBUFS',
          path: VIDEO,
          args: { count: 4, type: 10, memory: 4 },
          detail: 'the queue does not support that buffer type or memory type',
        }),
        HD,
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'VIDIOC_REQBUFS',
    args: { count: 4, type: 10, memory: 4 },
    summary: ['VIDEO_OUTPUT_MPLANE (10)', 'single-planar', 'VIDEO_OUTPUT (2)', 'VIDEO_CAPTURE (1)'],
    remedy: ['VIDEO_OUTPUT (2)'],
  },
  'v4l2-memory-type-unsupported': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EINVAL',
          request: 'VIDIOC_REQBUFS',
          path: VIDEO,
          args: { count: 4, type: 2, memory: 4 },
          detail: 'the queue does not support that buffer type or memory type',
        }),
        { stream: 'hd', decoder: { ...VIM2M, capabilities: 0x3 } },
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'VIDIOC_REQBUFS',
    args: { count: 4, type: 2, memory: 4 },
    summary: ['DMABUF (4)', 'supports MMAP, USERPTR', 'capabilities 0x3'],
    remedy: ['cannot import DMABUFs', 'consumer sink'],
  },
  'import-bytesused-above-sizeimage': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EINVAL',
          request: 'VIDIOC_QBUF',
          path: VIDEO,
          args: { index: 0, fd: 23, bytesused: 12032, dmabufSize: 12288, sizeimage: 3072 },
          detail:
            "bytesused 12032 exceeds the decoder's OUTPUT sizeimage 3072: use pool buffers no larger than sizeimage",
        }),
        { stream: 'hd', pool: POOL, decoder: { ...VIM2M, outputSizeimage: 3072 } },
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'VIDIOC_QBUF',
    args: { index: 0, fd: 23, bytesused: 12032, dmabufSize: 12288, sizeimage: 3072 },
    summary: ['bytesused 12032', 'OUTPUT sizeimage 3072', 'dmabuf is 12288 bytes'],
    remedy: ['between 188 and 3008 for sizeimage 3072', 'sizeimage is between 12032 and 12288'],
  },
  'import-dmabuf-below-sizeimage': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EINVAL',
          request: 'VIDIOC_QBUF',
          path: VIDEO,
          args: { index: 1, fd: 24, bytesused: 3008, dmabufSize: 4096, sizeimage: 6144 },
          detail:
            "the dmabuf (4096 bytes) is smaller than the decoder's OUTPUT sizeimage 6144: use pool buffers whose page-aligned size reaches sizeimage",
        }),
        { stream: 'sd', pool: { count: 8, size: 3008, streaming: true }, decoder: { ...VIM2M, outputSizeimage: 6144 } },
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'VIDIOC_QBUF',
    args: { index: 1, fd: 24, bytesused: 3008, dmabufSize: 4096, sizeimage: 6144 },
    summary: ["the pool buffer's dmabuf is 4096 bytes but the decoder's OUTPUT sizeimage is 6144; bytesused was 3008"],
    remedy: ['between 4136 and 6016', 'smaller OUTPUT format (sizeimage between 3008 and 4096)'],
  },
  'import-memory-not-contiguous': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EFAULT',
          request: 'VIDIOC_QBUF',
          path: VIDEO,
          args: { index: 0, fd: 23, bytesused: 12032, dmabufSize: 12288, sizeimage: 12288 },
          detail:
            'the decoder could not map the dmabuf; it may need physically contiguous memory (demux buffers are vmalloc)',
        }),
        { stream: 'hd', decoder: { path: VIDEO, name: 'contig-dec', outputSizeimage: 12288, capabilities: 0x5 } },
        AT,
      ),
    errno: 'EFAULT',
    ioctl: 'VIDIOC_QBUF',
    args: { index: 0, fd: 23, bytesused: 12032, dmabufSize: 12288, sizeimage: 12288 },
    summary: ['(contig-dec)', 'bytesused 12032 <= sizeimage 12288 <= dmabuf 12288', 'physically contiguous', 'vmalloc'],
    remedy: ['external consumer sink', 'IOMMU'],
  },
  'decoder-format-rejected': {
    event: () =>
      diagnose(
        nativeError({ code: 'EINVAL', request: 'VIDIOC_S_FMT', path: VIDEO, args: { type: 2, width: 64, height: 64 } }),
        HD,
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'VIDIOC_S_FMT',
    args: { type: 2, width: 64, height: 64 },
    summary: ['VIDEO_OUTPUT (2)', '64x64'],
    remedy: ["enumFormats('output')"],
  },
  'dvb-mmap-missing': {
    event: () =>
      diagnose(
        nativeError({
          code: 'ENOTTY',
          request: 'DMX_REQBUFS',
          path: DEMUX,
          args: { count: 4, size: 12032 },
          detail: 'the kernel has no CONFIG_DVB_MMAP (the DVB mmap API is off by default)',
        }),
        HD,
        AT,
      ),
    errno: 'ENOTTY',
    ioctl: 'DMX_REQBUFS',
    args: { count: 4, size: 12032 },
    summary: ['DMX_REQBUFS', 'without CONFIG_DVB_MMAP'],
    remedy: ['CONFIG_DVB_MMAP=y'],
  },
  'device-missing': {
    event: () =>
      diagnose(
        nativeError({ code: 'ENOENT', syscall: 'open', path: '/dev/dvb/adapter7/demux0', args: { flags: OPEN_FLAGS } }),
        { stream: 'hd' },
        AT,
      ),
    errno: 'ENOENT',
    ioctl: 'open',
    args: { flags: OPEN_FLAGS },
    summary: ['/dev/dvb/adapter7/demux0 is not there', 'ENOENT (No such file or directory)'],
    remedy: ['/sys/class/dvb', 'keeps looking'],
  },
  'device-busy': {
    event: () =>
      diagnose(nativeError({ code: 'EBUSY', syscall: 'open', path: DVR, args: { flags: OPEN_FLAGS } }), HD, AT),
    errno: 'EBUSY',
    ioctl: 'open',
    args: { flags: OPEN_FLAGS },
    summary: [`${DVR} is busy`, 'another process'],
    remedy: [`fuser -v ${DVR}`],
  },
  'permission-denied': {
    event: () =>
      diagnose(nativeError({ code: 'EACCES', syscall: 'open', path: VIDEO, args: { flags: OPEN_FLAGS } }), HD, AT),
    errno: 'EACCES',
    ioctl: 'open',
    args: { flags: OPEN_FLAGS },
    summary: ['EACCES (Permission denied)', VIDEO],
    remedy: ["group 'video'", VIDEO],
  },
  'frontend-unsupported': {
    event: () => diagnose(nativeError({ code: 'E524', request: 'FE_GET_PROPERTY', path: FRONTEND }), HD, AT),
    errno: 'E524',
    ioctl: 'FE_GET_PROPERTY',
    args: {},
    summary: ['does not support FE_GET_PROPERTY', 'ENOTSUPP 524'],
    remedy: ['FE_GET_INFO'],
  },
  'decoder-gone': {
    event: () =>
      diagnose(nativeError({ code: 'ENODEV', request: 'VIDIOC_DQBUF', path: VIDEO, args: { type: 2 } }), HD, AT),
    errno: 'ENODEV',
    ioctl: 'VIDIOC_DQBUF',
    args: { type: 2 },
    summary: ['/dev/video0 (vim2m) went away', 'ENODEV (No such device)', 'keeps cycling'],
    remedy: ['dmesg', 'reopens the decoder'],
  },
  'reqbufs-while-streaming': {
    // requestBuffers(..., { allowWhileStreaming: true }): the kernel saw it.
    event: () =>
      diagnose(
        nativeError({ code: 'EBUSY', request: 'DMX_REQBUFS', path: DEMUX, args: { count: 4, size: 24064 } }),
        HD,
        AT,
      ),
    errno: 'EBUSY',
    ioctl: 'DMX_REQBUFS',
    args: { count: 4, size: 24064 },
    prevented: false,
    summary: ['count 4, size 24064', 'streaming', 'dead'],
    remedy: ['rebuilt now', 'reopen'],
  },
  'pump-attached': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EBUSY',
          request: 'DMX_QBUF',
          path: DEMUX,
          detail: 'a pump is driving this pool; stop or close the pump first',
        }),
        HD,
        AT,
      ),
    errno: 'EBUSY',
    ioctl: 'DMX_QBUF',
    args: {},
    prevented: true,
    summary: ['DMX_QBUF', 'refused before the kernel saw it', 'a pump is driving this pool'],
    remedy: ['stop or close the pump'],
  },
  'stream-dead': {
    // The supervisor's own finding: a streaming pool that completes nothing after a rejected REQBUFS.
    event: () =>
      preventedEvent(
        'stream-dead',
        {
          stream: 'hd',
          device: DEMUX,
          ioctl: 'DMX_DQBUF',
          args: { secondsWithoutBuffers: 10 },
          message: 'no buffer completed for 10 s after a rejected DMX_REQBUFS',
        },
        AT,
      ),
    errno: 'EBUSY',
    ioctl: 'DMX_DQBUF',
    args: { secondsWithoutBuffers: 10 },
    prevented: true,
    summary: [DEMUX, 'is dead', 'no buffer completed for 10 s'],
    remedy: ['no STREAMOFF'],
  },
  'queue-error': {
    event: () => diagnose(nativeError({ code: 'EIO', request: 'DMX_DQBUF', path: DEMUX }), HD, AT),
    errno: 'EIO',
    ioctl: 'DMX_DQBUF',
    args: {},
    summary: ['DMX_DQBUF', 'EIO', 'error state'],
    remedy: ['dmesg', 'reopen'],
  },
  'end-of-stream': {
    event: () => diagnose(nativeError({ code: 'EPIPE', request: 'DMX_DQBUF', path: DEMUX }), HD, AT),
    errno: 'EPIPE',
    ioctl: 'DMX_DQBUF',
    args: {},
    summary: ['EPIPE', 'last buffer was already dequeued'],
    remedy: ['reopen'],
  },
  'out-of-memory': {
    event: () =>
      diagnose(
        nativeError({ code: 'ENOMEM', request: 'DMX_REQBUFS', path: DEMUX, args: { count: 32, size: 770048 } }),
        HD,
        AT,
      ),
    errno: 'ENOMEM',
    ioctl: 'DMX_REQBUFS',
    args: { count: 32, size: 770048 },
    summary: ['32 x 770048 bytes', '24641536 in all'],
    remedy: ['fewer than 32', 'VmallocUsed'],
  },
  'fd-limit': {
    event: () =>
      diagnose(
        nativeError({
          code: 'EMFILE',
          request: 'DMX_EXPBUF',
          path: DEMUX,
          args: { index: 3, flags: O_CLOEXEC | O_RDWR },
        }),
        HD,
        AT,
      ),
    errno: 'EMFILE',
    ioctl: 'DMX_EXPBUF',
    args: { index: 3, flags: O_CLOEXEC | O_RDWR },
    summary: ['EMFILE', 'the agent has run out of file descriptors'],
    remedy: ['LimitNOFILE'],
  },
  'pool-size-invalid': {
    // agent/native/index.ts validatePoolRequest's message.
    event: () =>
      diagnoseUnknown(
        new RangeError(
          'pool buffer size must be a positive multiple of 188 so TS packets never straddle buffers, got 1000',
        ),
        { stream: 'hd' },
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'argument-check',
    args: { size: 1000 },
    prevented: true,
    summary: ['size 1000', 'multiple of 188'],
    remedy: ['940 or 1128 bytes'],
  },
  'pool-exceeds-decoder-format': {
    event: () =>
      preventedEvent(
        'pool-exceeds-decoder-format',
        {
          stream: 'hd',
          device: DEMUX,
          ioctl: 'DMX_REQBUFS',
          errno: 'EINVAL',
          args: { count: 8, size: 12032, sizeimage: 3072 },
          message: "pool buffers of 12032 bytes exceed the decoder's OUTPUT sizeimage 3072",
        },
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'DMX_REQBUFS',
    args: { count: 8, size: 12032, sizeimage: 3072 },
    prevented: true,
    summary: ['12032 bytes', 'bytesused (12032) would exceed the OUTPUT sizeimage 3072'],
    remedy: ['between 188 and 3008', 'sizeimage is between 12032 and 12288'],
  },
  'invalid-argument': {
    // Both REQBUFS conditions hold on vim2m, so nothing in the catalog explains it.
    event: () =>
      diagnose(
        nativeError({ code: 'EINVAL', request: 'VIDIOC_REQBUFS', path: VIDEO, args: { count: 4, type: 2, memory: 4 } }),
        HD,
        AT,
      ),
    errno: 'EINVAL',
    ioctl: 'VIDIOC_REQBUFS',
    args: { count: 4, type: 2, memory: 4 },
    summary: [
      'no known cause matches',
      'ruled out',
      'supports DMABUF (4) memory',
      "buffer type 2 is one of this single-planar decoder's queues",
    ],
    remedy: ['videobuf2_common', 'dmesg'],
  },
  unexplained: {
    event: () =>
      diagnose(
        nativeError({ code: 'ENOTTY', request: 'VIDIOC_SUBSCRIBE_EVENT', path: VIDEO, args: { type: 5 } }),
        HD,
        AT,
      ),
    errno: 'ENOTTY',
    ioctl: 'VIDIOC_SUBSCRIBE_EVENT',
    args: { type: 5 },
    summary: ['VIDIOC_SUBSCRIBE_EVENT', 'ENOTTY (Inappropriate ioctl for device)', 'no known cause'],
    remedy: ['dmesg'],
  },
};

describe('each cause code from a realistic native error', () => {
  it.each(Object.entries(CASES) as Array<[CauseCode, CauseCase]>)('%s', (cause, c) => {
    const event = c.event();
    expect(event.cause).toBe(cause);
    expect(event.errno).toBe(c.errno);
    expect(event.errnoNumber).toBe(errnoNumberOf(c.errno));
    expect(event.errnoNumber).toBeLessThan(0);
    expect(event.ioctl).toBe(c.ioctl);
    expect(event.args).toEqual(c.args);
    if (c.prevented !== undefined) expect(event.prevented).toBe(c.prevented);
    for (const text of c.summary) expect(event.summary).toContain(text);
    for (const text of c.remedy) expect(event.remedy).toContain(text);
    expect(`${event.summary} ${event.remedy}`).not.toMatch(/undefined|NaN|\?/);
    expect(event.count).toBe(1);
  });
});

describe('the event', () => {
  it('carries stream, device, syscall, message and the time, and copies the args', () => {
    const error = nativeError({ code: 'EINVAL', request: 'DMX_QBUF', path: DEMUX, args: { index: 0 } });
    const event = diagnose(error, HD, AT);
    expect(event).toMatchObject({
      stream: 'hd',
      device: DEMUX,
      syscall: 'ioctl',
      errnoNumber: -22,
      message: error.message,
      prevented: false,
      count: 1,
      firstAtMs: AT,
      lastAtMs: AT,
    });
    expect(event.args).not.toBe(error.args);
  });

  it('has no stream and no device when neither is known, and uses the syscall as the ioctl', () => {
    const event = diagnose(nativeError({ code: 'EMFILE', syscall: 'eventfd' }), {}, AT);
    expect(event).toMatchObject({
      stream: null,
      device: null,
      ioctl: 'eventfd',
      syscall: 'eventfd',
      cause: 'fd-limit',
    });
  });

  it('diagnoses a pump error object the same way as a thrown DmxError', () => {
    const fields = nativeError({ code: 'EINVAL', request: 'DMX_QBUF', path: DEMUX, args: { index: 0 } });
    const thrown = new DmxError(fields.message, fields);
    expect(diagnose(thrown, HD, AT)).toEqual(diagnose(fields, HD, AT));
  });
});

describe('variants', () => {
  it.each(['DMX_REQBUFS', 'DMX_QUERYBUF', 'DMX_EXPBUF', 'DMX_QBUF', 'DMX_DQBUF'])(
    'ENOTTY on %s means no CONFIG_DVB_MMAP',
    (request) => {
      const event = diagnose(nativeError({ code: 'ENOTTY', request, path: DEMUX, args: { index: 0 } }), {}, AT);
      expect(event.cause).toBe('dvb-mmap-missing');
      expect(event.summary).toContain(request);
    },
  );

  it('EOPNOTSUPP opening the DVR O_RDWR means no CONFIG_DVB_MMAP', () => {
    const event = diagnose(
      nativeError({ code: 'EOPNOTSUPP', syscall: 'open', path: DVR, args: { flags: OPEN_FLAGS } }),
    );
    expect(event.cause).toBe('dvb-mmap-missing');
    expect(event.summary).toContain(`opening ${DVR} O_RDWR failed with EOPNOTSUPP`);
  });

  it('ENOTTY on mmap of a demux node means no CONFIG_DVB_MMAP; ENOTTY on a decoder ioctl does not', () => {
    const mmap = nativeError({
      code: 'ENOTTY',
      syscall: 'mmap',
      path: DEMUX,
      args: { index: 0, length: 12032, offset: 0 },
    });
    expect(diagnose(mmap).cause).toBe('dvb-mmap-missing');
    expect(diagnose(nativeError({ code: 'ENOTTY', request: 'VIDIOC_G_FMT', path: VIDEO })).cause).toBe('unexplained');
  });

  it('a pump started on an empty pool is no-buffers-allocated, prevented', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        syscall: 'pump',
        path: DEMUX,
        detail: 'the pool has no buffers: requestBuffers first',
      }),
      { stream: 'hd' },
      AT,
    );
    expect(event).toMatchObject({ cause: 'no-buffers-allocated', prevented: true, ioctl: 'pump' });
    expect(event.summary).toContain('starting the pump');
  });

  it('follows vb2_core_expbuf: with no buffers, bad flags are not the reason', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'DMX_EXPBUF',
        path: DEMUX,
        args: { index: 0, flags: O_CLOEXEC | O_APPEND },
      }),
      { pool: { count: 0, size: 0, streaming: false } },
    );
    expect(event.cause).toBe('no-buffers-allocated');
  });

  it('an EXPBUF failure with an unknown pool says what it could not rule out', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'DMX_EXPBUF',
        path: DEMUX,
        args: { index: 2, flags: O_CLOEXEC | O_RDWR },
      }),
    );
    expect(event.cause).toBe('export-unsupported');
    expect(event.summary).toContain('an index out of range or a missing allocation was not ruled out');
  });

  it('takes the pool count from args when the native layer adds it', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'DMX_EXPBUF',
        path: DEMUX,
        args: { index: 7, flags: O_CLOEXEC, count: 6 },
      }),
    );
    expect(event.cause).toBe('index-out-of-range');
    expect(event.summary).toContain('6 buffers (valid indices 0..5)');
  });

  it('QUERYBUF refuses only a bad index, so with the pool unknown that is the cause', () => {
    const event = diagnose(nativeError({ code: 'EINVAL', request: 'DMX_QUERYBUF', path: DEMUX, args: { index: 3 } }));
    expect(event.cause).toBe('index-out-of-range');
    expect(event.summary).toContain('the pool size was not known');
  });

  it('a double QBUF with the pool unknown says an index out of range was not ruled out', () => {
    const event = diagnose(nativeError({ code: 'EINVAL', request: 'DMX_QBUF', path: DEMUX, args: { index: 1 } }));
    expect(event.cause).toBe('buffer-already-queued');
    expect(event.summary).toContain('an index out of range was not ruled out');
  });

  it('a DQBUF index the pool lacks (raised by the pump) is index-out-of-range, not not-streaming', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'DMX_DQBUF',
        path: DEMUX,
        args: { index: 6 },
        detail: 'the kernel returned a buffer index the pool does not have',
      }),
      HD,
    );
    expect(event.cause).toBe('index-out-of-range');
    expect(event.summary).toContain('returned buffer index 6, but the pool has 4 buffers');
  });

  it('DQBUF before any QBUF on a pool that was streaming points at a reset queue', () => {
    const event = diagnose(nativeError({ code: 'EINVAL', request: 'DMX_DQBUF', path: DEMUX }), HD);
    expect(event.cause).toBe('not-streaming');
    expect(event.remedy).toContain('the queue was reset');
  });

  it('an OVERLAY memory request is unsupported whatever the capabilities', () => {
    const event = diagnose(
      nativeError({ code: 'EINVAL', request: 'VIDIOC_REQBUFS', path: VIDEO, args: { count: 4, type: 2, memory: 3 } }),
      { decoder: { path: VIDEO } },
    );
    expect(event.cause).toBe('v4l2-memory-type-unsupported');
    expect(event.summary).toContain('OVERLAY (3)');
  });

  it('reads the capabilities from args when the supervisor passes them (a prevented REQBUFS)', () => {
    const event = preventedEvent(
      'v4l2-memory-type-unsupported',
      {
        stream: 'hd',
        device: VIDEO,
        ioctl: 'VIDIOC_REQBUFS',
        errno: 'EINVAL',
        args: { memory: 4, capabilities: 0x1 },
        message: '/dev/video0 cannot import DMABUFs on its OUTPUT queue (capabilities 0x1)',
      },
      AT,
    );
    expect(event.summary).toContain('DMABUF (4) memory, but the queue supports MMAP (capabilities 0x1: MMAP)');
    expect(event.prevented).toBe(true);
  });

  it('with capabilities known and the planarity unknown, an EINVAL REQBUFS blames the type', () => {
    const event = diagnose(
      nativeError({ code: 'EINVAL', request: 'VIDIOC_REQBUFS', path: VIDEO, args: { count: 4, type: 10, memory: 4 } }),
      { decoder: { path: VIDEO, capabilities: 0x1f } },
    );
    expect(event.cause).toBe('v4l2-buffer-type-unsupported');
    expect(event.summary).toContain('single- vs multi-planar');
  });

  it('with nothing known about the queue, an EINVAL REQBUFS is invalid-argument saying why', () => {
    const event = diagnose(
      nativeError({ code: 'EINVAL', request: 'VIDIOC_REQBUFS', path: VIDEO, args: { count: 4, type: 10, memory: 4 } }),
    );
    expect(event.cause).toBe('invalid-argument');
    expect(event.summary).toContain("the queue's capabilities were not known");
  });

  it('an import refused with EINVAL although every size fits is the contiguity rule', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'VIDIOC_QBUF',
        path: VIDEO,
        args: { index: 0, fd: 23, bytesused: 12032, dmabufSize: 12288, sizeimage: 12288 },
      }),
      HD,
    );
    expect(event.cause).toBe('import-memory-not-contiguous');
  });

  it('an import on a decoder without DMABUF support is the memory type', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'VIDIOC_QBUF',
        path: VIDEO,
        args: { index: 0, fd: 23, bytesused: 12032, dmabufSize: 12288, sizeimage: 12288 },
      }),
      { decoder: { ...VIM2M, capabilities: 0x3 } },
    );
    expect(event.cause).toBe('v4l2-memory-type-unsupported');
    expect(event.summary).toContain('DMABUF (4)');
  });

  it('uses the context sizeimage when the native layer had none (0)', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'VIDIOC_QBUF',
        path: VIDEO,
        args: { index: 0, fd: 23, bytesused: 3008, dmabufSize: 4096, sizeimage: 0 },
      }),
      { decoder: { path: VIDEO, outputSizeimage: 6144 } },
    );
    expect(event.cause).toBe('import-dmabuf-below-sizeimage');
    expect(event.summary).toContain('sizeimage is 6144');
  });

  it('an import with no sizeimage anywhere is invalid-argument naming what was missing', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'VIDIOC_QBUF',
        path: VIDEO,
        args: { index: 0, fd: 23, bytesused: 3008, dmabufSize: 4096, sizeimage: 0 },
      }),
    );
    expect(event.cause).toBe('invalid-argument');
    expect(event.summary).toContain('OUTPUT sizeimage was not known');
  });

  it('an OUTPUT slot out of range is index-out-of-range', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'VIDIOC_QBUF',
        path: VIDEO,
        args: { index: 9, fd: 23, bytesused: 3008, dmabufSize: 4096, sizeimage: 3072 },
        detail: 'OUTPUT slot out of range (4 buffers requested)',
      }),
    );
    expect(event.cause).toBe('index-out-of-range');
    expect(event.summary).toContain('OUTPUT slot 9');
  });

  it('a decoder that signalled its last buffer, or whose fd went bad under the pump, is gone', () => {
    const epipe = diagnose(nativeError({ code: 'EPIPE', request: 'VIDIOC_DQBUF', path: VIDEO, args: { type: 1 } }), HD);
    expect(epipe.cause).toBe('decoder-gone');
    expect(epipe.summary).toContain('last buffer');
    const badf = diagnose(nativeError({ code: 'EBADF', syscall: 'poll', path: VIDEO }), HD);
    expect(badf.cause).toBe('decoder-gone');
  });

  it('EIO from the decoder is a queue error with a decoder remedy', () => {
    const event = diagnose(nativeError({ code: 'EIO', request: 'VIDIOC_DQBUF', path: VIDEO, args: { type: 2 } }), HD);
    expect(event.cause).toBe('queue-error');
    expect(event.remedy).toContain('restart the decoder');
  });

  it('a REQBUFS the native layer refused says so and asks for the resize path', () => {
    const event = diagnose(
      nativeError({
        code: 'EBUSY',
        request: 'DMX_REQBUFS',
        path: DEMUX,
        args: { count: 4, size: 12032 },
        detail:
          'refused before the kernel: the queue is streaming and a REQBUFS now would kill the stream; resize by closing and reopening the node',
      }),
      HD,
    );
    expect(event).toMatchObject({ cause: 'reqbufs-while-streaming', prevented: true });
    expect(event.summary).toContain('was refused before the kernel saw it');
    expect(event.remedy).toContain('resize without REQBUFS on the live fd');
  });

  it('a busy decoder REQBUFS is reqbufs-while-streaming with decoder advice', () => {
    const event = diagnose(
      nativeError({
        code: 'EBUSY',
        request: 'VIDIOC_REQBUFS',
        path: VIDEO,
        args: { count: 4, type: 2, memory: 4 },
        detail: 'the queue is streaming or its buffers are still mapped or exported',
      }),
      HD,
    );
    expect(event.cause).toBe('reqbufs-while-streaming');
    expect(event.remedy).toContain('VIDIOC_STREAMOFF');
  });

  it('S_FMT while buffers are allocated is decoder-format-rejected, saying so', () => {
    const event = diagnose(
      nativeError({
        code: 'EBUSY',
        request: 'VIDIOC_S_FMT',
        path: VIDEO,
        args: { type: 2, width: 64, height: 64 },
        detail: 'buffers are allocated on that queue; free them (REQBUFS 0) first',
      }),
      HD,
    );
    expect(event.cause).toBe('decoder-format-rejected');
    expect(event.remedy).toContain('count 0');
  });

  it('tuning a read-only frontend is permission-denied with the read-write fix', () => {
    const event = diagnose(
      nativeError({
        code: 'EPERM',
        request: 'FE_SET_PROPERTY',
        path: FRONTEND,
        args: { deliverySystem: 3, frequency: 474000000 },
        detail: 'the frontend was opened read-only',
      }),
    );
    expect(event.cause).toBe('permission-denied');
    expect(event.summary).toContain('opened read-only');
    expect(event.remedy).toContain('read-write');
  });

  it('tuning refused with EINVAL or EOPNOTSUPP is frontend-unsupported, naming the tuning', () => {
    for (const code of ['EINVAL', 'EOPNOTSUPP']) {
      const event = diagnose(
        nativeError({
          code,
          request: 'FE_SET_PROPERTY',
          path: FRONTEND,
          args: { deliverySystem: 3, frequency: 474000000 },
        }),
      );
      expect(event.cause).toBe('frontend-unsupported');
      expect(event.summary).toContain('delivery system 3, frequency 474000000');
    }
  });

  it('a decoder that granted no OUTPUT buffers is out-of-memory with the detail', () => {
    const event = diagnose(
      nativeError({
        code: 'ENOMEM',
        request: 'VIDIOC_REQBUFS',
        path: VIDEO,
        detail: 'the decoder granted no OUTPUT buffers',
      }),
    );
    expect(event.cause).toBe('out-of-memory');
    expect(event.summary).toContain('granted no OUTPUT buffers');
  });

  it('ENFILE is the system-wide fd limit', () => {
    const event = diagnose(nativeError({ code: 'ENFILE', syscall: 'open', path: DEMUX }));
    expect(event.cause).toBe('fd-limit');
    expect(event.summary).toContain('the whole system');
  });

  it('a decoder name that is not there, or a node that is not an m2m device, is device-missing', () => {
    const unknown = diagnose(
      nativeError({
        code: 'ENOENT',
        syscall: 'open',
        path: '/sys/class/video4linux',
        detail: "no V4L2 device named 'hantro-vpu'",
      }),
    );
    expect(unknown.cause).toBe('device-missing');
    expect(unknown.summary).toContain("no V4L2 device named 'hantro-vpu'");
    const notM2m = diagnose(
      nativeError({
        code: 'ENODEV',
        syscall: 'open',
        path: VIDEO,
        args: { capabilities: 0x04200001 },
        detail: 'not a V4L2 memory-to-memory device',
      }),
    );
    expect(notM2m.cause).toBe('device-missing');
    expect(notM2m.summary).toContain('not a V4L2 memory-to-memory device');
  });

  it('a call on an object the agent already closed is unexplained, saying so', () => {
    const event = diagnose(nativeError({ code: 'EBADF', syscall: 'ioctl', path: DEMUX, args: { closed: 1 } }));
    expect(event.cause).toBe('unexplained');
    expect(event.summary).toContain('already closed');
  });

  it('an EINVAL on an ioctl the catalog has no conditions for is invalid-argument, saying so', () => {
    const event = diagnose(
      nativeError({ code: 'EINVAL', request: 'DMX_SET_FILTER', path: DEMUX, args: { pid: 0, flags: 4 } }),
    );
    expect(event.cause).toBe('invalid-argument');
    expect(event.summary).toContain('the catalog knows no EINVAL conditions for DMX_SET_FILTER');
  });
});

describe("the native layer's reason", () => {
  it('is trusted over the context (the ledger knows better)', () => {
    // The context says 0 buffers, which alone would give no-buffers-allocated.
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'DMX_QBUF',
        path: DEMUX,
        args: { index: 0 },
        reason: 'buffer-already-queued',
        detail: 'buffer 0 is already queued in the kernel',
      }),
      { pool: { count: 0, size: 12032, streaming: true } },
    );
    expect(event.cause).toBe('buffer-already-queued');
    expect(event.summary).toContain('buffer 0');
  });

  it('comes with prevented for checks the native layer makes before the kernel', () => {
    const event = diagnose(
      nativeError({
        code: 'EINVAL',
        request: 'DMX_QBUF',
        path: DEMUX,
        args: { index: 5, count: 4 },
        reason: 'index-out-of-range',
        prevented: true,
        detail: 'refused before the kernel: index 5 is out of range: the pool has 4 buffers',
      }),
    );
    expect(event).toMatchObject({ cause: 'index-out-of-range', prevented: true });
    expect(event.summary).toBe(
      `DMX_QBUF of buffer index 5 on ${DEMUX} was refused before the kernel saw it: the pool has 4 buffers (valid indices 0..3)`,
    );
  });

  it('explains a dead DVR open as the missing kernel option', () => {
    const event = diagnose(
      nativeError({
        code: 'EOPNOTSUPP',
        syscall: 'open',
        path: DVR,
        args: { flags: OPEN_FLAGS },
        reason: 'dvb-mmap-missing',
        detail: 'the kernel has no CONFIG_DVB_MMAP: the DVR cannot be opened O_RDWR for mmap',
      }),
    );
    expect(event.cause).toBe('dvb-mmap-missing');
  });

  it('is ignored when it is not a cause code, and the cause is decided as usual', () => {
    const event = diagnose(
      nativeError({ code: 'EINVAL', request: 'DMX_DQBUF', path: DEMUX, reason: 'cosmic-ray' }),
      {},
    );
    expect(event.cause).toBe('not-streaming');
  });
});

describe('errors that are not DmxErrors', () => {
  it('diagnoses a Node system error like a native one', () => {
    let thrown: unknown;
    try {
      openSync('/dev/dvb/adapter9/demux0', 'r');
    } catch (err) {
      thrown = err;
    }
    const event = diagnoseUnknown(thrown, { stream: 'hd' }, AT);
    expect(event).toMatchObject({ cause: 'device-missing', errno: 'ENOENT', errnoNumber: -2, ioctl: 'open' });
    expect(event.device).toBe('/dev/dvb/adapter9/demux0');
  });

  it('diagnoses a DmxError exactly as diagnose() does', () => {
    const fields = nativeError({ code: 'EIO', request: 'DMX_DQBUF', path: DEMUX });
    const error = new DmxError(fields.message, fields);
    expect(diagnoseUnknown(error, HD, AT)).toEqual(diagnose(error, HD, AT));
  });

  it("turns the native layer's index RangeError into a prevented index or allocation event", () => {
    const outOfRange = diagnoseUnknown(new RangeError('index 5 is out of range: the pool has 4 buffers'), {}, AT);
    expect(outOfRange).toMatchObject({ cause: 'index-out-of-range', prevented: true, args: { index: 5, count: 4 } });
    const empty = diagnoseUnknown(new RangeError('index 0 is out of range: the pool has 0 buffers'), {}, AT);
    expect(empty).toMatchObject({ cause: 'no-buffers-allocated', prevented: true });
  });

  it('turns a bad pool count into pool-size-invalid', () => {
    const event = diagnoseUnknown(
      new RangeError('pool count must be an integer from 2 to 32 (vb2 grants at most 32), got 1'),
      {},
      AT,
    );
    expect(event).toMatchObject({ cause: 'pool-size-invalid', prevented: true, args: { count: 1 } });
    expect(event.remedy).toContain('a count from 2 to 32');
  });

  it('turns any other TypeError or RangeError into a prevented invalid-argument naming the message', () => {
    const event = diagnoseUnknown(new TypeError('pid must be a number'), { stream: 'hd' }, AT);
    expect(event).toMatchObject({ cause: 'invalid-argument', prevented: true, stream: 'hd', errno: 'EINVAL' });
    expect(event.summary).toContain('pid must be a number');
    expect(event.remedy).toBe('fix the argument the message names');
  });

  it('makes anything else unexplained, keeping its text', () => {
    const error = diagnoseUnknown(new Error('boom'), {}, AT);
    expect(error).toMatchObject({ cause: 'unexplained', errno: 'UNKNOWN', errnoNumber: 0, prevented: false });
    expect(error.message).toBe('Error: boom');
    expect(error.summary).toContain('boom');
    const text = diagnoseUnknown('just a string', {}, AT);
    expect(text).toMatchObject({ cause: 'unexplained', message: 'just a string' });
  });
});

describe('preventedEvent', () => {
  it("defaults the errno to the cause's own and names the syscall", () => {
    const event = preventedEvent(
      'pump-attached',
      { ioctl: 'DMX_REQBUFS', args: { count: 4, size: 12032 }, message: 'm' },
      AT,
    );
    expect(event).toMatchObject({
      errno: 'EBUSY',
      errnoNumber: -16,
      syscall: 'ioctl',
      prevented: true,
      stream: null,
      device: null,
      count: 1,
      firstAtMs: AT,
      lastAtMs: AT,
    });
  });

  it('takes the stream from the context when the fields have none', () => {
    const event = preventedEvent(
      'pool-exceeds-decoder-format',
      {
        ioctl: 'pool-plan',
        args: { size: 3008 },
        message: 'm',
        context: { stream: 'sd', decoder: { path: VIDEO, outputSizeimage: 6144 } },
      },
      AT,
    );
    expect(event).toMatchObject({ stream: 'sd', syscall: 'pool-plan' });
    expect(event.summary).toContain('page-aligned dmabuf (4096 bytes) would be smaller than the OUTPUT sizeimage 6144');
    expect(event.remedy).toContain('between 4136 and 6016');
  });
});

describe('errnoNumberOf', () => {
  it('maps names to negative numbers, E<n> to -n, and unknown names to 0', () => {
    expect(errnoNumberOf('EINVAL')).toBe(-22);
    expect(errnoNumberOf('E524')).toBe(-524);
    expect(errnoNumberOf('ENOTSUPP')).toBe(-524);
    expect(errnoNumberOf('UNKNOWN')).toBe(0);
  });
});
