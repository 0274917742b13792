import { describe, expect, it } from 'vitest';
import { type HealthConfig, type PumpLedgerEntry, StreamHealthTracker } from '../../agent/health/stream-health.js';
import type { BufferOwner, PumpStats } from '../../agent/native/index.js';

const BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
const HEALTH: HealthConfig = {
  intervalMs: 1000,
  stuckBufferMs: 2000,
  watermark: { low: 0.25, high: 0.75, hysteresis: 0.1, minDurationMs: 2000, noDataMs: 3000 },
  lossShareCritical: 0.05,
};
/** 1 Mbit/s into 8 buffers of 64 TS packets: 96 ms to fill one, 770 ms for the pool. */
const BITRATE = 1_000_000;
const POOL = { count: 8, size: 64 * 188 };
const T0 = 1_700_000_000_000;

/**
 * Builds the cumulative PumpStats a running pump would report, one event at
 * a time, the way pump.cc counts them.
 */
class PumpStatsBuilder {
  private readonly stats: PumpStats = {
    state: 'running',
    sink: 'decoder',
    buffersDequeued: 0,
    bytesDequeued: 0,
    flags: { crc32Discard: 0, tei: 0, packetCounterMismatch: 0, discontinuityDetected: 0, discontinuityIndicator: 0 },
    ts: { packets: 0, syncErrors: 0, teiPackets: 0, ccGaps: 0, ccGapsByPid: {} },
    zeroQueued: { totalMs: 0, currentMs: 0, episodes: 0 },
    queuedInKernel: POOL.count,
    inSink: 0,
    sinkTime: {
      submitted: 0,
      declined: 0,
      returned: 0,
      holdMsTotal: 0,
      holdMsMax: 0,
      holdMsMean: 0,
      holdHistogram: { boundsMs: [...BOUNDS], counts: new Array<number>(BOUNDS.length + 1).fill(0) },
    },
    requeueFailures: 0,
    errors: {},
    eventsDropped: 0,
    polls: 0,
    lastDequeueAgoMs: null,
    uptimeMs: 0,
  };

  state(state: string): this {
    this.stats.state = state;
    return this;
  }

  /** Time passes with nothing dequeued. */
  idle(ms: number): this {
    this.stats.uptimeMs += ms;
    if (this.stats.lastDequeueAgoMs !== null) this.stats.lastDequeueAgoMs += ms;
    return this;
  }

  /** `ms` of flow: `buffers` dequeued with `bytesEach`, each passed to the sink. */
  flow(ms: number, buffers: number, bytesEach = POOL.size): this {
    this.idle(ms);
    this.stats.buffersDequeued += buffers;
    this.stats.bytesDequeued += buffers * bytesEach;
    this.stats.ts.packets += (buffers * bytesEach) / 188;
    this.stats.sinkTime.submitted += buffers;
    if (buffers > 0) this.stats.lastDequeueAgoMs = 0;
    return this;
  }

  /** Buffers coming back from the sink after these hold times. */
  returned(...holdMs: number[]): this {
    const sink = this.stats.sinkTime;
    for (const hold of holdMs) {
      sink.returned++;
      sink.holdMsTotal += hold;
      sink.holdMsMax = Math.max(sink.holdMsMax, hold);
      const index = BOUNDS.findIndex((bound) => hold <= bound);
      const bucket = index === -1 ? BOUNDS.length : index;
      sink.holdHistogram.counts[bucket] = (sink.holdHistogram.counts[bucket] ?? 0) + 1;
    }
    sink.holdMsMean = sink.returned > 0 ? sink.holdMsTotal / sink.returned : 0;
    return this;
  }

  zeroQueued(ms: number): this {
    this.stats.zeroQueued.totalMs += ms;
    this.stats.zeroQueued.episodes++;
    return this;
  }

  ccGaps(pid: number, count: number): this {
    this.stats.ts.ccGaps += count;
    const key = String(pid); // pump.cc keys PIDs in decimal
    this.stats.ts.ccGapsByPid[key] = (this.stats.ts.ccGapsByPid[key] ?? 0) + count;
    return this;
  }

  flag(name: keyof PumpStats['flags'], count: number): this {
    this.stats.flags[name] += count;
    return this;
  }

  teiPackets(count: number): this {
    this.stats.ts.teiPackets += count;
    return this;
  }

  syncErrors(count: number): this {
    this.stats.ts.syncErrors += count;
    return this;
  }

  error(key: string, count: number): this {
    this.stats.errors[key] = (this.stats.errors[key] ?? 0) + count;
    return this;
  }

  queued(inKernel: number): this {
    this.stats.queuedInKernel = inKernel;
    return this;
  }

  snapshot(): PumpStats {
    return structuredClone(this.stats);
  }
}

/** A ledger with buffers in each place, all exported; `held` ages the sink's buffers. */
function ledger(places: Partial<Record<BufferOwner, number>>, heldMs = 50): PumpLedgerEntry[] {
  const entries: PumpLedgerEntry[] = [];
  for (const owner of ['kernel', 'agent', 'decoder', 'consumer'] as const) {
    for (let i = 0; i < (places[owner] ?? 0); i++) {
      const index = entries.length;
      const sinceMs = owner === 'decoder' || owner === 'consumer' ? heldMs : 20;
      entries.push({ index, owner, exportFd: 30 + index, sinceMs });
    }
  }
  return entries;
}

const HEALTHY_LEDGER = ledger({ kernel: 7, decoder: 1 });

function tracker(options: { startMs?: number; bitrate?: number } = {}): StreamHealthTracker {
  return new StreamHealthTracker({
    stream: 'hd',
    bitrate: options.bitrate ?? BITRATE,
    pool: POOL,
    health: HEALTH,
    startMs: options.startMs ?? T0,
  });
}

function sample(
  health: StreamHealthTracker,
  stats: PumpStats,
  nowMs: number,
  extra: { ledger?: PumpLedgerEntry[]; sinkAttached?: boolean; sinkExpected?: boolean } = {},
) {
  return health.sample({
    stats,
    ledger: extra.ledger ?? HEALTHY_LEDGER,
    nowMs,
    sinkAttached: extra.sinkAttached ?? true,
    sinkExpected: extra.sinkExpected ?? true,
  });
}

describe('StreamHealthTracker: a healthy stream', () => {
  it('reports rates, fill ratio, ledger and fds from the first window, which starts at construction', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10).returned(...Array(10).fill(15));
    const health = sample(tracker(), pump.snapshot(), T0 + 1000);

    expect(health.stream).toBe('hd');
    expect(health.atMs).toBe(T0 + 1000);
    expect(health.windowMs).toBe(1000);
    expect(health.pool).toEqual(POOL);
    expect(health.ledger).toEqual({ kernel: 7, agent: 0, decoder: 1, consumer: 0 });
    expect(health.rate).toEqual({ buffersPerSecond: 10, bytesPerSecond: 120_320, bitsPerSecond: 962_560 });
    expect(health.totals).toEqual({ buffers: 10, bytes: 120_320 });
    expect(health.fillRatio).toBe(1);
    expect(health.exportedFds).toBe(8);
    expect(health.zeroQueued).toEqual({ totalMs: 0, windowMs: 0, share: 0, episodes: 0, estimatedLossBytes: 0 });
    // All in the (10, 20] bucket; the window's max (15, a new all-time max) caps the interpolation.
    expect(health.sinkLatencyMs).toEqual({ p50: 15, p95: 15, p99: 15, max: 15, mean: 15 });
    expect(health.anomalies).toEqual([]);
    expect(health.watermark).toBe('low'); // 1 of 8 out of the kernel
    expect(health.level).toBe('ok');
    expect(health.reasons).toEqual([]);
  });

  it('rates cover only the window since the previous sample', () => {
    const pump = new PumpStatsBuilder();
    const health = tracker();
    sample(health, pump.flow(1000, 10).snapshot(), T0 + 1000);
    const second = sample(health, pump.flow(2000, 10, 6016).snapshot(), T0 + 3000);
    expect(second.windowMs).toBe(2000);
    expect(second.rate.buffersPerSecond).toBe(5);
    expect(second.rate.bytesPerSecond).toBe(30_080);
    expect(second.fillRatio).toBe(0.5); // half-filled buffers
    expect(second.totals).toEqual({ buffers: 20, bytes: 180_480 });
    expect(second.sinkLatencyMs).toBeNull(); // nothing came back in the window
  });

  it('reports a null fill ratio and zero rates when nothing was dequeued', () => {
    const health = sample(tracker(), new PumpStatsBuilder().idle(500).snapshot(), T0 + 500);
    expect(health.fillRatio).toBeNull();
    expect(health.rate).toEqual({ bytesPerSecond: 0, buffersPerSecond: 0, bitsPerSecond: 0 });
    expect(health.level).toBe('ok');
  });

  it('reports flags, CC gaps and errors as totals and per window, PIDs in hex', () => {
    const pump = new PumpStatsBuilder();
    const health = tracker();
    sample(health, pump.flow(1000, 10).ccGaps(0x111, 2).flag('discontinuityDetected', 1).snapshot(), T0 + 1000);
    const second = sample(
      health,
      pump.flow(1000, 10).ccGaps(0x111, 1).ccGaps(0x100, 4).error('VIDIOC_QBUF:EINVAL', 2).snapshot(),
      T0 + 2000,
    );
    expect(second.ccGaps).toEqual({ total: 7, window: 5, byPid: { '0x0111': 3, '0x0100': 4 } });
    expect(second.flags.discontinuityDetected).toEqual({ total: 1, window: 0 });
    expect(second.errors).toEqual({ 'VIDIOC_QBUF:EINVAL': 2 });

    // Old problems only: totals stay, the level is ok again.
    const third = sample(health, pump.flow(1000, 10).snapshot(), T0 + 3000);
    expect(third.ccGaps.window).toBe(0);
    expect(third.ccGaps.total).toBe(7);
    expect(third.level).toBe('ok');
  });
});

describe('StreamHealthTracker: pump restarts', () => {
  it('resets the baseline when counters go backwards instead of reporting negative rates', () => {
    const health = tracker();
    const old = new PumpStatsBuilder()
      .flow(5000, 50)
      .returned(10, 10, 3000)
      .ccGaps(0x111, 4)
      .zeroQueued(40)
      .error('DMX_QBUF:EINVAL', 1);
    sample(health, old.snapshot(), T0 + 5000);

    // Resized: a new pump whose counters start from zero again.
    const fresh = new PumpStatsBuilder().flow(400, 3).returned(12);
    const after = sample(health, fresh.snapshot(), T0 + 6000);
    expect(after.rate.buffersPerSecond).toBe(3);
    expect(after.rate.bytesPerSecond).toBeGreaterThan(0);
    expect(after.ccGaps).toEqual({ total: 4, window: 0, byPid: { '0x0111': 4 } });
    expect(after.zeroQueued.windowMs).toBe(0);
    expect(after.zeroQueued.totalMs).toBe(40);
    expect(after.totals).toEqual({ buffers: 53, bytes: 53 * POOL.size });
    expect(after.errors).toEqual({ 'DMX_QBUF:EINVAL': 1 });
    // The new pump's own max (12 ms), not the old one's 3 s.
    expect(after.sinkLatencyMs?.max).toBe(12);
    expect(after.level).toBe('ok');

    // And the next window is a plain delta against the new pump.
    const next = sample(health, fresh.flow(1000, 10).snapshot(), T0 + 7000);
    expect(next.rate.buffersPerSecond).toBe(10);
    expect(next.totals.buffers).toBe(63);
  });

  it('treats a histogram count going down as a restart', () => {
    const health = tracker();
    sample(health, new PumpStatsBuilder().flow(1000, 10).returned(15, 15).snapshot(), T0 + 1000);
    // More buffers than before (so no scalar went down) but a younger histogram.
    const other = new PumpStatsBuilder().flow(900, 12).returned(15, 100, 100).snapshot();
    const after = sample(health, other, T0 + 2000);
    expect(after.rate.buffersPerSecond).toBe(12);
    expect(after.totals.buffers).toBe(22);
  });

  it('reset() forgets totals and starts the window at the given time', () => {
    const health = tracker();
    const pump = new PumpStatsBuilder().flow(1000, 10).ccGaps(0x111, 1);
    sample(health, pump.snapshot(), T0 + 1000);
    health.reset(T0 + 1500);
    const after = sample(health, new PumpStatsBuilder().flow(500, 4).snapshot(), T0 + 2000);
    expect(after.windowMs).toBe(500);
    expect(after.totals.buffers).toBe(4);
    expect(after.ccGaps.total).toBe(0);
  });
});

describe('StreamHealthTracker: sink latency', () => {
  it('takes percentiles from the window histogram and max/mean from the hold deltas', () => {
    const pump = new PumpStatsBuilder();
    const health = tracker();
    // First window: one very slow return sets the all-time max.
    sample(health, pump.flow(1000, 10).returned(900).snapshot(), T0 + 1000);
    // Second window: 100 returns, 90 at 8 ms, 10 at 40 ms.
    const holds = [...Array(90).fill(8), ...Array(10).fill(40)];
    const second = sample(
      health,
      pump
        .flow(1000, 100)
        .returned(...holds)
        .snapshot(),
      T0 + 2000,
    );
    const latency = second.sinkLatencyMs!;
    expect(latency.mean).toBeCloseTo(11.2, 6);
    // The all-time max (900) did not rise: the window max is bounded by its top bucket (20, 50].
    expect(latency.max).toBe(50);
    expect(latency.p50).toBeGreaterThan(5);
    expect(latency.p50).toBeLessThanOrEqual(10);
    expect(latency.p95).toBeGreaterThan(20);
    expect(latency.p99).toBeLessThanOrEqual(50);
    expect(second.level).toBe('ok');
  });

  it('is degraded when the sink p99 exceeds what the pool can buffer', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10).returned(...Array(8).fill(30), 1500, 1800);
    const health = sample(tracker(), pump.snapshot(), T0 + 1000);
    expect(health.sinkLatencyMs!.p99).toBeGreaterThan(770);
    expect(health.sinkLatencyMs!.max).toBe(1800);
    expect(health.level).toBe('degraded');
    expect(health.reasons).toEqual([
      expect.stringMatching(/^Sink p99 hold time 1\.\d s exceeds the 770 ms the pool can buffer \(8 x 96 ms/),
    ]);
  });

  it('uses the new pool after setPool', () => {
    const health = tracker();
    health.setPool({ count: 4, size: 2 * 64 * 188 });
    const after = sample(health, new PumpStatsBuilder().flow(1000, 5, 64 * 188).snapshot(), T0 + 1000, {
      ledger: ledger({ kernel: 4 }),
    });
    expect(after.pool).toEqual({ count: 4, size: 24_064 });
    expect(after.fillRatio).toBe(0.5);
  });
});

describe('StreamHealthTracker: levels and reasons', () => {
  it('is critical when zero-queued time reaches lossShareCritical of the window', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10).zeroQueued(100);
    const health = sample(tracker(), pump.snapshot(), T0 + 1000);
    expect(health.zeroQueued).toEqual({
      totalMs: 100,
      windowMs: 100,
      share: 0.1,
      episodes: 1,
      estimatedLossBytes: 12_500, // 100 ms at 1 Mbit/s
    });
    expect(health.watermark).toBe('overflow');
    expect(health.level).toBe('critical');
    expect(health.reasons).toEqual([
      'Data lost: no buffer queued in the kernel for 100 ms of the last 1.0 s (10.0%), about 12.5 kB lost at 1.0 Mbit/s',
    ]);
  });

  it('is degraded when some zero-queued time stays below the critical share', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10).zeroQueued(10);
    const health = sample(tracker(), pump.snapshot(), T0 + 1000);
    expect(health.watermark).toBe('overflow');
    expect(health.level).toBe('degraded');
    expect(health.reasons[0]).toMatch(/^Data lost: no buffer queued in the kernel for 10 ms .* \(1\.0%\)/);
  });

  it('is critical with a buffer stuck in the sink', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10);
    const stuck = ledger({ kernel: 7, decoder: 1 }, 2500);
    const health = sample(tracker(), pump.snapshot(), T0 + 1000, { ledger: stuck });
    expect(health.anomalies).toEqual([{ kind: 'stuck-buffer', index: 7, owner: 'decoder', heldMs: 2500 }]);
    expect(health.level).toBe('critical');
    expect(health.reasons).toEqual(['Buffer 7 held by the decoder for 2.5 s (limit 2.0 s)']);

    const two = sample(tracker(), pump.snapshot(), T0 + 1000, { ledger: ledger({ kernel: 6, consumer: 2 }, 4000) });
    expect(two.anomalies).toHaveLength(2);
    expect(two.reasons).toEqual([
      '2 buffers held by the sink longer than 2.0 s (longest: buffer 6, 4.0 s in the consumer)',
    ]);
  });

  it('is critical with no data for noDataMs while the pump runs, and not when it is stopped', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10).idle(3500);
    const health = sample(tracker(), pump.snapshot(), T0 + 4500);
    expect(health.level).toBe('critical');
    expect(health.reasons).toEqual(['No buffer from the demux for 3.5 s while the pump runs (limit 3.0 s)']);

    const stopped = sample(tracker(), pump.state('stopped').snapshot(), T0 + 4500);
    expect(stopped.level).toBe('ok');
  });

  it('counts the wait of a pump that has not dequeued anything yet', () => {
    const pump = new PumpStatsBuilder().idle(3200);
    const health = sample(tracker(), pump.snapshot(), T0 + 3200);
    expect(health.level).toBe('critical');
    expect(health.reasons[0]).toMatch(/^No buffer from the demux for 3\.2 s/);
  });

  it('is degraded by a high watermark only once it has held for the minimum duration', () => {
    const pump = new PumpStatsBuilder();
    const health = tracker();
    const backedUp = ledger({ kernel: 1, agent: 1, decoder: 6 });
    const levels = [1000, 2000, 3000, 4000].map((ms) =>
      sample(health, pump.flow(1000, 10).queued(1).snapshot(), T0 + ms, { ledger: backedUp }),
    );
    expect(levels.map((h) => h.watermark)).toEqual(['high', 'high', 'high', 'high']); // the first report is immediate
    expect(levels[0]!.reasons).toEqual([
      'High watermark: 87.5% of the pool is out of the kernel (7 of 8), the sink is falling behind',
    ]);

    const later = tracker();
    sample(later, pump.snapshot(), T0 + 1000); // normal flow first
    const rising = [2000, 3000, 4000].map((ms) =>
      sample(later, pump.flow(1000, 10).snapshot(), T0 + ms, { ledger: backedUp }),
    );
    expect(rising.map((h) => h.level)).toEqual(['ok', 'ok', 'degraded']);
  });

  it('is degraded by CC gaps, naming each PID with the window', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10).ccGaps(0x111, 3);
    const health = sample(tracker(), pump.snapshot(), T0 + 1000);
    expect(health.level).toBe('degraded');
    expect(health.reasons).toEqual(['3 continuity gaps on PID 0x0111 in the last 1.0 s']);

    const many = new PumpStatsBuilder().flow(1000, 10).ccGaps(0x100, 5).ccGaps(0x101, 4).ccGaps(0x111, 3);
    many.ccGaps(0x200, 1).ccGaps(0x201, 1);
    const summary = sample(tracker(), many.snapshot(), T0 + 1000);
    expect(summary.reasons).toEqual([
      '5 continuity gaps on PID 0x0100 in the last 1.0 s',
      '4 continuity gaps on PID 0x0101 in the last 1.0 s',
      '3 continuity gaps on PID 0x0111 in the last 1.0 s',
      '2 continuity gaps on 2 other PIDs in the last 1.0 s',
    ]);
  });

  it('is degraded by TEI and CRC discards', () => {
    const tei = sample(
      tracker(),
      new PumpStatsBuilder().flow(1000, 10).teiPackets(4).flag('tei', 1).snapshot(),
      T0 + 1000,
    );
    expect(tei.level).toBe('degraded');
    expect(tei.reasons).toEqual([
      'Transport error indicator set in the last 1.0 s: 4 TS packets, 1 buffer flagged by the kernel',
    ]);
    expect(tei.flags.tei).toEqual({ total: 1, window: 1 });
    expect(tei.ts.teiPackets).toBe(4);

    const crc = sample(tracker(), new PumpStatsBuilder().flow(1000, 10).flag('crc32Discard', 2).snapshot(), T0 + 1000);
    expect(crc.level).toBe('degraded');
    expect(crc.reasons).toEqual(['2 section CRC32 discards in the last 1.0 s']);
  });

  it('is degraded by errors in the window', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10).error('VIDIOC_QBUF:EINVAL', 12);
    const health = sample(tracker(), pump.snapshot(), T0 + 1000);
    expect(health.level).toBe('degraded');
    expect(health.reasons).toEqual(['12 VIDIOC_QBUF:EINVAL errors in the last 1.0 s']);
  });

  it('is degraded when the sink is expected but not attached', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10);
    const gone = sample(tracker(), pump.snapshot(), T0 + 1000, { sinkAttached: false, sinkExpected: true });
    expect(gone.level).toBe('degraded');
    expect(gone.reasons).toEqual([
      'The sink is expected but not attached (decoder gone?): buffers go back to the kernel undelivered',
    ]);
    const discard = sample(tracker(), pump.snapshot(), T0 + 1000, { sinkAttached: false, sinkExpected: false });
    expect(discard.level).toBe('ok');
  });

  it('lists critical reasons before degraded ones', () => {
    const pump = new PumpStatsBuilder().flow(1000, 10).ccGaps(0x111, 1).zeroQueued(200);
    const health = sample(tracker(), pump.snapshot(), T0 + 1000);
    expect(health.level).toBe('critical');
    expect(health.reasons).toHaveLength(2);
    expect(health.reasons[0]).toMatch(/^Data lost/);
    expect(health.reasons[1]).toBe('1 continuity gap on PID 0x0111 in the last 1.0 s');
  });
});
