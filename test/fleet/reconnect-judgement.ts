/**
 * The scale run's pass line for the reconnect after a broker restart, as a pure
 * function of the reconnect times (tested on synthetic timelines in
 * reconnect-judgement.test.ts):
 *
 * 1. Every device is back within the backoff cap plus a margin after the
 *    broker listens again.
 * 2. No thundering herd: in no window of `windowMs` (every window, sliding, not
 *    fixed bins) do more devices connect than twice the rate the backoff policy
 *    spreads them to: at most 2 * N * windowMs / baseMs connects.
 *
 * Why the policy's rate and not "twice the mean over the observed spread" in
 * one-second bins, the first wording of the pass line:
 * - The agent's full-jitter backoff (agent/mqtt/link.ts, reconnectDelayMs)
 *   delays each device's first attempt uniformly over [0, base): N devices
 *   arrive at N / base on average. A failed attempt k is retried after a delay
 *   uniform over [0, base * 2^k), so however long the outage, the expected
 *   rate stays below N / base * (1 + 1/2 + 1/4 + ...) = 2 N / base (plus a
 *   share of N / cap for capped delays). Simulating the policy, its busiest
 *   moment is about 1.35 N / base, after an outage of about base / 2 (the
 *   retries of failed first attempts land on top of the first attempts of the
 *   others); longer outages spread the fleet further and lower the rate.
 * - The observed spread is a poor denominator: a few stragglers (retries after
 *   a short outage) stretch it and lower the mean, so a fleet perfectly spread
 *   over the base passed or failed depending on where its last box landed; and
 *   a real herd, every box within a few milliseconds, is as even within its
 *   own tiny spread as a good fleet is within its own: measured against
 *   itself, a herd passes.
 * - With one-second bins a 2-4 s spread has 2-4 bins whose boundaries fall
 *   anywhere, and the last, partly covered second lowered the mean.
 *
 * The window is a tenth of the base (100 ms by default), so the policy's first
 * attempts span ten windows, widened for a small fleet until the policy's rate
 * puts at least MIN_CONNECTS_PER_WINDOW connects in it: with fewer, chance alone
 * could double a window. Simulated with reconnectDelayMs itself, fleets of 200
 * to 10,000 devices after outages of 0 to 120 s keep their busiest window at
 * about 0.9 of the limit or less; a fleet whose reconnects are bunched into half
 * the base or less fails, and so does anything closer to a herd. With 200
 * devices or fewer the limit is at least the fleet, so the check cannot fail
 * (`herdCanFail` says so).
 *
 * What is timed is a device's accepted connection as the simulator sees it, so
 * the rig's own throughput (one process, one broker) smooths any burst: a herd
 * can only show up as fast as the rig accepts connections.
 */

/** The policy's rate puts at least this many connects in a window on average. */
export const MIN_CONNECTS_PER_WINDOW = 100;
/** Windows per base delay, when the fleet is large enough. */
export const WINDOWS_PER_BASE = 10;
/** The pass line's factor over the policy's rate. */
export const HERD_FACTOR = 2;

export interface ReconnectTimeline {
  /** Devices in the fleet. */
  devices: number;
  /** Each device's reconnect, ms after the broker listened again (it may be slightly negative: see scale.ts); one per device back. */
  reconnectMs: readonly number[];
  /** The backoff policy (mqtt.reconnect). */
  baseMs: number;
  capMs: number;
  /** Added to the cap for the "all back" bound. */
  marginMs: number;
}

export interface ReconnectJudgement {
  devicesBack: number;
  /** The first and the last reconnect (ms after the broker listened again). */
  firstMs: number;
  lastMs: number;
  /** For information: the most connects in any one second (sliding) and the mean per second from the first to the last. */
  peakPerSecond: number;
  meanPerSecond: number;
  boundMs: number;
  allBackWithinCapPlusMargin: boolean;
  /** The herd check: the most connects in any window of windowMs, and the limit. */
  windowMs: number;
  peakInWindow: number;
  limitInWindow: number;
  /** The policy's average rate (N / base, per second) and the limit as a rate. */
  policyPerSecond: number;
  limitPerSecond: number;
  /** False when the fleet is too small for the check to fail at all. */
  herdCanFail: boolean;
  noHerd: boolean;
  passed: boolean;
}

/** The most values of a sorted array inside any half-open window [t, t + widthMs). */
export function busiestWindow(sortedMs: readonly number[], widthMs: number): number {
  let most = 0;
  let start = 0;
  for (let end = 0; end < sortedMs.length; end++) {
    while ((sortedMs[end] as number) - (sortedMs[start] as number) >= widthMs) start += 1;
    most = Math.max(most, end - start + 1);
  }
  return most;
}

/** The herd check's window: a tenth of the base, widened so the policy's rate puts MIN_CONNECTS_PER_WINDOW in it, at most the base. */
export function herdWindowMs(devices: number, baseMs: number): number {
  const share = Math.max(1 / WINDOWS_PER_BASE, MIN_CONNECTS_PER_WINDOW / Math.max(1, devices));
  return baseMs * Math.min(1, share);
}

export function judgeReconnects(timeline: ReconnectTimeline): ReconnectJudgement {
  const { devices, baseMs, capMs, marginMs } = timeline;
  if (!(baseMs > 0) || !(capMs > 0) || !(devices > 0)) {
    throw new RangeError('devices, baseMs and capMs must be positive');
  }
  const sorted = [...timeline.reconnectMs].sort((a, b) => a - b);
  const back = sorted.length;
  const firstMs = sorted[0] ?? Number.NaN;
  const lastMs = sorted[back - 1] ?? Number.NaN;
  const boundMs = capMs + marginMs;
  const windowMs = herdWindowMs(devices, baseMs);
  const limitInWindow = (HERD_FACTOR * devices * windowMs) / baseMs;
  const peakInWindow = busiestWindow(sorted, windowMs);
  const allBackWithinCapPlusMargin = back === devices && lastMs <= boundMs;
  const noHerd = peakInWindow <= limitInWindow;
  return {
    devicesBack: back,
    firstMs,
    lastMs,
    peakPerSecond: busiestWindow(sorted, 1000),
    meanPerSecond: back === 0 ? 0 : back / Math.max(0.001, (lastMs - firstMs) / 1000),
    boundMs,
    allBackWithinCapPlusMargin,
    windowMs,
    peakInWindow,
    limitInWindow,
    policyPerSecond: (devices * 1000) / baseMs,
    limitPerSecond: (HERD_FACTOR * devices * 1000) / baseMs,
    herdCanFail: limitInWindow < devices,
    noHerd,
    passed: allBackWithinCapPlusMargin && noHerd,
  };
}
