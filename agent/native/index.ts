/**
 * The typed surface of the native layer: the only module the rest of the
 * agent imports for anything that touches a device. native/ does every
 * syscall; this file adds types, constants and the checks that belong to
 * policy rather than to the kernel (pool sizes that keep TS packets whole).
 */
import { constants as fsConstants } from 'node:fs';
import {
  type NativeConsumerSink,
  type NativeDecoder,
  type NativeDemux,
  type NativeFrontend,
  type NativePump,
  type NativeSimulation,
  native,
  type PesFilterParams,
  type SectionFilterParams,
} from './bindings.js';

import { MAX_DEMUX_BUFFER_SIZE, MAX_POOL_COUNT, MIN_POOL_COUNT, TS_PACKET_SIZE } from './limits.js';

export type * from './bindings.js';
export { DmxError, isDmxError } from './dmx-error.js';
export * from './limits.js';

export const Demux = native.Demux;
export const Frontend = native.Frontend;
export const Decoder = native.Decoder;
export const ConsumerSink = native.ConsumerSink;
export const Pump = native.Pump;
export const Simulation = native.Simulation;
export const sdNotify = native.sdNotify;

export type Demux = NativeDemux;
export type Frontend = NativeFrontend;
export type Decoder = NativeDecoder;
export type ConsumerSink = NativeConsumerSink;
export type Pump = NativePump;
export type Simulation = NativeSimulation;

/** The PID that selects every PID in a PES filter. */
export const ALL_PIDS = 0x2000;

/** dmx_buffer.flags bits (include/uapi/linux/dvb/dmx.h). */
export const DMX_BUFFER_FLAG = {
  HAD_CRC32_DISCARD: 1 << 0,
  TEI: 1 << 1,
  PKT_COUNTER_MISMATCH: 1 << 2,
  DISCONTINUITY_DETECTED: 1 << 3,
  DISCONTINUITY_INDICATOR: 1 << 4,
} as const;

/** Flags accepted by DMX_EXPBUF: O_CLOEXEC and the access mode. */
export const EXPORT_FLAGS = {
  O_CLOEXEC: 0o2000000,
  O_RDONLY: fsConstants.O_RDONLY,
  O_RDWR: fsConstants.O_RDWR,
  O_APPEND: fsConstants.O_APPEND,
} as const;

export interface PoolRequest {
  path: string;
  kind?: 'demux' | 'dvr';
  filter: ({ type?: 'pes' } & PesFilterParams) | ({ type: 'section' } & SectionFilterParams);
  count: number;
  size: number;
  simulation?: NativeSimulation;
  exportFlags?: number;
  /** Export every buffer as a DMABUF (needed by decoder and consumer sinks). */
  export?: boolean;
}

/**
 * Checks a pool request against what keeps the stream intact; throws a
 * RangeError naming the fix. The kernel would accept worse (it clamps the
 * size and does not round it to 188), so these are ours to enforce.
 */
export function validatePoolRequest(count: number, size: number): void {
  if (!Number.isInteger(count) || count < MIN_POOL_COUNT || count > MAX_POOL_COUNT) {
    throw new RangeError(
      `pool count must be an integer from ${MIN_POOL_COUNT} to ${MAX_POOL_COUNT} (vb2 grants at most ${MAX_POOL_COUNT}), got ${count}`,
    );
  }
  if (!Number.isInteger(size) || size <= 0 || size % TS_PACKET_SIZE !== 0) {
    throw new RangeError(
      `pool buffer size must be a positive multiple of ${TS_PACKET_SIZE} so TS packets never straddle buffers, got ${size}`,
    );
  }
  if (size > MAX_DEMUX_BUFFER_SIZE) {
    throw new RangeError(
      `pool buffer size must be at most ${MAX_DEMUX_BUFFER_SIZE} bytes (the kernel clamps), got ${size}`,
    );
  }
}

/**
 * Opens a demux or DVR node and sets up its pool in libdvbv5's order: filter,
 * DMX_REQBUFS (keeping what was granted), QUERYBUF + mmap, DMX_EXPBUF. The
 * first QBUF (by a pump) starts streaming. On any failure everything opened
 * so far is closed before the error is rethrown.
 */
export function openDemuxPool(request: PoolRequest): NativeDemux {
  validatePoolRequest(request.count, request.size);
  const demux = new native.Demux(request.path, {
    kind: request.kind ?? 'demux',
    ...(request.simulation ? { simulation: request.simulation } : {}),
  });
  try {
    const { filter } = request;
    if (filter.type === 'section') demux.setSectionFilter({ ...filter, start: true });
    else demux.setPesFilter({ ...filter, start: true });
    demux.requestBuffers(request.count, request.size);
    demux.mapBuffers();
    if (request.export !== false) {
      demux.exportBuffers(request.exportFlags !== undefined ? { flags: request.exportFlags } : undefined);
    }
    return demux;
  } catch (err) {
    demux.close();
    throw err;
  }
}
