import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../agent/streams/backoff.js';

describe('retry backoff', () => {
  const opts = { initialMs: 500, maxMs: 30_000, jitter: 0, random: () => 0.5 };

  it('doubles from the initial delay up to the cap', () => {
    expect([0, 1, 2, 3, 4, 7, 8, 50].map((n) => backoffDelay(n, opts))).toEqual([
      0, 500, 1000, 2000, 4000, 30_000, 30_000, 30_000,
    ]);
  });

  it('jitter only shortens, by at most its share', () => {
    const low = backoffDelay(3, { ...opts, jitter: 0.2, random: () => 1 });
    const high = backoffDelay(3, { ...opts, jitter: 0.2, random: () => 0 });
    expect(low).toBe(1600);
    expect(high).toBe(2000);
  });

  it('survives absurd failure counts without overflowing', () => {
    expect(backoffDelay(1e9, opts)).toBe(30_000);
  });
});
