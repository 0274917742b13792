/**
 * Agent-wide health: uptime, memory, event-loop lag and open file
 * descriptors (a leak of exported DMABUF fds shows here first).
 */
import { readdirSync } from 'node:fs';
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import type { AgentHealth } from './types.js';

/** The event-loop delay histogram's sampling period. */
export const EVENT_LOOP_RESOLUTION_MS = 20;

const NS_PER_MS = 1e6;

export interface AgentHealthOptions {
  /** Epoch ms for atMs (tests inject a clock). */
  now?: () => number;
  /** Where the process's fds are listed (Linux). */
  fdDirectory?: string;
}

/**
 * The number of open file descriptors of this process, or -1 when the
 * directory cannot be read (not Linux). Listing the directory opens one fd
 * of its own, which the count leaves out.
 */
export function countOpenFds(fdDirectory = '/proc/self/fd'): number {
  try {
    return readdirSync(fdDirectory).length - 1;
  } catch {
    return -1;
  }
}

export class AgentHealthSampler {
  private readonly now: () => number;
  private readonly fdDirectory: string;
  private readonly loopDelay: IntervalHistogram;
  private stopped = false;

  constructor(options: AgentHealthOptions = {}) {
    this.now = options.now ?? Date.now;
    this.fdDirectory = options.fdDirectory ?? '/proc/self/fd';
    this.loopDelay = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
    this.loopDelay.enable();
  }

  /** One snapshot; the event-loop figures cover the time since the previous one. */
  sample(streams: Array<{ state: string }>): AgentHealth {
    const memory = process.memoryUsage();
    const health: AgentHealth = {
      atMs: this.now(),
      uptimeSeconds: process.uptime(),
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      eventLoopLagMs: this.eventLoopLag(),
      openFds: countOpenFds(this.fdDirectory),
      streams: { total: streams.length, streaming: 0, degraded: 0, failed: 0, other: 0 },
    };
    for (const { state } of streams) {
      if (state === 'streaming') health.streams.streaming++;
      else if (state === 'degraded') health.streams.degraded++;
      else if (state === 'failed') health.streams.failed++;
      else health.streams.other++;
    }
    return health;
  }

  /** Stops measuring the event loop; safe to call twice. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.loopDelay.disable();
  }

  private eventLoopLag(): AgentHealth['eventLoopLagMs'] {
    const histogram = this.loopDelay;
    if (histogram.count === 0) {
      histogram.reset();
      return { mean: 0, p99: 0, max: 0 };
    }
    // The histogram records the whole interval between timer checks, which
    // includes the resolution itself: the lag is what exceeds it.
    const lag = (ns: number) => Math.max(0, ns / NS_PER_MS - EVENT_LOOP_RESOLUTION_MS);
    const result = { mean: lag(histogram.mean), p99: lag(histogram.percentile(99)), max: lag(histogram.max) };
    // After a reset Node measures from its next timer tick on: the one interval
    // spanning this call goes uncounted (a stall ending in this very turn of the loop).
    histogram.reset();
    return result;
  }
}
