/**
 * The catalog of cause codes: for each, the errnos it explains, when it
 * applies, and how to say what went wrong and what to do, with the numbers
 * of the failed call. The conditions come from kernel-facts.md and the 6.1
 * sources (dvb_vb2.c, dmxdev.c, videobuf2-core.c, videobuf2-v4l2.c);
 * diagnose.ts decides which cause applies, this file only words it.
 */

import { MAX_DEMUX_BUFFER_SIZE, PAGE_SIZE, pageAlign, TS_PACKET_SIZE } from '../native/limits.js';
import type { CauseCode, DiagnosisContext } from './types.js';

export { MAX_DEMUX_BUFFER_SIZE, PAGE_SIZE, pageAlign, TS_PACKET_SIZE };

/** Everything a summary or remedy may draw on. */
export interface CauseFacts {
  /** The ioctl name, or the syscall when it was not an ioctl. */
  ioctl: string;
  syscall: string;
  errno: string;
  device: string | null;
  args: Readonly<Record<string, number>>;
  /** The native layer's hint, if any. */
  detail?: string;
  prevented: boolean;
  context: DiagnosisContext;
  /** Conditions that were checked and excluded (said by invalid-argument). */
  ruledOut?: readonly string[];
  /** What could not be checked, appended to the summary. */
  caveat?: string;
}

export interface CauseEntry {
  /** The errnos this cause explains ('E524' is the kernel-internal ENOTSUPP). */
  errnos: readonly string[];
  /** When it applies, in one line (for the README). */
  when: string;
  /** What to do, without the numbers of any one call (for the README). */
  remedy: string;
  summarize(facts: CauseFacts): string;
  advise(facts: CauseFacts): string;
}

// ---------------------------------------------------------------- numbers and names

/** "count 4, size 12032", "count 4", "size 12032" or '' from a call's arguments. */
function poolWords(f: CauseFacts): string {
  const count = arg(f, 'count');
  const size = arg(f, 'size');
  return [count !== undefined ? `count ${count}` : '', size !== undefined ? `size ${size}` : '']
    .filter(Boolean)
    .join(', ');
}

function arg(facts: CauseFacts, name: string): number | undefined {
  const value = facts.args[name];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function on(facts: CauseFacts): string {
  return facts.device ? ` on ${facts.device}` : '';
}

function octal(value: number): string {
  return value === 0 ? '0' : `0${value.toString(8)}`;
}

function hex(value: number): string {
  return `0x${value.toString(16)}`;
}

/**
 * The pool buffer sizes a decoder with this OUTPUT sizeimage can import
 * whole buffers of: multiples of 188 no larger than sizeimage (a full TS
 * buffer's bytesused is its size, and bytesused may not exceed sizeimage)
 * whose page-aligned dmabuf still reaches sizeimage. Null when none exists.
 */
export function poolSizeWindow(sizeimage: number): { min: number; max: number } | null {
  if (!Number.isFinite(sizeimage) || sizeimage <= 0) return null;
  const smallestDmabufPages = Math.ceil(sizeimage / PAGE_SIZE);
  const smallestSize = (smallestDmabufPages - 1) * PAGE_SIZE + 1;
  const min = Math.ceil(smallestSize / TS_PACKET_SIZE) * TS_PACKET_SIZE;
  const max = Math.floor(Math.min(sizeimage, MAX_DEMUX_BUFFER_SIZE) / TS_PACKET_SIZE) * TS_PACKET_SIZE;
  return min <= max ? { min, max } : null;
}

function windowPhrase(sizeimage: number): string {
  const window = poolSizeWindow(sizeimage);
  if (!window) return `no multiple of 188 fits a sizeimage of ${sizeimage}`;
  if (window.min === window.max)
    return `${window.min} bytes, the only multiple of 188 that fits sizeimage ${sizeimage}`;
  return `a multiple of 188 between ${window.min} and ${window.max} for sizeimage ${sizeimage}`;
}

/** V4L2_BUF_CAP_* bits (videodev2.h), as reported by REQBUFS in v4l2_requestbuffers.capabilities. */
export const BUFFER_CAPABILITIES: ReadonlyArray<readonly [number, string]> = [
  [0x1, 'MMAP'],
  [0x2, 'USERPTR'],
  [0x4, 'DMABUF'],
  [0x8, 'REQUESTS'],
  [0x10, 'ORPHANED_BUFS'],
  [0x20, 'M2M_HOLD_CAPTURE_BUF'],
  [0x40, 'MMAP_CACHE_HINTS'],
];

/** The names of the V4L2_BUF_CAP_SUPPORTS_* bits set in `capabilities`; unknown bits as hex. */
export function bufferCapabilityNames(capabilities: number): string[] {
  const names: string[] = [];
  let rest = capabilities >>> 0;
  for (const [bit, name] of BUFFER_CAPABILITIES) {
    if (rest & bit) {
      names.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) names.push(hex(rest));
  return names;
}

/** The V4L2_BUF_CAP_SUPPORTS_* bit a v4l2_memory needs; 0 when vb2 has no such memory (OVERLAY, junk). */
export function memoryCapabilityBit(memory: number): number {
  switch (memory) {
    case 1:
      return 0x1;
    case 2:
      return 0x2;
    case 4:
      return 0x4;
    default:
      return 0;
  }
}

const MEMORY_NAMES: Readonly<Record<number, string>> = { 1: 'MMAP', 2: 'USERPTR', 3: 'OVERLAY', 4: 'DMABUF' };

export function memoryName(memory: number): string {
  const name = MEMORY_NAMES[memory];
  return name ? `${name} (${memory})` : `memory ${memory}`;
}

const BUF_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: 'VIDEO_CAPTURE',
  2: 'VIDEO_OUTPUT',
  3: 'VIDEO_OVERLAY',
  4: 'VBI_CAPTURE',
  5: 'VBI_OUTPUT',
  6: 'SLICED_VBI_CAPTURE',
  7: 'SLICED_VBI_OUTPUT',
  8: 'VIDEO_OUTPUT_OVERLAY',
  9: 'VIDEO_CAPTURE_MPLANE',
  10: 'VIDEO_OUTPUT_MPLANE',
  11: 'SDR_CAPTURE',
  12: 'SDR_OUTPUT',
  13: 'META_CAPTURE',
  14: 'META_OUTPUT',
};

export function bufTypeName(type: number): string {
  const name = BUF_TYPE_NAMES[type];
  return name ? `${name} (${type})` : `buffer type ${type}`;
}

/** The buffer types of an m2m decoder's two queues. */
export function m2mBufTypes(multiplanar: boolean): { output: number; capture: number } {
  return multiplanar ? { output: 10, capture: 9 } : { output: 2, capture: 1 };
}

/** O_CLOEXEC and O_ACCMODE: all DMX_EXPBUF accepts (vb2_core_expbuf). */
export const O_CLOEXEC = 0o2000000;
export const O_ACCMODE = 0o3;
const O_RDWR = 0o2;

// Open flags with the same value on every Linux architecture the agent runs on.
const OPEN_FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [0o100, 'O_CREAT'],
  [0o200, 'O_EXCL'],
  [0o400, 'O_NOCTTY'],
  [0o1000, 'O_TRUNC'],
  [0o2000, 'O_APPEND'],
  [0o4000, 'O_NONBLOCK'],
  [0o10000, 'O_DSYNC'],
];

/** The bits of `flags` DMX_EXPBUF refuses, named where the name is portable. */
export function unsupportedExportFlags(flags: number): { bits: number; names: string[] } {
  const bits = (flags >>> 0) & ~(O_CLOEXEC | O_ACCMODE);
  const names: string[] = [];
  let rest = bits;
  for (const [bit, name] of OPEN_FLAG_NAMES) {
    if (rest & bit) {
      names.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) names.push(`other bits ${octal(rest)}`);
  return { bits, names };
}

const STRERROR: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EINTR: 'Interrupted system call',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  E2BIG: 'Argument list too long',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EFAULT: 'Bad address',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  ENFILE: 'Too many open files in system',
  EMFILE: 'Too many open files',
  ENOTTY: 'Inappropriate ioctl for device',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  ESPIPE: 'Illegal seek',
  EROFS: 'Read-only file system',
  EPIPE: 'Broken pipe',
  ERANGE: 'Numerical result out of range',
  ENAMETOOLONG: 'File name too long',
  ENOSYS: 'Function not implemented',
  ENODATA: 'No data available',
  ETIME: 'Timer expired',
  EOVERFLOW: 'Value too large for defined data type',
  ENOTSOCK: 'Socket operation on non-socket',
  EMSGSIZE: 'Message too long',
  EPROTO: 'Protocol error',
  EOPNOTSUPP: 'Operation not supported',
  EADDRINUSE: 'Address already in use',
  ECONNRESET: 'Connection reset by peer',
  ENOBUFS: 'No buffer space available',
  ENOTCONN: 'Transport endpoint is not connected',
  ETIMEDOUT: 'Connection timed out',
  ECONNREFUSED: 'Connection refused',
  ECANCELED: 'Operation canceled',
  ENOTSUPP: 'Operation is not supported, the kernel-internal ENOTSUPP 524',
  E524: 'Operation is not supported, the kernel-internal ENOTSUPP 524',
};

/** strerror() for an errno name, or null when unknown. */
export function strerrorOf(errno: string): string | null {
  return STRERROR[errno] ?? null;
}

function errnoText(errno: string): string {
  const text = strerrorOf(errno);
  return text ? `${errno} (${text})` : errno;
}

function withCaveat(summary: string, facts: CauseFacts): string {
  return facts.caveat ? `${summary} (${facts.caveat})` : summary;
}

function withDetail(facts: CauseFacts): string {
  return facts.detail ? `: ${facts.detail}` : '';
}

function poolCount(facts: CauseFacts): number | undefined {
  return arg(facts, 'count') ?? facts.context.pool?.count;
}

function sizeimageOf(facts: CauseFacts): number | undefined {
  const fromArgs = arg(facts, 'sizeimage');
  if (fromArgs !== undefined && fromArgs > 0) return fromArgs;
  const fromContext = facts.context.decoder?.outputSizeimage;
  return fromContext !== undefined && fromContext > 0 ? fromContext : undefined;
}

/** The OUTPUT queue's V4L2_BUF_CAP_* bits: from the context, or passed along in the args. */
function capabilitiesOf(facts: CauseFacts): number | undefined {
  return facts.context.decoder?.capabilities ?? arg(facts, 'capabilities');
}

/** The v4l2_memory of the call: an import (VIDIOC_QBUF with a dmabuf) is DMABUF. */
function memoryAskedFor(facts: CauseFacts): number | undefined {
  const memory = arg(facts, 'memory');
  if (memory !== undefined) return memory;
  return facts.ioctl === 'VIDIOC_QBUF' && arg(facts, 'dmabufSize') !== undefined ? 4 : undefined;
}

function isDecoderCall(facts: CauseFacts): boolean {
  return facts.ioctl.startsWith('VIDIOC_');
}

function refusedBy(facts: CauseFacts): string {
  return facts.prevented ? 'was refused before the kernel saw it' : `failed with ${facts.errno}`;
}

const REOPEN_POOL =
  'close the node, reopen it, set the filter again, then DMX_REQBUFS, map, export and queue (the resize path)';

// ---------------------------------------------------------------- the catalog

export const CAUSES: Readonly<Record<CauseCode, CauseEntry>> = {
  'index-out-of-range': {
    errnos: ['EINVAL'],
    when: 'a DMX_QUERYBUF/QBUF/EXPBUF (or a decoder OUTPUT slot) index at or beyond the number of buffers granted',
    remedy:
      'use only indices below the count DMX_REQBUFS returned (the kernel may grant fewer than requested); check indices yourself, kernels before a 2024 fix did not check them on DMX_EXPBUF',
    summarize(f) {
      const index = arg(f, 'index');
      const count = poolCount(f);
      const which = index === undefined ? 'a buffer index' : `buffer index ${index}`;
      if (isDecoderCall(f)) {
        return withCaveat(
          `${f.ioctl}${on(f)} used OUTPUT slot ${index ?? '?'}, beyond the buffers the decoder granted${withDetail(f)}`,
          f,
        );
      }
      if (f.ioctl === 'DMX_DQBUF') {
        return `DMX_DQBUF${on(f)} returned ${which}, but the pool has ${count ?? 'fewer'} buffers: the kernel and the pool disagree about the allocation`;
      }
      const has = count === undefined ? 'fewer buffers' : `${count} buffers (valid indices 0..${count - 1})`;
      return withCaveat(`${f.ioctl} of ${which}${on(f)} ${refusedBy(f)}: the pool has ${has}`, f);
    },
    advise(f) {
      const count = poolCount(f);
      if (f.ioctl === 'DMX_DQBUF') return `close and reopen the node and set up the pool again; ${REOPEN_POOL}`;
      if (isDecoderCall(f)) return 'use OUTPUT slots below the count VIDIOC_REQBUFS granted (prepare() returns it)';
      const below = count === undefined ? 'below the granted count' : `below ${count}`;
      return `use indices ${below}: always keep the count DMX_REQBUFS wrote back, which may be less than requested`;
    },
  },

  'expbuf-flags-unsupported': {
    errnos: ['EINVAL'],
    when: 'DMX_EXPBUF with flags other than O_CLOEXEC and an access mode (O_RDONLY, O_WRONLY, O_RDWR)',
    remedy: 'export with O_CLOEXEC | O_RDWR (02000002) and nothing else',
    summarize(f) {
      const flags = arg(f, 'flags') ?? 0;
      const bad = unsupportedExportFlags(flags);
      const index = arg(f, 'index');
      const extra = bad.names.length > 0 ? `, which include ${bad.names.join(', ')}` : '';
      return `DMX_EXPBUF of buffer ${index ?? '?'}${on(f)} asked for flags ${octal(flags)}${extra}: the kernel accepts only O_CLOEXEC (${octal(O_CLOEXEC)}) and an access mode`;
    },
    advise(f) {
      const flags = arg(f, 'flags') ?? 0;
      const bad = unsupportedExportFlags(flags);
      const without = bad.names.length > 0 ? ` (drop ${bad.names.join(', ')})` : '';
      const keep = (flags & (O_CLOEXEC | O_ACCMODE)) >>> 0;
      const suggested = keep === 0 ? O_CLOEXEC | O_RDWR : keep;
      return `export with flags ${octal(suggested)}${without}; O_CLOEXEC | O_RDWR (02000002) is the usual choice`;
    },
  },

  'no-buffers-allocated': {
    errnos: ['EINVAL'],
    when: 'a buffer ioctl (EXPBUF, QUERYBUF, QBUF) or a pump start before DMX_REQBUFS allocated any buffer (the queue is not in MMAP mode)',
    remedy:
      'call DMX_REQBUFS first and use the count it grants; a grant of 0 means the kernel could not allocate that size',
    summarize(f) {
      const what = f.syscall === 'pump' ? 'starting the pump' : f.ioctl;
      return `${what}${on(f)} ${refusedBy(f)}: the pool has no buffers yet (DMX_REQBUFS was not done, or it granted 0), so the queue is not in MMAP mode`;
    },
    advise(f) {
      const size = f.context.pool?.size;
      const sized = size ? ` (buffers of ${size} bytes)` : '';
      return `request buffers first with DMX_REQBUFS${sized} and keep the count it grants; if it granted 0, ask for fewer or smaller buffers`;
    },
  },

  'export-unsupported': {
    errnos: ['EINVAL'],
    when: 'DMX_EXPBUF with valid flags and index on a queue whose allocator cannot export DMABUFs',
    remedy:
      'use a kernel whose dvb-core exports (CONFIG_DVB_MMAP and CONFIG_DMA_SHARED_BUFFER), or run the stream without a DMABUF sink',
    summarize(f) {
      const index = arg(f, 'index');
      return withCaveat(
        `DMX_EXPBUF of buffer ${index ?? '?'}${on(f)} failed with EINVAL although the flags are valid and the index is in range: the queue's allocator cannot export it as a DMABUF`,
        f,
      );
    },
    advise() {
      return "check the kernel has CONFIG_DMA_SHARED_BUFFER and that the demux queue was set up by DMX_REQBUFS (6.1's vmalloc allocator exports); until then run this stream with the discard sink, which needs no export";
    },
  },

  'buffer-already-queued': {
    errnos: ['EINVAL'],
    when: 'DMX_QBUF of a buffer the kernel already holds (vb2 takes a buffer back only after DQBUF returned it)',
    remedy: 'queue a buffer only after DQBUF returned it; the ledger shows which owner requeued it twice',
    summarize(f) {
      const index = arg(f, 'index');
      return withCaveat(
        `DMX_QBUF of buffer ${index ?? '?'}${on(f)} ${refusedBy(f)}: the buffer is already queued in the kernel`,
        f,
      );
    },
    advise(f) {
      const index = arg(f, 'index');
      return `requeue buffer ${index ?? '?'} only after DMX_DQBUF returned it; two owners (a sink's return and the agent) probably requeued it, so check the pool's ledger`;
    },
  },

  'buffer-smaller-than-expected': {
    errnos: ['EINVAL'],
    when: 'DMX_QBUF after a rejected DMX_REQBUFS raised the kernel\'s buffer size above the pool\'s ("data will not fit into plane")',
    remedy: 'close and reopen the node and allocate the pool again; never issue DMX_REQBUFS on a streaming fd',
    summarize(f) {
      const index = arg(f, 'index');
      const length = arg(f, 'length') ?? f.context.pool?.size;
      const expected = arg(f, 'expectedSize');
      return `DMX_QBUF of buffer ${index ?? '?'}${on(f)} failed: the buffer is ${length ?? '?'} bytes but the kernel now expects ${expected ?? 'more'} (a rejected DMX_REQBUFS overwrote the kernel's buffer size)`;
    },
    advise() {
      return `${REOPEN_POOL}; never issue DMX_REQBUFS on a streaming fd`;
    },
  },

  'not-streaming': {
    errnos: ['EINVAL'],
    when: 'DMX_DQBUF before streaming started (the first successful DMX_QBUF starts it) or after the stream was reset',
    remedy: 'queue buffers before dequeuing; if they were queued, the queue was reset: close and reopen',
    summarize(f) {
      return `DMX_DQBUF${on(f)} failed with EINVAL: the queue is not streaming (streaming starts with the first successful DMX_QBUF)`;
    },
    advise(f) {
      if (f.context.pool?.streaming) {
        return `the pool had been streaming, so the queue was reset (by a rejected DMX_REQBUFS): ${REOPEN_POOL}`;
      }
      return 'queue at least one buffer with DMX_QBUF before the first DMX_DQBUF';
    },
  },

  'v4l2-buffer-type-unsupported': {
    errnos: ['EINVAL'],
    when: 'VIDIOC_REQBUFS with a buffer type the device lacks, usually single- vs multi-planar',
    remedy:
      'use the _MPLANE buffer types when VIDIOC_QUERYCAP reports V4L2_CAP_VIDEO_M2M_MPLANE (0x4000), the plain ones with V4L2_CAP_VIDEO_M2M (0x8000)',
    summarize(f) {
      const type = arg(f, 'type');
      const asked = type === undefined ? 'a buffer type' : `buffer type ${bufTypeName(type)}`;
      const multiplanar = f.context.decoder?.multiplanar;
      if (multiplanar === undefined) {
        return `${f.ioctl}${on(f)} asked for ${asked}, which the decoder does not support (a single- vs multi-planar mismatch is the usual cause)`;
      }
      const types = m2mBufTypes(multiplanar);
      return `${f.ioctl}${on(f)} asked for ${asked}, which this ${multiplanar ? 'multi' : 'single'}-planar decoder does not have: its queues are ${bufTypeName(types.output)} and ${bufTypeName(types.capture)}`;
    },
    advise(f) {
      const multiplanar = f.context.decoder?.multiplanar;
      if (multiplanar === undefined) {
        return 'read VIDIOC_QUERYCAP: with V4L2_CAP_VIDEO_M2M_MPLANE (0x4000) use VIDEO_OUTPUT_MPLANE (10) / VIDEO_CAPTURE_MPLANE (9), with V4L2_CAP_VIDEO_M2M (0x8000) VIDEO_OUTPUT (2) / VIDEO_CAPTURE (1)';
      }
      const types = m2mBufTypes(multiplanar);
      return `use ${bufTypeName(types.output)} for OUTPUT and ${bufTypeName(types.capture)} for CAPTURE, as VIDIOC_QUERYCAP says`;
    },
  },

  'v4l2-memory-type-unsupported': {
    errnos: ['EINVAL'],
    when: 'VIDIOC_REQBUFS (or an import) with a memory type the queue does not support, per its V4L2_BUF_CAP_SUPPORTS_* bits',
    remedy:
      'zero-copy import needs DMABUF (V4L2_BUF_CAP_SUPPORTS_DMABUF 0x4) on the OUTPUT queue: without it use the external consumer sink or another decoder',
    summarize(f) {
      const memory = memoryAskedFor(f);
      const asked = memory === undefined ? 'a memory type' : `${memoryName(memory)} memory`;
      const caps = capabilitiesOf(f);
      if (caps === undefined) return `${f.ioctl}${on(f)} asked for ${asked}, which the queue does not support`;
      const supported = bufferCapabilityNames(caps & 0x7);
      const list = supported.length > 0 ? supported.join(', ') : 'no streaming memory at all';
      return `${f.ioctl}${on(f)} asked for ${asked}, but the queue supports ${list} (capabilities ${hex(caps)}: ${bufferCapabilityNames(caps).join(', ') || 'none'})`;
    },
    advise(f) {
      const memory = memoryAskedFor(f);
      const caps = capabilitiesOf(f);
      if (memory === 4 || memory === undefined) {
        return 'this decoder cannot import DMABUFs on OUTPUT, so demux buffers cannot reach it without a copy: use the external consumer sink (a player that copies into the decoder) or another decoder';
      }
      const supported = caps === undefined ? [] : bufferCapabilityNames(caps & 0x7);
      return supported.length > 0
        ? `request one of ${supported.join(', ')}`
        : 'probe the queue with a count-0 VIDIOC_REQBUFS and request a memory type it reports';
    },
  },

  'import-bytesused-above-sizeimage': {
    errnos: ['EINVAL'],
    when: "VIDIOC_QBUF of a DMABUF whose bytesused exceeds the OUTPUT plane size (the format's sizeimage at REQBUFS time)",
    remedy:
      "use pool buffers no larger than the decoder's OUTPUT sizeimage (page-aligned still reaching it), or set an OUTPUT format whose sizeimage is at least the buffer size",
    summarize(f) {
      const bytesused = arg(f, 'bytesused');
      const dmabuf = arg(f, 'dmabufSize');
      const sizeimage = sizeimageOf(f);
      const dmabufPart = dmabuf === undefined ? '' : `; the dmabuf is ${dmabuf} bytes`;
      return `the decoder${on(f)} refused buffer ${arg(f, 'index') ?? '?'}: bytesused ${bytesused ?? '?'} exceeds its OUTPUT sizeimage ${sizeimage ?? '?'}${dmabufPart}`;
    },
    advise(f) {
      const bytesused = arg(f, 'bytesused');
      const dmabuf = arg(f, 'dmabufSize');
      const sizeimage = sizeimageOf(f);
      const pool =
        sizeimage === undefined
          ? 'use pool buffers no larger than sizeimage'
          : `use pool buffers of ${windowPhrase(sizeimage)}`;
      const format =
        bytesused !== undefined && dmabuf !== undefined && dmabuf >= bytesused
          ? `set an OUTPUT format whose sizeimage is between ${bytesused} and ${dmabuf}`
          : 'set a larger OUTPUT format';
      return `${pool}, or ${format}`;
    },
  },

  'import-dmabuf-below-sizeimage': {
    errnos: ['EINVAL'],
    when: "VIDIOC_QBUF of a DMABUF smaller than the decoder's OUTPUT sizeimage (the plane's minimum length)",
    remedy:
      "use pool buffers whose page-aligned size reaches the decoder's OUTPUT sizeimage while staying no larger than it, or set a smaller OUTPUT format",
    summarize(f) {
      const dmabuf = arg(f, 'dmabufSize');
      const sizeimage = sizeimageOf(f);
      const bytesused = arg(f, 'bytesused');
      const used = bytesused === undefined ? '' : `; bytesused was ${bytesused}`;
      return `the decoder${on(f)} refused buffer ${arg(f, 'index') ?? '?'}: the pool buffer's dmabuf is ${dmabuf ?? '?'} bytes but the decoder's OUTPUT sizeimage is ${sizeimage ?? '?'}${used}`;
    },
    advise(f) {
      const bytesused = arg(f, 'bytesused');
      const dmabuf = arg(f, 'dmabufSize');
      const sizeimage = sizeimageOf(f);
      const pool =
        sizeimage === undefined
          ? 'use pool buffers whose page-aligned size reaches sizeimage'
          : `use pool buffers whose page-aligned size reaches sizeimage (${windowPhrase(sizeimage)})`;
      const format =
        bytesused !== undefined && dmabuf !== undefined && dmabuf >= bytesused
          ? `set a smaller OUTPUT format (sizeimage between ${bytesused} and ${dmabuf})`
          : 'set a smaller OUTPUT format';
      return `${pool}, or ${format}`;
    },
  },

  'import-memory-not-contiguous': {
    errnos: ['EFAULT', 'EINVAL'],
    when: 'VIDIOC_QBUF of a DMABUF whose sizes fit, refused because the decoder needs physically contiguous memory (demux buffers are vmalloc)',
    remedy:
      'feed this decoder through a copy (the external consumer sink) or use a decoder behind an IOMMU or with scatter-gather (vb2-dma-sg); demux buffers are always vmalloc',
    summarize(f) {
      const bytesused = arg(f, 'bytesused');
      const dmabuf = arg(f, 'dmabufSize');
      const sizeimage = sizeimageOf(f);
      const sizes =
        bytesused !== undefined && dmabuf !== undefined && sizeimage !== undefined
          ? ` although the sizes fit (bytesused ${bytesused} <= sizeimage ${sizeimage} <= dmabuf ${dmabuf})`
          : '';
      const name = f.context.decoder?.name ? ` (${f.context.decoder.name})` : '';
      return `the decoder${on(f)}${name} could not import buffer ${arg(f, 'index') ?? '?'} (${f.errno})${sizes}: it needs physically contiguous memory, and demux buffers are scattered vmalloc pages`;
    },
    advise() {
      return "this decoder cannot take demux buffers without a copy: route the stream to the external consumer sink (a player that copies into the decoder's own buffers), or use a decoder behind an IOMMU or with vb2-dma-sg";
    },
  },

  'decoder-format-rejected': {
    errnos: ['EINVAL', 'EBUSY'],
    when: 'VIDIOC_S_FMT refused: a type or format the driver does not take (EINVAL), or buffers still allocated on the queue (EBUSY)',
    remedy:
      "pick a format from the decoder's VIDIOC_ENUM_FMT list within its size range; free the queue's buffers (REQBUFS 0) before changing it",
    summarize(f) {
      const type = arg(f, 'type');
      const width = arg(f, 'width');
      const height = arg(f, 'height');
      const queue = type === undefined ? '' : ` ${bufTypeName(type)}`;
      const size = width !== undefined && height !== undefined ? ` ${width}x${height}` : '';
      if (f.errno === 'EBUSY') {
        return `VIDIOC_S_FMT${on(f)} refused the${queue} format${size}: buffers are still allocated on that queue`;
      }
      return `VIDIOC_S_FMT${on(f)} refused the${queue} format${size} with ${f.errno}: the driver does not accept that buffer type or format`;
    },
    advise(f) {
      if (f.errno === 'EBUSY')
        return "stop streaming and free the queue's buffers (VIDIOC_REQBUFS count 0) before changing the format";
      return "choose a fourcc from the decoder's OUTPUT formats (enumFormats('output')) and a size within its range, with the buffer type VIDIOC_QUERYCAP implies (single- or multi-planar)";
    },
  },

  'dvb-mmap-missing': {
    errnos: ['ENOTTY', 'EOPNOTSUPP'],
    when: 'ENOTTY on DMX_REQBUFS/QUERYBUF/EXPBUF/QBUF/DQBUF or mmap, or EOPNOTSUPP opening a DVR O_RDWR: the kernel lacks CONFIG_DVB_MMAP',
    remedy:
      'build the kernel with CONFIG_DVB_MMAP=y (experimental, default n; off in stock Debian): in Yocto, add it to the kernel config fragment',
    summarize(f) {
      if (f.syscall === 'open') {
        return `opening ${f.device ?? 'the DVR'} O_RDWR failed with EOPNOTSUPP: this kernel was built without CONFIG_DVB_MMAP, so the DVR cannot be memory-mapped`;
      }
      return `${f.ioctl}${on(f)} failed with ${f.errno}: this kernel was built without CONFIG_DVB_MMAP, so the DVB mmap streaming API (DMX_REQBUFS, QUERYBUF, EXPBUF, QBUF, DQBUF) does not exist`;
    },
    advise() {
      return 'rebuild the kernel with CONFIG_DVB_MMAP=y (experimental, default n): there is no zero-copy demux path without it';
    },
  },

  'device-missing': {
    errnos: ['ENOENT', 'ENODEV', 'ENXIO'],
    when: 'opening a device node that does not exist, whose driver is not loaded, or that is not the expected kind of device',
    remedy: 'check the driver is loaded and the configured path or name; the agent waits for the device to appear',
    summarize(f) {
      const what = f.device ?? 'the device';
      return `${what} is not there: ${f.ioctl} failed with ${errnoText(f.errno)}${withDetail(f)}`;
    },
    advise(f) {
      const where = f.device?.includes('/dvb/') ? '/sys/class/dvb' : '/sys/class/video4linux';
      return `check the driver loaded (dmesg, ${where}) and the configured path or decoder name; the agent keeps looking for the device and starts the stream when it appears`;
    },
  },

  'device-busy': {
    errnos: ['EBUSY'],
    when: 'opening a node another process holds (the DVR takes a single reader)',
    remedy:
      "stop the other user of the node (find it with fuser); the agent must own the adapter's demux and DVR nodes",
    summarize(f) {
      return `${f.device ?? 'the device'} is busy (EBUSY on ${f.ioctl}): another process has it open${withDetail(f)}`;
    },
    advise(f) {
      return `find the other user (fuser -v ${f.device ?? '<node>'}) and stop it: the agent must own the adapter's demux and DVR nodes, and a second DVR reader also breaks mmap for the adapter`;
    },
  },

  'permission-denied': {
    errnos: ['EACCES', 'EPERM'],
    when: 'the agent may not open the node, or the call needs a write-mode fd (FE_SET_PROPERTY on a read-only frontend)',
    remedy:
      "run the agent as a user in the group that owns /dev/dvb and /dev/video* (usually 'video'), and open frontends read-write to tune",
    summarize(f) {
      return `${f.ioctl}${on(f)} was denied: ${errnoText(f.errno)}${withDetail(f)}`;
    },
    advise(f) {
      if (f.ioctl.startsWith('FE_') && f.errno === 'EPERM')
        return 'open the frontend read-write to tune it (a read-only fd may only read status)';
      return `give the agent's user access to ${f.device ?? 'the node'} (group 'video' via udev rules, or the systemd unit's SupplementaryGroups)`;
    },
  },

  'frontend-unsupported': {
    errnos: ['E524', 'EOPNOTSUPP', 'EINVAL'],
    when: 'a frontend ioctl the driver does not implement (ENOTSUPP 524, EOPNOTSUPP), or tuning it refuses (EINVAL on FE_SET_PROPERTY)',
    remedy: "check the frontend's delivery systems and frequency range (FE_GET_INFO) and tune within them",
    summarize(f) {
      const system = arg(f, 'deliverySystem');
      const frequency = arg(f, 'frequency');
      const tuning = [
        system === undefined ? '' : `delivery system ${system}`,
        frequency === undefined ? '' : `frequency ${frequency}`,
      ]
        .filter(Boolean)
        .join(', ');
      const asked = tuning ? ` (${tuning})` : '';
      if (f.errno === 'EINVAL') {
        return `the frontend${on(f)} refused the tuning${asked}: a delivery system it lacks or a frequency outside its range`;
      }
      return `the frontend${on(f)} does not support ${f.ioctl}${asked}: ${errnoText(f.errno)}`;
    },
    advise() {
      return 'read FE_GET_INFO (name, frequency range, delivery systems) and tune within what the frontend offers; statistics a driver lacks are reported as missing, not as errors';
    },
  },

  'decoder-gone': {
    errnos: ['ENODEV', 'ENXIO', 'EPIPE', 'EBADF'],
    when: 'the decoder disappeared or stopped for good (ENODEV, ENXIO, EBADF on its fd, EPIPE after its last buffer)',
    remedy:
      'check the decoder driver (dmesg); the demux pool keeps cycling without it and the agent reopens the decoder when it returns',
    summarize(f) {
      const name = f.context.decoder?.name ? ` (${f.context.decoder.name})` : '';
      const device = f.device ?? f.context.decoder?.path ?? 'the decoder';
      if (f.errno === 'EPIPE') {
        return `the decoder ${device}${name} signalled its last buffer (EPIPE on ${f.ioctl}): it returns nothing more until its queues are restarted`;
      }
      return `the decoder ${device}${name} went away (${errnoText(f.errno)} on ${f.ioctl}): the buffers it held are back in the pool, which keeps cycling without it`;
    },
    advise() {
      return 'check the decoder driver (dmesg); the agent reopens the decoder when it comes back and restarts its queues';
    },
  },

  'reqbufs-while-streaming': {
    errnos: ['EBUSY'],
    when: 'DMX_REQBUFS on a streaming fd (refused by the native layer; if the kernel sees it, the stream dies on 6.1), or VIDIOC_REQBUFS on a busy queue',
    remedy: 'resize by closing and reopening the node: filter, REQBUFS, map, export, queue',
    summarize(f) {
      const words = poolWords(f);
      const asked = words ? ` (${words})` : '';
      if (isDecoderCall(f)) {
        return `VIDIOC_REQBUFS${asked}${on(f)} failed with EBUSY: the queue is streaming or its buffers are still mapped or exported`;
      }
      if (f.prevented) {
        return `DMX_REQBUFS${asked}${on(f)} was refused before the kernel saw it: the queue is streaming, and on 6.1 a rejected REQBUFS kills the running stream`;
      }
      return `DMX_REQBUFS${asked}${on(f)} failed with EBUSY because the queue is streaming; on 6.1 this leaves the running stream dead`;
    },
    advise(f) {
      if (isDecoderCall(f))
        return 'stop streaming on that queue (VIDIOC_STREAMOFF) and release its buffers before requesting new ones';
      if (f.prevented) return `resize without REQBUFS on the live fd: ${REOPEN_POOL}`;
      return `this stream must be rebuilt now: ${REOPEN_POOL}`;
    },
  },

  'pump-attached': {
    errnos: ['EBUSY'],
    when: 'queueing, dequeuing, reallocating or closing a pool (or decoder) while a pump drives it',
    remedy: 'stop the pump first (or let the supervisor resize, which does)',
    summarize(f) {
      return `${f.ioctl}${on(f)} ${refusedBy(f)}: a pump is driving this pool, and only the pump may move its buffers while it runs`;
    },
    advise() {
      return "stop or close the pump before touching the pool or decoder directly; the supervisor's resize and shutdown paths do this in order";
    },
  },

  'stream-dead': {
    errnos: ['EBUSY', 'EINVAL'],
    when: 'a streaming DVB queue that will never complete another buffer (after a rejected DMX_REQBUFS reset it)',
    remedy: 'close and reopen the node and set the pool up again: there is no STREAMOFF on DVB',
    summarize(f) {
      const detail = f.detail ? ` (${f.detail})` : '';
      return `the stream${on(f)} is dead: the queue was reset (by a rejected DMX_REQBUFS) and no buffer will complete again${detail}`;
    },
    advise() {
      return `${REOPEN_POOL}; there is no STREAMOFF on DVB, only close frees the queue`;
    },
  },

  'queue-error': {
    errnos: ['EIO'],
    when: 'DQBUF on a vb2 queue the driver put in its error state',
    remedy: "close and reopen the node (or restart the decoder's queues), and check dmesg for the driver's error",
    summarize(f) {
      return `${f.ioctl}${on(f)} failed with EIO: the driver put the buffer queue in its error state, and nothing more will be dequeued from it`;
    },
    advise(f) {
      if (isDecoderCall(f))
        return "restart the decoder (close, reopen, prepare) and check dmesg for the driver's error";
      return `check dmesg for the driver's error, then ${REOPEN_POOL}`;
    },
  },

  'end-of-stream': {
    errnos: ['EPIPE'],
    when: 'DQBUF after the last buffer was dequeued',
    remedy: 'nothing more comes on this queue: close and reopen it to continue',
    summarize(f) {
      return `${f.ioctl}${on(f)} failed with EPIPE: the last buffer was already dequeued, and nothing more will come on this queue`;
    },
    advise() {
      return `if the stream should go on, ${REOPEN_POOL}`;
    },
  },

  'out-of-memory': {
    errnos: ['ENOMEM'],
    when: 'the kernel could not allocate the buffers (or a decoder granted none)',
    remedy: 'use fewer or smaller buffers; check free memory and vmalloc space',
    summarize(f) {
      const count = arg(f, 'count');
      const size = arg(f, 'size');
      const asked =
        count !== undefined && size !== undefined ? ` for ${count} x ${size} bytes (${count * size} in all)` : '';
      return `${f.ioctl}${on(f)} failed with ENOMEM${asked}: the kernel could not allocate the memory${withDetail(f)}`;
    },
    advise(f) {
      const count = arg(f, 'count');
      return `use fewer${count !== undefined ? ` than ${count}` : ''} or smaller buffers; check MemAvailable and VmallocUsed in /proc/meminfo (demux buffers are vmalloc)`;
    },
  },

  'fd-limit': {
    errnos: ['EMFILE', 'ENFILE'],
    when: 'the process (EMFILE) or the system (ENFILE) is out of file descriptors',
    remedy: 'raise LimitNOFILE in the systemd unit, and look for leaked fds (each exported buffer holds one)',
    summarize(f) {
      const scope = f.errno === 'ENFILE' ? 'the whole system has' : 'the agent has';
      return `${f.ioctl}${on(f)} failed with ${f.errno}: ${scope} run out of file descriptors`;
    },
    advise(f) {
      if (f.errno === 'ENFILE') return 'raise fs.file-max, and find the process holding the most fds (ls /proc/*/fd)';
      return 'raise LimitNOFILE in deploy/dmx-agent.service and check /proc/<pid>/fd for leaks: every exported pool buffer holds one fd';
    },
  },

  'pool-size-invalid': {
    errnos: ['EINVAL'],
    when: 'a pool count or size the agent refuses before any call: size not a multiple of 188, above 770048, or a count outside 2..32',
    remedy: 'use a size that is a positive multiple of 188 up to 770048 and a count from 2 to 32',
    summarize(f) {
      const words = poolWords(f);
      return `the pool${words ? ` (${words})` : ''} was refused before any call${withDetail(f)}`;
    },
    advise(f) {
      const size = arg(f, 'size');
      if (size !== undefined && size > 0) {
        const down = Math.min(MAX_DEMUX_BUFFER_SIZE, Math.floor(size / TS_PACKET_SIZE) * TS_PACKET_SIZE);
        const up = Math.min(MAX_DEMUX_BUFFER_SIZE, Math.ceil(size / TS_PACKET_SIZE) * TS_PACKET_SIZE);
        if (down > 0 && (size % TS_PACKET_SIZE !== 0 || size > MAX_DEMUX_BUFFER_SIZE)) {
          const sizes = down === up ? `${down} bytes` : `${down} or ${up} bytes`;
          return `use a size of ${sizes} (multiples of 188, at most ${MAX_DEMUX_BUFFER_SIZE}) and a count from 2 to 32`;
        }
      }
      return `use a size that is a positive multiple of 188 up to ${MAX_DEMUX_BUFFER_SIZE} and a count from 2 to 32`;
    },
  },

  'pool-exceeds-decoder-format': {
    errnos: ['EINVAL'],
    when: "pool buffers that would break an import rule against the decoder's OUTPUT sizeimage, found before any import",
    remedy: 'choose the pool size and the OUTPUT format together: size <= sizeimage <= page-aligned size',
    summarize(f) {
      const size = arg(f, 'size') ?? f.context.pool?.size;
      const sizeimage = sizeimageOf(f);
      if (size === undefined || sizeimage === undefined) {
        return `the pool's buffer size does not fit the decoder's OUTPUT format${withDetail(f)}`;
      }
      const dmabuf = pageAlign(size);
      const rule =
        size > sizeimage
          ? `a full buffer's bytesused (${size}) would exceed the OUTPUT sizeimage ${sizeimage}`
          : `its page-aligned dmabuf (${dmabuf} bytes) would be smaller than the OUTPUT sizeimage ${sizeimage}`;
      const decoder = f.context.decoder?.path ? ` ${f.context.decoder.path}` : '';
      return `pool buffers of ${size} bytes cannot be imported by the decoder${decoder}: ${rule}`;
    },
    advise(f) {
      const size = arg(f, 'size') ?? f.context.pool?.size;
      const sizeimage = sizeimageOf(f);
      if (size === undefined || sizeimage === undefined)
        return 'choose the pool size and the OUTPUT format together: size <= sizeimage <= page-aligned size';
      return `use pool buffers of ${windowPhrase(sizeimage)}, or set an OUTPUT format whose sizeimage is between ${size} and ${pageAlign(size)}`;
    },
  },

  'invalid-argument': {
    errnos: ['EINVAL'],
    when: 'an EINVAL no known condition explains, or an argument the agent or native layer refused before the call',
    remedy:
      "read the ruled-out conditions and the arguments; enable videobuf2/dvb debug output and check dmesg for the kernel's reason",
    summarize(f) {
      if (f.prevented) return `${f.ioctl}${on(f)} was refused before the kernel saw it${withDetail(f)}`;
      const ruledOut = f.ruledOut && f.ruledOut.length > 0 ? `; ruled out: ${f.ruledOut.join('; ')}` : '';
      return withCaveat(
        `${f.ioctl}${on(f)} failed with EINVAL and no known cause matches${withDetail(f)}${ruledOut}`,
        f,
      );
    },
    advise(f) {
      if (f.prevented) return 'fix the argument the message names';
      return "enable the kernel's reason (echo 1 > /sys/module/videobuf2_common/parameters/debug, dvb_core dvb_vb2 debug) and read dmesg after the next failure";
    },
  },

  unexplained: {
    errnos: [],
    when: 'any other failure',
    remedy: 'read the errno and the arguments, and check dmesg',
    summarize(f) {
      return withCaveat(
        `${f.ioctl}${on(f)} failed with ${errnoText(f.errno)}${withDetail(f)}; no known cause matches`,
        f,
      );
    },
    advise() {
      return 'check dmesg around the time of the failure; if it repeats, report it with the arguments below';
    },
  },
};

const CAUSE_CODES = new Set<string>(Object.keys(CAUSES));

export function isCauseCode(value: unknown): value is CauseCode {
  return typeof value === 'string' && CAUSE_CODES.has(value);
}

/** The summary and remedy of a cause for one failed call. */
export function explainCause(cause: CauseCode, facts: CauseFacts): { summary: string; remedy: string } {
  const entry = CAUSES[cause];
  return { summary: entry.summarize(facts), remedy: entry.advise(facts) };
}

/** The catalog as a table, for the README and `dmx-agent` help. */
export function describeCauses(): Array<{ cause: CauseCode; errnos: string[]; when: string; remedy: string }> {
  return (Object.keys(CAUSES) as CauseCode[]).map((cause) => ({
    cause,
    errnos: [...CAUSES[cause].errnos],
    when: CAUSES[cause].when,
    remedy: CAUSES[cause].remedy,
  }));
}
