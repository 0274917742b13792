/** Types of valgrind.mjs (the parsers the harness test checks). */

export const PUMP_LOOP: string;
export const C_LOOP: string;
export const PUMP_RETURNED: string;
export const DECODER_JOB: string;
export const TS_CHECK: string;

export interface CallgrindCounts {
  /** The profile's total of its first event (Ir: instructions executed). */
  instructions: number;
  /** Calls to each function asked for, by name. */
  calls: Record<string, number>;
  /** The inclusive cost of those calls (the function and all it called), by name. */
  inclusive: Record<string, number>;
}

export interface DhatProfile {
  mode: string;
  /** Program points: total bytes, total copies, frame indices (innermost first). */
  pps: Array<{ tb: number; tbk: number; fs: number[] }>;
  ftbl: string[];
}

export interface CopyAttribution {
  /** Bytes copied by the program's own code on the loop's thread. */
  own: number;
  /** Bytes copied by the simulated kernel on that thread (inside a call). */
  kernel: number;
  /** Bytes copied by the simulated decoder processing a job the thread's QBUF started. */
  decoderJob: number;
  /** How many copies `own` is made of. */
  ownCopies: number;
}

export function valgrindVersion(): string;
export function parseCallgrind(text: string, callees?: readonly string[]): CallgrindCounts;
export function attributeCopies(profile: DhatProfile, loop: string): CopyAttribution;
export function callgrindSample(
  command: string,
  args: readonly string[],
  options: { loop: string; callees?: readonly string[]; dir: string; name: string },
): Promise<CallgrindCounts & { sample: Record<string, unknown> }>;
export function dhatSample(
  command: string,
  args: readonly string[],
  options: { loop: string; dir: string; name: string },
): Promise<{ sample: Record<string, unknown>; copies: CopyAttribution }>;
