import { describe, expect, it } from 'vitest';
import type { StreamConfig } from '../../agent/config/types.js';
import {
  fitsDecoder,
  growPool,
  largestFittingSize,
  MAX_DEMUX_BUFFER_SIZE,
  type PoolInput,
  pageAlign,
  planPool,
  planStreamPool,
  rawSizeimage,
  SizingError,
} from '../../agent/streams/sizing.js';

const base: PoolInput = {
  bitrate: 12_000_000,
  latencyMs: 40,
  bufferingMs: 500,
  count: null,
  size: null,
  decoderSizeimage: null,
};

function sizingError(input: Partial<PoolInput>): SizingError {
  try {
    planPool({ ...base, ...input });
  } catch (err) {
    if (err instanceof SizingError) return err;
    throw err;
  }
  throw new Error('planPool did not throw');
}

describe('planPool from the latency target', () => {
  it('takes the largest multiple of 188 that fills within latencyMs, and enough buffers for bufferingMs', () => {
    // 12 Mbit/s = 1500 bytes/ms: 40 ms = 60000 bytes = 319.1 packets.
    const plan = planPool(base);
    expect(plan.size).toBe(319 * 188);
    expect(plan.allocationBytes).toBe(pageAlign(319 * 188));
    expect(plan.allocationBytes % 4096).toBe(0);
    expect(plan.fillMs).toBeCloseTo(59_972 / 1500, 6);
    expect(plan.fillMs).toBeLessThanOrEqual(40);
    expect(plan.count).toBe(Math.ceil(500 / plan.fillMs));
    expect(plan.holdsMs).toBeCloseTo(plan.count * plan.fillMs, 6);
    expect(plan.derivedFrom).toEqual(['latency', 'buffering']);
    expect(plan.warnings).toEqual([]);
  });

  it('does not round an exact quotient up to one more buffer', () => {
    // 100 packets fill in exactly 50 ms at 3.008 Mbit/s; 500 ms is exactly 10 of them.
    const plan = planPool({ ...base, bitrate: 3_008_000, latencyMs: 50, bufferingMs: 500 });
    expect(plan.size).toBe(18_800);
    expect(plan.fillMs).toBeCloseTo(50, 9);
    expect(plan.count).toBe(10);
  });

  it('accepts a latency that gives exactly 770048 bytes and refuses one packet more', () => {
    // 8 Mbit/s = 1000 bytes/ms.
    const plan = planPool({ ...base, bitrate: 8_000_000, latencyMs: 770.048 });
    expect(plan.size).toBe(MAX_DEMUX_BUFFER_SIZE);
    expect(plan.allocationBytes).toBe(MAX_DEMUX_BUFFER_SIZE);

    const err = sizingError({ bitrate: 8_000_000, latencyMs: 770.236 });
    expect(err.key).toBe('latencyMs');
    expect(err.message).toContain('770048');
    expect(err.message).toContain('lower latencyMs to at most 770');
  });

  it('keeps at least 4 packets per buffer and says the latency target is missed', () => {
    // 64 kbit/s = 8 bytes/ms: 40 ms is 320 bytes, one packet.
    const plan = planPool({ ...base, bitrate: 64_000 });
    expect(plan.size).toBe(4 * 188);
    expect(plan.derivedFrom).toContain('packet floor');
    expect(plan.fillMs).toBeCloseTo(752 / 8, 6);
    expect(plan.warnings.join()).toContain('4 TS packets');
  });

  it('keeps at least 4 buffers', () => {
    const plan = planPool({ ...base, bufferingMs: 50 });
    expect(plan.count).toBe(4);
    expect(plan.derivedFrom).toContain('count floor');
  });

  it('caps the count at 32 and says how much the pool holds then', () => {
    const plan = planPool({ ...base, bufferingMs: 5000 });
    expect(plan.count).toBe(32);
    expect(plan.derivedFrom).toContain('max count');
    expect(plan.warnings.join()).toMatch(/needs 126 buffers/);
  });
});

describe('planPool with a decoder', () => {
  it('derives the size from the OUTPUT sizeimage (64x64 RGB24: 12288)', () => {
    const plan = planPool({ ...base, decoderSizeimage: 12_288 });
    expect(plan.size).toBe(12_220);
    expect(plan.allocationBytes).toBe(12_288);
    expect(plan.derivedFrom[0]).toBe('decoder sizeimage');
    expect(fitsDecoder(plan.size, 12_288)).toEqual({ ok: true });
  });

  it('fits a sizeimage that is exactly a page multiple', () => {
    const plan = planPool({ ...base, decoderSizeimage: 61_440 });
    expect(plan.size).toBe(61_288);
    expect(plan.allocationBytes).toBe(61_440);
  });

  it('fits a sizeimage whose largest 188-multiple lies in its last page', () => {
    // 6144 = 1.5 pages; 32 packets (6016) allocate 8192 >= 6144.
    expect(planPool({ ...base, decoderSizeimage: 6144 }).size).toBe(6016);
  });

  it('fits a sizeimage of exactly 770048', () => {
    const plan = planPool({ ...base, decoderSizeimage: MAX_DEMUX_BUFFER_SIZE });
    expect(plan.size).toBe(MAX_DEMUX_BUFFER_SIZE);
  });

  it('names the sizes when no buffer can fit (sizeimage just past a page)', () => {
    const err = sizingError({ decoderSizeimage: 4100 });
    expect(err).toBeInstanceOf(RangeError);
    expect(err.name).toBe('SizingError');
    expect(err.key).toBe('decoder');
    // The largest candidate (21 packets) is allocated as one page, less than sizeimage.
    expect(err.message).toContain('4100');
    expect(err.message).toContain('3948');
    expect(err.message).toContain('4096-byte dmabuf');
    expect(err.message).toContain('such as 4096 or 8192');
  });

  it('refuses a sizeimage above the largest demux buffer', () => {
    const err = sizingError({ decoderSizeimage: 640 * 480 * 3 });
    expect(err.key).toBe('decoder');
    expect(err.message).toContain('921600');
    expect(err.message).toContain('at most 770048');
  });

  it('refuses a sizeimage smaller than one packet', () => {
    const err = sizingError({ decoderSizeimage: 100 });
    expect(err.key).toBe('decoder');
    expect(err.message).toContain('smaller than one TS packet');
  });

  it('checks a fixed size against both import rules', () => {
    const above = sizingError({ size: 12_032, decoderSizeimage: 3072 });
    expect(above.key).toBe('size');
    expect(above.message).toContain('bytesused 12032');
    expect(above.message).toContain('3072');

    const below = sizingError({ size: 3008, decoderSizeimage: 6144 });
    expect(below.key).toBe('size');
    expect(below.message).toContain('4096-byte dmabuf');
    expect(below.message).toContain('6144');
    expect(below.message).toContain('use buffers of 6016 bytes');

    const plan = planPool({ ...base, size: 12_032, decoderSizeimage: 12_288 });
    expect(plan.size).toBe(12_032);
    expect(plan.derivedFrom[0]).toBe('fixed size');
  });

  it('warns when the decoder-given size fills slower than latencyMs', () => {
    const plan = planPool({ ...base, bitrate: 1_000_000, decoderSizeimage: 61_440 });
    expect(plan.fillMs).toBeGreaterThan(base.latencyMs);
    expect(plan.warnings.join()).toContain('choose a smaller OUTPUT format');
  });
});

describe('planPool with fixed values', () => {
  it('validates and keeps them', () => {
    const plan = planPool({ ...base, count: 8, size: 64 * 188 });
    expect(plan).toMatchObject({ count: 8, size: 12_032, allocationBytes: 12_288 });
    expect(plan.derivedFrom).toEqual(['fixed size', 'fixed count']);
  });

  it('refuses a size that is not a multiple of 188, naming one that is', () => {
    const err = sizingError({ size: 1000 });
    expect(err.key).toBe('size');
    expect(err.message).toContain('use 940');
  });

  it('refuses a size above 770048 and accepts exactly 770048', () => {
    expect(sizingError({ size: MAX_DEMUX_BUFFER_SIZE + 188 }).message).toContain('at most 770048');
    expect(planPool({ ...base, size: MAX_DEMUX_BUFFER_SIZE }).size).toBe(MAX_DEMUX_BUFFER_SIZE);
  });

  it.each([1, 33, 2.5])('refuses count %s', (count) => {
    const err = sizingError({ count });
    expect(err.key).toBe('count');
    expect(err.message).toContain('from 2 to 32');
  });

  it('accepts counts 2 and 32', () => {
    expect(planPool({ ...base, count: 2 }).count).toBe(2);
    expect(planPool({ ...base, count: 32 }).count).toBe(32);
  });
});

describe('planPool input checks', () => {
  it.each([
    ['bitrate', { bitrate: 0 }],
    ['latencyMs', { latencyMs: 0 }],
    ['bufferingMs', { bufferingMs: -1 }],
    ['decoder', { decoderSizeimage: 0 }],
  ] as const)('names %s', (key, input) => {
    expect(sizingError(input).key).toBe(key);
  });
});

describe('fitsDecoder', () => {
  it('accepts a size equal to sizeimage and the README pair 12032 / 12288', () => {
    expect(fitsDecoder(12_032, 12_032)).toEqual({ ok: true });
    expect(fitsDecoder(12_032, 12_288)).toEqual({ ok: true });
    expect(fitsDecoder(3008, 3072)).toEqual({ ok: true });
  });

  it('names the bytesused rule', () => {
    const fit = fitsDecoder(12_220, 12_032);
    expect(fit.ok).toBe(false);
    if (!fit.ok) {
      expect(fit.rule).toBe('bytesused-above-sizeimage');
      expect(fit.message).toContain('12220');
      expect(fit.message).toContain('12032');
    }
  });

  it('names the dmabuf rule', () => {
    const fit = fitsDecoder(3008, 6144);
    expect(fit).toMatchObject({ ok: false, rule: 'dmabuf-below-sizeimage' });
  });

  it('refuses sizes that are not positive integers', () => {
    expect(() => fitsDecoder(0, 4096)).toThrow(RangeError);
    expect(() => fitsDecoder(188, 1.5)).toThrow(RangeError);
  });

  it('largestFittingSize agrees with fitsDecoder', () => {
    for (const sizeimage of [188, 3072, 4096, 4100, 6144, 12_288, 61_440, 770_048, 800_000]) {
      const size = largestFittingSize(sizeimage);
      if (size === null) {
        // Even the best candidate (the largest multiple of 188 the kernel allows, not above sizeimage) fails.
        const candidate = Math.max(188, Math.min(Math.floor(sizeimage / 188) * 188, 770_048));
        expect(fitsDecoder(candidate, sizeimage).ok).toBe(false);
      } else {
        expect(size % 188).toBe(0);
        expect(fitsDecoder(size, sizeimage)).toEqual({ ok: true });
        if (size + 188 <= 770_048) expect(fitsDecoder(size + 188, sizeimage).ok).toBe(false);
      }
    }
  });
});

describe('rawSizeimage', () => {
  it('computes the raw RGB formats', () => {
    expect(rawSizeimage('RGB3', 64, 64)).toBe(12_288);
    expect(rawSizeimage('BGR3', 128, 160)).toBe(61_440);
    expect(rawSizeimage('RGBP', 640, 480)).toBe(614_400);
    expect(rawSizeimage('RGBR', 32, 32)).toBe(2048);
  });

  it('leaves compressed and unknown formats to the driver', () => {
    expect(rawSizeimage('H264', 1920, 1080)).toBeNull();
    expect(rawSizeimage('FWHT', 640, 480)).toBeNull();
    expect(rawSizeimage('rgb3', 64, 64)).toBeNull();
  });

  it('refuses dimensions that are not positive integers', () => {
    expect(() => rawSizeimage('RGB3', 0, 64)).toThrow(RangeError);
  });
});

describe('growPool', () => {
  it('grows by half, at least two, up to the cap', () => {
    const counts: number[] = [];
    let pool: { count: number; size: number } | null = { count: 4, size: 12_032 };
    while (pool !== null) {
      counts.push(pool.count);
      pool = growPool(pool, { maxCount: 32 }, 12_000_000);
    }
    expect(counts).toEqual([4, 6, 9, 14, 21, 32]);
  });

  it('keeps the size and reports what the grown pool holds', () => {
    const grown = growPool({ count: 8, size: 12_032 }, { maxCount: 32 }, 8_000_000);
    expect(grown).toEqual({ count: 12, size: 12_032, holdsMs: (12 * 12_032) / 1000 });
  });

  it('stops at growth.maxCount and never passes 32', () => {
    expect(growPool({ count: 8, size: 188 }, { maxCount: 10 }, 1_000_000)?.count).toBe(10);
    expect(growPool({ count: 10, size: 188 }, { maxCount: 10 }, 1_000_000)).toBeNull();
    expect(growPool({ count: 30, size: 188 }, { maxCount: 64 }, 1_000_000)?.count).toBe(32);
    expect(growPool({ count: 32, size: 188 }, { maxCount: 64 }, 1_000_000)).toBeNull();
  });
});

describe('planStreamPool', () => {
  const stream: StreamConfig = {
    id: 'hd',
    adapter: 0,
    source: 'demux',
    demux: 0,
    filter: { pids: [0x101], output: 'tsdemux-tap' },
    tuning: null,
    bitrate: 12_000_000,
    pool: {
      count: null,
      size: null,
      latencyMs: 50,
      bufferingMs: 500,
      growth: { enabled: false, maxCount: 32, sustainMs: 10_000 },
    },
    sink: {
      type: 'decoder',
      decoder: 'vim2m',
      format: { fourcc: 'RGB3', width: 128, height: 160, sizeimage: null },
      captureFormat: null,
      captureCount: 4,
    },
  };

  it('uses the sizeimage of the configured raw format', () => {
    expect(planStreamPool(stream).size).toBe(61_288);
  });

  it('uses the sizeimage the driver granted once known', () => {
    expect(planStreamPool(stream, 12_288).size).toBe(12_220);
  });

  it('sizes from latency without a decoder', () => {
    expect(planStreamPool({ ...stream, sink: { type: 'discard' } }).size).toBe(398 * 188);
  });
});
