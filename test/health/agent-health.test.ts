import { closeSync, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentHealthSampler, countOpenFds } from '../../agent/health/agent-health.js';

describe('AgentHealthSampler', () => {
  const samplers: AgentHealthSampler[] = [];
  const sampler = (now?: () => number) => {
    const created = new AgentHealthSampler(now ? { now } : {});
    samplers.push(created);
    return created;
  };
  afterEach(() => {
    for (const created of samplers.splice(0)) created.stop();
  });

  it('returns sane process figures and counts streams by state', () => {
    const health = sampler(() => 1234).sample([
      { state: 'streaming' },
      { state: 'streaming' },
      { state: 'degraded' },
      { state: 'failed' },
      { state: 'opening' },
    ]);
    expect(health.atMs).toBe(1234);
    expect(health.uptimeSeconds).toBeGreaterThan(0);
    expect(health.uptimeSeconds).toBeLessThanOrEqual(process.uptime());
    expect(health.rssBytes).toBeGreaterThan(health.heapUsedBytes);
    expect(health.heapUsedBytes).toBeGreaterThan(0);
    for (const value of Object.values(health.eventLoopLagMs)) {
      expect(Number.isFinite(value)).toBe(true);
      expect(value).toBeGreaterThanOrEqual(0);
    }
    expect(health.openFds).toBeGreaterThanOrEqual(3); // stdin, stdout, stderr at least
    expect(health.streams).toEqual({ total: 5, streaming: 2, degraded: 1, failed: 1, other: 1 });
  });

  it('counts one more fd while the test holds a file open, and the same after it closes it', () => {
    const health = sampler();
    const file = fileURLToPath(import.meta.url);
    const before = health.sample([]).openFds;
    const fd = openSync(file, 'r');
    let during: number;
    try {
      during = health.sample([]).openFds;
    } finally {
      closeSync(fd);
    }
    const after = health.sample([]).openFds;
    expect(during).toBe(before + 1);
    expect(after).toBe(before);
  });

  it('sees a blocked event loop as lag (a lower bound: a busier machine only adds to it)', async () => {
    const health = sampler();
    await sleep(60);
    health.sample([]); // start a fresh window
    // After a reset the histogram measures from its next timer tick: let one pass first.
    await sleep(60);
    const blockUntil = performance.now() + 150;
    while (performance.now() < blockUntil) {
      // Busy: no timer can fire.
    }
    await sleep(60);
    const lag = health.sample([]).eventLoopLagMs;
    expect(lag.max).toBeGreaterThanOrEqual(100);
    expect(lag.p99).toBeGreaterThanOrEqual(100);
    expect(lag.mean).toBeLessThanOrEqual(lag.max);
  });

  it('stops measuring on stop(), safely twice', () => {
    const health = sampler();
    health.stop();
    health.stop();
    expect(health.sample([]).eventLoopLagMs).toEqual({ mean: 0, p99: 0, max: 0 });
  });
});

describe('countOpenFds', () => {
  it('answers -1 where the fd directory cannot be read', () => {
    expect(countOpenFds('/nonexistent/fd-directory')).toBe(-1);
  });
});
