/**
 * The kernel's numbers for demux pools (kernel-facts.md), in a module that
 * loads nothing native: configuration checks, sizing, diagnosis and command
 * schemas use them without the addon (check-config runs anywhere).
 */
export const TS_PACKET_SIZE = 188;
/** DMX_REQBUFS clamps buffer sizes to this (dvb_vb2.c DVB_V2_MAX_SIZE). */
export const MAX_DEMUX_BUFFER_SIZE = 4096 * TS_PACKET_SIZE;
/** Demux allocations, and so the exported dmabufs, are whole pages. */
export const PAGE_SIZE = 4096;
/** vb2 grants at most 32 buffers (VB2_MAX_FRAME); a pump needs two to cycle. */
export const MIN_POOL_COUNT = 2;
export const MAX_POOL_COUNT = 32;

export function pageAlign(bytes: number): number {
  return Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE;
}
