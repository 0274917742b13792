/** A stream's lifecycle, as every other part of the agent observes it. */

export const STREAM_STATES = [
  'closed',
  'opening',
  'configuring',
  'allocating',
  'streaming',
  'degraded',
  'draining',
  'failed',
] as const;

export type StreamState = (typeof STREAM_STATES)[number];

export interface StreamStateChange {
  stream: string;
  from: StreamState;
  to: StreamState;
  /** Why, in plain terms ('device /dev/dvb/adapter0/demux0 missing: waiting', 'resize to 8 x 12032'). */
  reason: string;
  atMs: number;
}

/** What the supervisor tells about a stream at any moment. */
export interface StreamStatus {
  stream: string;
  state: StreamState;
  reason: string;
  sinceMs: number;
  /** The pool in use (granted by the kernel), or null when none is allocated. */
  pool: { count: number; size: number } | null;
  sink: { type: 'decoder' | 'consumer' | 'discard'; attached: boolean; detail: string };
  /** Consecutive failures since the last time the stream was up; drives the backoff. */
  failures: number;
  /** When the next attempt is due (epoch ms), or null. */
  retryAtMs: number | null;
}
