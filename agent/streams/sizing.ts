/**
 * The pool sizing policy: how many demux buffers, of what size, for a stream
 * of a given bitrate, latency target and sink. Pure functions, no device
 * access, so the config loader can check a pool before anything is opened.
 *
 * The rules come from kernel-facts.md:
 * - DMX_REQBUFS clamps the size to 4096 * 188 = 770048 bytes and does not round
 *   it to 188, so the size is ours to keep a multiple of 188 (TS packets never
 *   straddle buffers);
 * - vb2 grants at most 32 buffers;
 * - TS buffers complete only when full, so one buffer's fill time (size over
 *   the byte rate) is the latency the pool adds;
 * - the allocation, and so the exported dmabuf, is page aligned;
 * - a V4L2 decoder imports a dmabuf on OUTPUT only when bytesused <= its OUTPUT
 *   sizeimage and the dmabuf is at least sizeimage (two separate EINVALs).
 */
import type { StreamConfig } from '../config/types.js';

import {
  MAX_DEMUX_BUFFER_SIZE,
  MAX_POOL_COUNT,
  MIN_POOL_COUNT,
  PAGE_SIZE,
  pageAlign,
  TS_PACKET_SIZE,
} from '../native/limits.js';

export { MAX_DEMUX_BUFFER_SIZE, MAX_POOL_COUNT, MIN_POOL_COUNT, PAGE_SIZE, pageAlign, TS_PACKET_SIZE };
/**
 * The smallest count the policy derives. With two or three buffers the kernel
 * is left with none queued as soon as one is held by the sink and one waits in
 * the agent, and data arriving then is dropped silently (kernel-facts.md):
 * four leaves one filling, one spare, and one each for the agent and the sink.
 */
export const MIN_DERIVED_COUNT = 4;
/**
 * The smallest buffer the policy derives, in TS packets (752 bytes). Every
 * buffer costs a poll wake-up, a DQBUF, a sink hand-off and a QBUF whatever
 * its size; below a few packets that cost is paid per packet, and 32 such
 * buffers hold only a few milliseconds of any real stream.
 */
export const MIN_DERIVED_PACKETS = 4;

export type SizingKey = 'size' | 'count' | 'latencyMs' | 'bufferingMs' | 'bitrate' | 'decoder';

/** A pool that cannot be had; `key` names the input to change, the message the numbers and the fix. */
export class SizingError extends RangeError {
  readonly key: SizingKey;

  constructor(key: SizingKey, message: string) {
    super(message);
    this.name = 'SizingError';
    this.key = key;
  }
}

export interface PoolInput {
  /** Bits per second of the data the filter passes. */
  bitrate: number;
  /** Upper bound on one buffer's fill time. */
  latencyMs: number;
  /** Data the whole pool should hold while the sink is slow. */
  bufferingMs: number;
  /** Fixed values, or null to derive them. */
  count: number | null;
  size: number | null;
  /** The decoder's OUTPUT sizeimage when the sink is a decoder, else null. */
  decoderSizeimage: number | null;
}

export interface PoolPlan {
  count: number;
  size: number;
  /** What the kernel allocates per buffer (and the dmabuf size): size rounded up to a page. */
  allocationBytes: number;
  /** Time to fill one buffer at the bitrate: the latency the pool adds. */
  fillMs: number;
  /** Data the whole pool holds, in ms at the bitrate. */
  holdsMs: number;
  /**
   * What decided the numbers: 'fixed size', 'fixed count', 'latency', 'packet floor',
   * 'decoder sizeimage', 'buffering', 'count floor', 'max count'.
   */
  derivedFrom: string[];
  /** Targets the plan could not meet, in plain terms (empty when it meets them all). */
  warnings: string[];
}

function bytesPerMs(bitrate: number): number {
  return bitrate / 8 / 1000;
}

function formatMs(ms: number): string {
  return `${Number(ms.toFixed(2))} ms`;
}

function formatBitrate(bitrate: number): string {
  return bitrate >= 1_000_000 ? `${Number((bitrate / 1_000_000).toFixed(3))} Mbit/s` : `${bitrate} bit/s`;
}

function isPositiveInteger(value: number): boolean {
  return Number.isInteger(value) && value > 0;
}

/**
 * The largest pool buffer size a decoder with this OUTPUT sizeimage imports
 * (a multiple of 188 <= sizeimage whose page-aligned allocation is still at
 * least sizeimage), or null when there is none.
 */
export function largestFittingSize(sizeimage: number): number | null {
  const size = Math.min(Math.floor(sizeimage / TS_PACKET_SIZE) * TS_PACKET_SIZE, MAX_DEMUX_BUFFER_SIZE);
  if (size === 0 || pageAlign(size) < sizeimage) return null;
  return size;
}

export type DecoderFit =
  | { ok: true }
  | { ok: false; rule: 'bytesused-above-sizeimage' | 'dmabuf-below-sizeimage'; message: string };

/** Whether pool buffers of `size` bytes pass both import rules of a decoder with this OUTPUT sizeimage. */
export function fitsDecoder(size: number, sizeimage: number): DecoderFit {
  if (!isPositiveInteger(size)) throw new RangeError(`size must be a positive integer, got ${size}`);
  if (!isPositiveInteger(sizeimage)) throw new RangeError(`sizeimage must be a positive integer, got ${sizeimage}`);
  const best = largestFittingSize(sizeimage);
  const fix =
    best === null
      ? `no multiple of ${TS_PACKET_SIZE} fits sizeimage ${sizeimage}: choose another OUTPUT format`
      : `use buffers of ${best} bytes (the largest multiple of ${TS_PACKET_SIZE} that fits) or change the OUTPUT format`;
  if (size > sizeimage) {
    return {
      ok: false,
      rule: 'bytesused-above-sizeimage',
      message:
        `a full ${size}-byte buffer is queued with bytesused ${size}, above the decoder's OUTPUT sizeimage ` +
        `${sizeimage} (VIDIOC_QBUF fails with EINVAL): ${fix}`,
    };
  }
  const allocation = pageAlign(size);
  if (allocation < sizeimage) {
    return {
      ok: false,
      rule: 'dmabuf-below-sizeimage',
      message:
        `a ${size}-byte buffer is exported as a ${allocation}-byte dmabuf, smaller than the decoder's OUTPUT ` +
        `sizeimage ${sizeimage} (VIDIOC_QBUF fails with EINVAL): ${fix}`,
    };
  }
  return { ok: true };
}

/** Bytes per pixel of the raw OUTPUT formats whose sizeimage needs no driver to know. */
const RAW_BYTES_PER_PIXEL: Readonly<Record<string, number>> = {
  RGB3: 3, // V4L2_PIX_FMT_RGB24
  BGR3: 3, // V4L2_PIX_FMT_BGR24
  RGBP: 2, // V4L2_PIX_FMT_RGB565
  RGBR: 2, // V4L2_PIX_FMT_RGB565X
};

/**
 * The sizeimage of a raw single-plane format at width x height, or null for
 * compressed or unknown fourccs (only the driver knows theirs). Drivers may
 * clamp or align the width and height; the granted format is what counts.
 */
export function rawSizeimage(fourcc: string, width: number, height: number): number | null {
  const bytesPerPixel = RAW_BYTES_PER_PIXEL[fourcc];
  if (bytesPerPixel === undefined) return null;
  if (!isPositiveInteger(width) || !isPositiveInteger(height)) {
    throw new RangeError(`width and height must be positive integers, got ${width}x${height}`);
  }
  return width * height * bytesPerPixel;
}

function checkInput(input: PoolInput): void {
  const { bitrate, latencyMs, bufferingMs, decoderSizeimage } = input;
  if (!(Number.isFinite(bitrate) && bitrate > 0)) {
    throw new SizingError('bitrate', `bitrate must be a positive number of bits per second, got ${bitrate}`);
  }
  if (!(Number.isFinite(latencyMs) && latencyMs > 0)) {
    throw new SizingError('latencyMs', `latencyMs must be a positive number of milliseconds, got ${latencyMs}`);
  }
  if (!(Number.isFinite(bufferingMs) && bufferingMs > 0)) {
    throw new SizingError('bufferingMs', `bufferingMs must be a positive number of milliseconds, got ${bufferingMs}`);
  }
  if (decoderSizeimage !== null && !isPositiveInteger(decoderSizeimage)) {
    throw new SizingError(
      'decoder',
      `the decoder's OUTPUT sizeimage must be a positive integer, got ${decoderSizeimage}`,
    );
  }
}

/** Why a fixed pool size cannot be used (with the fix), or null when it can. */
export function poolSizeProblem(size: number): string | null {
  if (!isPositiveInteger(size) || size % TS_PACKET_SIZE !== 0) {
    const below = Math.floor(size / TS_PACKET_SIZE) * TS_PACKET_SIZE;
    const suggestion =
      Number.isFinite(below) && below >= TS_PACKET_SIZE ? Math.min(below, MAX_DEMUX_BUFFER_SIZE) : TS_PACKET_SIZE;
    return (
      `pool size ${size} is not a positive multiple of ${TS_PACKET_SIZE}, so TS packets would straddle buffers: ` +
      `use ${suggestion} or another multiple of ${TS_PACKET_SIZE}`
    );
  }
  if (size > MAX_DEMUX_BUFFER_SIZE) {
    return (
      `pool size ${size} is above ${MAX_DEMUX_BUFFER_SIZE}, the largest buffer DMX_REQBUFS grants ` +
      `(4096 TS packets): use at most ${MAX_DEMUX_BUFFER_SIZE}`
    );
  }
  return null;
}

/** Why a fixed pool count cannot be used (with the fix), or null when it can. */
export function poolCountProblem(count: number): string | null {
  if (!Number.isInteger(count) || count < MIN_POOL_COUNT || count > MAX_POOL_COUNT) {
    return (
      `pool count ${count} must be an integer from ${MIN_POOL_COUNT} to ${MAX_POOL_COUNT} (vb2 grants at most ` +
      `${MAX_POOL_COUNT} buffers): use a count in that range, or null to derive it from bufferingMs`
    );
  }
  return null;
}

function sizeFromDecoder(sizeimage: number): number {
  const size = largestFittingSize(sizeimage);
  if (size !== null) return size;
  if (sizeimage > MAX_DEMUX_BUFFER_SIZE) {
    throw new SizingError(
      'decoder',
      `the decoder's OUTPUT sizeimage ${sizeimage} is above ${MAX_DEMUX_BUFFER_SIZE}, the largest demux buffer, ` +
        `and a dmabuf smaller than sizeimage is refused: choose an OUTPUT format whose sizeimage is at most ` +
        `${MAX_DEMUX_BUFFER_SIZE}`,
    );
  }
  const candidate = Math.floor(sizeimage / TS_PACKET_SIZE) * TS_PACKET_SIZE;
  const below = pageAlign(candidate);
  const above = pageAlign(sizeimage);
  const alternatives = below > 0 && below !== above ? `${below} or ${above}` : `${above}`;
  throw new SizingError(
    'decoder',
    candidate === 0
      ? `the decoder's OUTPUT sizeimage ${sizeimage} is smaller than one TS packet (${TS_PACKET_SIZE} bytes): ` +
          `choose an OUTPUT format whose sizeimage is a multiple of ${PAGE_SIZE}, such as ${above}`
      : `no pool buffer fits the decoder's OUTPUT sizeimage ${sizeimage}: the largest multiple of ` +
          `${TS_PACKET_SIZE} not above it, ${candidate}, is allocated as a ${below}-byte dmabuf, smaller than ` +
          `sizeimage (the import fails with EINVAL): choose an OUTPUT format whose sizeimage is a multiple of ` +
          `${PAGE_SIZE} (such as ${alternatives}) or lies less than ${TS_PACKET_SIZE} bytes past a multiple of ` +
          `${TS_PACKET_SIZE} within its page`,
  );
}

function sizeFromLatency(input: PoolInput, derivedFrom: string[], warnings: string[]): number {
  const { bitrate, latencyMs } = input;
  const packets = Math.floor((latencyMs * bytesPerMs(bitrate)) / TS_PACKET_SIZE + 1e-9);
  if (packets > MAX_DEMUX_BUFFER_SIZE / TS_PACKET_SIZE) {
    const maxLatency = MAX_DEMUX_BUFFER_SIZE / bytesPerMs(bitrate);
    throw new SizingError(
      'latencyMs',
      `latencyMs ${latencyMs} at ${formatBitrate(bitrate)} needs ${packets * TS_PACKET_SIZE}-byte buffers, above ` +
        `${MAX_DEMUX_BUFFER_SIZE}, the largest DMX_REQBUFS grants (${formatMs(maxLatency)} of data at this ` +
        `bitrate): lower latencyMs to at most ${Math.floor(maxLatency)} or set a fixed pool size`,
    );
  }
  if (packets < MIN_DERIVED_PACKETS) {
    const size = MIN_DERIVED_PACKETS * TS_PACKET_SIZE;
    derivedFrom.push('packet floor');
    warnings.push(
      `latencyMs ${latencyMs} at ${formatBitrate(bitrate)} is less than ${MIN_DERIVED_PACKETS} TS packets per ` +
        `buffer; buffers of ${size} bytes take ${formatMs(size / bytesPerMs(bitrate))} to fill`,
    );
    return size;
  }
  derivedFrom.push('latency');
  return packets * TS_PACKET_SIZE;
}

function countFromBuffering(input: PoolInput, fillMs: number, derivedFrom: string[], warnings: string[]): number {
  // The small epsilon keeps exact quotients (500 / 50) from rounding up to the next buffer.
  const needed = Math.ceil(input.bufferingMs / fillMs - 1e-9);
  if (needed > MAX_POOL_COUNT) {
    derivedFrom.push('max count');
    warnings.push(
      `bufferingMs ${input.bufferingMs} needs ${needed} buffers of ${formatMs(fillMs)}; vb2 grants at most ` +
        `${MAX_POOL_COUNT}, which hold ${formatMs(MAX_POOL_COUNT * fillMs)}: raise latencyMs or the size to hold more`,
    );
    return MAX_POOL_COUNT;
  }
  if (needed < MIN_DERIVED_COUNT) {
    derivedFrom.push('buffering', 'count floor');
    return MIN_DERIVED_COUNT;
  }
  derivedFrom.push('buffering');
  return needed;
}

/**
 * The pool for one stream. Fixed values are validated, null ones derived:
 * the size from the decoder's OUTPUT sizeimage when there is a decoder (the
 * import rules leave no choice), else from the latency target; the count
 * from the buffering target. Throws SizingError for a pool that cannot work.
 */
export function planPool(input: PoolInput): PoolPlan {
  checkInput(input);
  const derivedFrom: string[] = [];
  const warnings: string[] = [];

  let size: number;
  if (input.size !== null) {
    const problem = poolSizeProblem(input.size);
    if (problem !== null) throw new SizingError('size', problem);
    if (input.decoderSizeimage !== null) {
      const fit = fitsDecoder(input.size, input.decoderSizeimage);
      if (!fit.ok) throw new SizingError('size', `pool size ${input.size} does not fit the decoder: ${fit.message}`);
    }
    derivedFrom.push('fixed size');
    size = input.size;
  } else if (input.decoderSizeimage !== null) {
    size = sizeFromDecoder(input.decoderSizeimage);
    derivedFrom.push('decoder sizeimage');
  } else {
    size = sizeFromLatency(input, derivedFrom, warnings);
  }

  const fillMs = size / bytesPerMs(input.bitrate);
  if (fillMs > input.latencyMs && !derivedFrom.includes('packet floor')) {
    const cause =
      input.size !== null
        ? `the fixed pool size ${size}`
        : `the decoder's OUTPUT sizeimage ${input.decoderSizeimage}, which sets ${size}-byte buffers,`;
    warnings.push(
      `${cause} takes ${formatMs(fillMs)} to fill at ${formatBitrate(input.bitrate)}, above latencyMs ` +
        `${input.latencyMs}: ${input.size !== null ? 'use a smaller size' : 'choose a smaller OUTPUT format'} ` +
        `for lower latency`,
    );
  }

  let count: number;
  if (input.count !== null) {
    const problem = poolCountProblem(input.count);
    if (problem !== null) throw new SizingError('count', problem);
    derivedFrom.push('fixed count');
    count = input.count;
  } else {
    count = countFromBuffering(input, fillMs, derivedFrom, warnings);
  }

  return { count, size, allocationBytes: pageAlign(size), fillMs, holdsMs: count * fillMs, derivedFrom, warnings };
}

/**
 * The decoder OUTPUT sizeimage a stream's config implies: the one it asks
 * for, or the one a raw format has; null when only the driver can tell (a
 * compressed format without sizeimage) or the sink is no decoder.
 */
export function configuredSizeimage(stream: StreamConfig): number | null {
  if (stream.sink.type !== 'decoder') return null;
  const { format } = stream.sink;
  return format.sizeimage ?? rawSizeimage(format.fourcc, format.width, format.height);
}

/**
 * planPool for a configured stream. `grantedSizeimage` is what the driver
 * answered to VIDIOC_S_FMT, once known; before that the configured one is used.
 */
export function planStreamPool(stream: StreamConfig, grantedSizeimage?: number | null): PoolPlan {
  const { pool } = stream;
  return planPool({
    bitrate: stream.bitrate,
    latencyMs: pool.latencyMs,
    bufferingMs: pool.bufferingMs,
    count: pool.count,
    size: pool.size,
    decoderSizeimage: grantedSizeimage ?? configuredSizeimage(stream),
  });
}

/**
 * The next pool when sustained pressure asks for more buffers: the count
 * grows by half (at least two), up to growth.maxCount and vb2's 32; the size
 * stays (it is tied to the latency target and the decoder). Null at the cap.
 */
export function growPool(
  current: { count: number; size: number },
  growth: { maxCount: number },
  bitrate: number,
): { count: number; size: number; holdsMs: number } | null {
  const cap = Math.min(growth.maxCount, MAX_POOL_COUNT);
  if (current.count >= cap) return null;
  const count = Math.min(cap, current.count + Math.max(2, Math.ceil(current.count / 2)));
  return { count, size: current.size, holdsMs: (count * current.size) / bytesPerMs(bitrate) };
}
