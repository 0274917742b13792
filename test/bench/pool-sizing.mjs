/**
 * Row 8, pool sizing: the pool the sizing policy (planPool) chooses for
 * bitrates from 2 to 80 Mbit/s with the default targets (latencyMs 40,
 * bufferingMs 500, no decoder), and the fill latency it implies. Computed,
 * not timed: the baseline is the latency target itself, so the ratio is the
 * share of the target a buffer's fill time uses.
 */
import { planPool } from '../../dist/agent/streams/sizing.js';
import { metric } from './lib/harness.mjs';

const LATENCY_MS = 40;
const BUFFERING_MS = 500;
export const BITRATES_MBPS = [2, 5, 10, 20, 40, 80];

export async function run({ smoke = false } = {}) {
  const plans = BITRATES_MBPS.map((mbps) => ({
    mbps,
    plan: planPool({
      bitrate: mbps * 1_000_000,
      latencyMs: LATENCY_MS,
      bufferingMs: BUFFERING_MS,
      count: null,
      size: null,
      decoderSizeimage: null,
    }),
  }));
  return {
    id: 8,
    title: `Pool sizing (targets ${LATENCY_MS} ms latency, ${BUFFERING_MS} ms buffering)`,
    rounds: 1,
    baseline: `the latency target (${LATENCY_MS} ms); computed by planPool, not timed`,
    metrics: plans.map(({ mbps, plan }) =>
      metric(
        `fill time, ${mbps} Mbit/s: ${plan.count} x ${plan.size} B (${(plan.count * plan.allocationBytes) / 1024} KiB, holds ${plan.holdsMs.toFixed(0)} ms)`,
        'ms',
        plan.fillMs,
        LATENCY_MS,
      ),
    ),
    reading:
      "Ratio = one buffer's fill time / the latency target: at most 1x means the target is met (the size is the " +
      'largest whole number of TS packets that fills within it); the count covers the buffering target.',
    notes: smoke ? ['smoke'] : [],
    samples: plans.map(({ mbps, plan }) => ({ mbps, ...plan })),
  };
}
