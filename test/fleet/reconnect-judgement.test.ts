// The scale run's pass line on synthetic reconnect timelines: fleets that follow
// the agent's own backoff policy pass wherever second boundaries fall, herds
// fail. Seeded, so every timeline is the same on every run.
import { describe, expect, it } from 'vitest';
import { reconnectDelayMs } from '../../agent/mqtt/link.js';
import { busiestWindow, herdWindowMs, judgeReconnects, type ReconnectTimeline } from './reconnect-judgement.js';
import { generator as seeded } from './simulator.js';

const POLICY = { baseMs: 1000, capMs: 300_000, marginMs: 5000 };

function timeline(reconnectMs: number[], devices = reconnectMs.length): ReconnectTimeline {
  return { devices, reconnectMs, ...POLICY };
}

/** `count` reconnects spread at random over [fromMs, fromMs + spanMs). */
function spread(count: number, fromMs: number, spanMs: number, seed: number): number[] {
  const random = seeded(seed);
  return Array.from({ length: count }, () => fromMs + random() * spanMs);
}

/**
 * A fleet that follows the agent's policy (reconnectDelayMs from link.ts): every device loses the
 * broker at 0, which listens again at outageMs; an attempt before that fails at once and is retried.
 * Returns the reconnect times after the broker listened again.
 */
function policyFleet(devices: number, outageMs: number, seed: number): number[] {
  const random = seeded(seed);
  return Array.from({ length: devices }, () => {
    let at = 0;
    for (let attempt = 0; ; attempt++) {
      at += reconnectDelayMs(attempt, POLICY, random);
      if (at >= outageMs) return at - outageMs;
    }
  });
}

/** The first wording of the pass line, kept to show what it got wrong: 1 s bins from the broker's return. */
function oneSecondBinsPass(reconnectMs: readonly number[]): boolean {
  const last = Math.max(...reconnectMs);
  const seconds = Math.max(1, Math.ceil(last / 1000));
  const bins = new Array<number>(seconds).fill(0);
  for (const ms of reconnectMs) {
    const bin = Math.min(seconds - 1, Math.max(0, Math.floor(ms / 1000)));
    bins[bin] = (bins[bin] ?? 0) + 1;
  }
  return Math.max(...bins) <= (2 * reconnectMs.length) / seconds;
}

describe('busiestWindow', () => {
  it('counts the most values in any half-open window, wherever it starts', () => {
    expect(busiestWindow([], 100)).toBe(0);
    expect(busiestWindow([5], 100)).toBe(1);
    // 0..99 holds 0, 50, 99; 100 is outside [0, 100) but 50..149 holds 50, 99, 100, 120.
    expect(busiestWindow([0, 50, 99, 100, 120, 300], 100)).toBe(4);
    expect(busiestWindow([0, 100, 200], 100)).toBe(1);
  });
});

describe('judgeReconnects: the herd check', () => {
  it('passes a fleet spread evenly over the base delay', () => {
    const judgement = judgeReconnects(timeline(spread(10_000, 0, 1000, 1)));
    expect(judgement.windowMs).toBe(100);
    expect(judgement.limitInWindow).toBe(2000);
    expect(judgement.herdCanFail).toBe(true);
    expect(judgement.noHerd).toBe(true);
    expect(judgement.passed).toBe(true);
  });

  it('passes fleets following the agent policy after short and long outages', () => {
    for (const devices of [500, 2000, 10_000]) {
      for (const outageMs of [0, 500, 1350, 5000, 60_000]) {
        const judgement = judgeReconnects(timeline(policyFleet(devices, outageMs, devices + outageMs)));
        expect({ devices, outageMs, noHerd: judgement.noHerd }).toEqual({ devices, outageMs, noHerd: true });
      }
    }
  });

  it('fails a herd: every box within 20 ms (which the old 1 s bins passed)', () => {
    const herd = spread(10_000, 1000, 20, 2);
    expect(oneSecondBinsPass(herd)).toBe(true);
    const judgement = judgeReconnects(timeline(herd));
    expect(judgement.peakInWindow).toBe(10_000);
    expect(judgement.noHerd).toBe(false);
    expect(judgement.passed).toBe(false);
  });

  it('fails a herd that has stragglers', () => {
    const herd = [...spread(480, 200, 10, 3), ...spread(20, 0, 30_000, 4)];
    expect(judgeReconnects(timeline(herd)).noHerd).toBe(false);
  });

  it('fails a herd riding on an even spread: a third of the fleet within 50 ms', () => {
    const mixed = [...spread(2000, 0, 1000, 5), ...spread(1000, 600, 50, 6)];
    expect(judgeReconnects(timeline(mixed)).noHerd).toBe(false);
  });

  it('fails a fleet jittered over a third of the base: too tight, though not one burst', () => {
    expect(judgeReconnects(timeline(spread(10_000, 0, 333, 7))).noHerd).toBe(false);
  });

  it('passes a short spread wherever its second boundaries fall (the old 1 s bins flipped)', () => {
    // The shape of a 500-box run after a 35 ms outage: nearly all back within the base, a few
    // retries later. Only where the last straggler lands differs between the two timelines.
    const bulk = spread(497, -20, 1000, 8);
    const lastAt1811 = [...bulk, 1200, 1500, 1811];
    const lastAt2050 = [...bulk, 1200, 1500, 2050];
    expect(oneSecondBinsPass(lastAt1811)).toBe(true);
    expect(oneSecondBinsPass(lastAt2050)).toBe(false);
    expect(judgeReconnects(timeline(lastAt1811)).noHerd).toBe(true);
    expect(judgeReconnects(timeline(lastAt2050)).noHerd).toBe(true);
    // Moving the whole timeline does not move the verdict: there are no fixed boundaries.
    for (const shiftMs of [-500, -250, 250, 499, 777]) {
      const shifted = judgeReconnects(timeline(lastAt2050.map((ms) => ms + shiftMs)));
      expect(shifted.peakInWindow).toBe(judgeReconnects(timeline(lastAt2050)).peakInWindow);
    }
  });

  it('widens the window for small fleets, and says when the check cannot fail', () => {
    expect(herdWindowMs(10_000, 1000)).toBe(100);
    expect(herdWindowMs(500, 1000)).toBe(200);
    expect(herdWindowMs(50, 1000)).toBe(1000);
    const small = judgeReconnects(timeline(spread(200, 0, 5, 9)));
    expect(small.herdCanFail).toBe(false);
    expect(small.noHerd).toBe(true);
    expect(judgeReconnects(timeline(spread(201, 0, 5, 9))).herdCanFail).toBe(true);
    expect(judgeReconnects(timeline(spread(201, 0, 5, 9))).noHerd).toBe(false);
  });
});

describe('judgeReconnects: every device back within the cap plus the margin', () => {
  it('fails a device back after the bound, and a device missing', () => {
    const late = judgeReconnects(timeline([...spread(999, 0, 1000, 10), 305_001]));
    expect(late.boundMs).toBe(305_000);
    expect(late.allBackWithinCapPlusMargin).toBe(false);
    expect(late.passed).toBe(false);
    const missing = judgeReconnects(timeline(spread(999, 0, 1000, 11), 1000));
    expect(missing.devicesBack).toBe(999);
    expect(missing.allBackWithinCapPlusMargin).toBe(false);
    expect(judgeReconnects(timeline(spread(1000, 0, 1000, 12))).allBackWithinCapPlusMargin).toBe(true);
  });
});
